//! Per-service schedulers as pure functions from (backends, weights) to the
//! table the XDP program reads: Maglev's lookup table, the consistent-hash
//! ring, a weighted sequence (wrr, random), or the (backend, weight)
//! candidates least-conn compares.

pub mod ring;
pub mod seq;

use lb_common::{
    MAX_SCAN_BACKENDS, NO_BACKEND, SCHED_LEAST_CONN, SCHED_MAGLEV, SCHED_RANDOM, SCHED_RING,
    SCHED_WRR,
};

use crate::maglev::{self, Entry};

/// Entries for one table slot (at most `m`), as backend indices.
pub fn build(scheduler: u8, backends: &[Entry<'_>], m: u32, virtual_nodes: u32) -> Vec<u32> {
    match scheduler {
        SCHED_RING => ring::build(backends, virtual_nodes, m as usize / 2)
            .into_iter()
            .flat_map(|(p, b)| [p, b])
            .collect(),
        SCHED_WRR | SCHED_RANDOM => seq::build(backends, m as usize),
        SCHED_LEAST_CONN => backends
            .iter()
            .enumerate()
            .filter(|(_, b)| b.weight > 0)
            .take(MAX_SCAN_BACKENDS as usize)
            .flat_map(|(i, b)| [i as u32, b.weight])
            .collect(),
        SCHED_MAGLEV => maglev::build(backends, m),
        _ => vec![NO_BACKEND; m as usize],
    }
}

/// (stride, offset) of the backend entries in a slot of `scheduler`: a
/// ring's points and least-conn's weights are not backend indices.
pub fn id_positions(scheduler: u8) -> (usize, usize) {
    match scheduler {
        SCHED_RING => (2, 1),
        SCHED_LEAST_CONN => (2, 0),
        _ => (1, 0),
    }
}
