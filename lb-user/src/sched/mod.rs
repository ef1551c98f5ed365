//! Per-service schedulers as pure functions from (backends, weights) to the
//! table the XDP program reads: Maglev's lookup table, the consistent-hash
//! ring, a weighted sequence (wrr, random), or the candidates least-conn
//! (backend, weight) and shortest-response (backend, weight, ms) compare.

pub mod ring;
pub mod seq;

use lb_common::{
    MAX_SCAN_BACKENDS, NO_BACKEND, SCHED_LEAST_CONN, SCHED_MAGLEV, SCHED_RANDOM, SCHED_RING,
    SCHED_SHORTEST_RESPONSE, SCHED_WRR,
};

use crate::maglev::{self, Entry};

/// Every scheduler: its config name and the `ServiceMeta::scheduler` id the
/// XDP program knows it by. The first is the default.
pub const SCHEDULERS: [(&str, u8); 6] = [
    ("maglev", SCHED_MAGLEV),
    ("ring", SCHED_RING),
    ("wrr", SCHED_WRR),
    ("random", SCHED_RANDOM),
    ("least-conn", SCHED_LEAST_CONN),
    ("shortest-response", SCHED_SHORTEST_RESPONSE),
];

/// The config name of scheduler `id`.
pub fn name(id: u8) -> Option<&'static str> {
    SCHEDULERS.iter().find(|s| s.1 == id).map(|s| s.0)
}

/// Entries for one table slot (at most `m`), backend indices where
/// `id_positions` says. `rtt_ms[i]` is backend i's response time
/// (shortest-response only).
pub fn build(
    scheduler: u8,
    backends: &[Entry<'_>],
    m: u32,
    virtual_nodes: u32,
    rtt_ms: &[u32],
) -> Vec<u32> {
    let live = || {
        backends
            .iter()
            .enumerate()
            .filter(|(_, b)| b.weight > 0)
            .take(MAX_SCAN_BACKENDS as usize)
    };
    match scheduler {
        SCHED_RING => ring::build(backends, virtual_nodes, m as usize / 2)
            .into_iter()
            .flat_map(|(p, b)| [p, b])
            .collect(),
        SCHED_WRR | SCHED_RANDOM => seq::build(backends, m as usize),
        SCHED_LEAST_CONN => live().flat_map(|(i, b)| [i as u32, b.weight]).collect(),
        SCHED_SHORTEST_RESPONSE => live()
            .flat_map(|(i, b)| [i as u32, b.weight, rtt_ms.get(i).copied().unwrap_or(0)])
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
        SCHED_SHORTEST_RESPONSE => (3, 0),
        _ => (1, 0),
    }
}
