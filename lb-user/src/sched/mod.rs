//! Per-service schedulers as pure functions from (backends, weights) to the
//! table the XDP program reads: Maglev's lookup table, the consistent-hash
//! ring, or a weighted sequence (wrr, random).

pub mod ring;
pub mod seq;

use lb_common::{NO_BACKEND, SCHED_MAGLEV, SCHED_RANDOM, SCHED_RING, SCHED_WRR};

use crate::maglev::{self, Entry};

/// Entries for one table slot (at most `m`), as backend indices.
pub fn build(scheduler: u8, backends: &[Entry<'_>], m: u32, virtual_nodes: u32) -> Vec<u32> {
    match scheduler {
        SCHED_RING => ring::build(backends, virtual_nodes, m as usize / 2)
            .into_iter()
            .flat_map(|(p, b)| [p, b])
            .collect(),
        SCHED_WRR | SCHED_RANDOM => seq::build(backends, m as usize),
        SCHED_MAGLEV => maglev::build(backends, m),
        _ => vec![NO_BACKEND; m as usize],
    }
}
