//! Per-service schedulers as pure functions from (backends, weights) to the
//! table slot the XDP program reads: Maglev's lookup table, the
//! consistent-hash ring, a weighted sequence (wrr, random), or the
//! candidates least-conn (backend, weight) and shortest-response (backend,
//! weight, ms) compare. The slot layouts are lb-common's `Scheduler::layout`.

pub mod maglev;
pub mod ring;
pub mod seq;

use std::collections::BTreeMap;

use lb_common::{MAX_SCAN_BACKENDS, NO_BACKEND, Scheduler};

/// One backend as a table builder sees it: a stable identity (its address
/// bytes, the same on every balancer) and a weight.
#[derive(Debug, Clone, Copy)]
pub struct Weighted<'a> {
    pub key: &'a [u8],
    pub weight: u32,
}

/// Entries for one table slot (at most `m`), with backend indices in the
/// id words of `scheduler`'s layout. `rtt_ms[i]` is backend i's response
/// time (shortest-response only).
///
/// The table depends on the backends' keys and weights, not on their
/// order: they are built in key order and mapped back, so every balancer
/// with the same backends builds the same table whatever its config's
/// order (and sends a flow to the same backend: scale-out and failover
/// rely on it).
pub fn build(
    scheduler: Scheduler,
    backends: &[Weighted<'_>],
    m: u32,
    virtual_nodes: u32,
    rtt_ms: &[u32],
) -> Vec<u32> {
    let mut order: Vec<usize> = (0..backends.len()).collect();
    order.sort_by(|&a, &b| backends[a].key.cmp(backends[b].key));
    let sorted: Vec<Weighted<'_>> = order.iter().map(|&i| backends[i]).collect();
    let rtts: Vec<u32> = order
        .iter()
        .map(|&i| rtt_ms.get(i).copied().unwrap_or(0))
        .collect();
    let mut t = build_in_order(scheduler, &sorted, m, virtual_nodes, &rtts);
    map_ids(scheduler, &mut t, |i| order[i as usize] as u32);
    t
}

fn build_in_order(
    scheduler: Scheduler,
    backends: &[Weighted<'_>],
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
        Scheduler::Ring => {
            let max_points = (m / scheduler.layout().stride) as usize;
            ring::build(backends, virtual_nodes, max_points)
                .into_iter()
                .flat_map(|(p, b)| [p, b])
                .collect()
        }
        Scheduler::Wrr | Scheduler::Random => seq::build(backends, m as usize),
        Scheduler::LeastConn => live().flat_map(|(i, b)| [i as u32, b.weight]).collect(),
        Scheduler::ShortestResponse => live()
            .flat_map(|(i, b)| [i as u32, b.weight, rtt_ms.get(i).copied().unwrap_or(0)])
            .collect(),
        Scheduler::Maglev => maglev::build(backends, m),
    }
}

/// Rewrite the backend words of a slot (indices to ids, say); ring points,
/// weights and response times stay. `NO_BACKEND` stays too.
pub fn map_ids(scheduler: Scheduler, slot: &mut [u32], f: impl Fn(u32) -> u32) {
    let l = scheduler.layout();
    for e in slot
        .iter_mut()
        .skip(l.id_offset as usize)
        .step_by(l.stride as usize)
    {
        if *e != NO_BACKEND {
            *e = f(*e);
        }
    }
}

/// A backend's part of a slot.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Share {
    /// Records that name it (table entries, ring points, candidates).
    pub entries: u64,
    /// The fraction of new flows the slot gives it: entries of a table or
    /// sequence, arcs of the hash space for a ring, weights for the
    /// scanning schedulers (whose active counts decide each flow).
    pub share: f64,
}

/// Each backend word's share of a slot, keyed by that word (`NO_BACKEND`
/// included, for a table with holes).
pub fn shares(scheduler: Scheduler, slot: &[u32]) -> BTreeMap<u32, Share> {
    let stride = scheduler.layout().stride as usize;
    let mut out: BTreeMap<u32, Share> = BTreeMap::new();
    match scheduler {
        Scheduler::LeastConn | Scheduler::ShortestResponse => {
            let total: u64 = slot.chunks_exact(stride).map(|c| c[1] as u64).sum();
            for c in slot.chunks_exact(stride) {
                out.insert(
                    c[0],
                    Share {
                        entries: 1,
                        share: c[1] as f64 / total.max(1) as f64,
                    },
                );
            }
        }
        Scheduler::Ring => {
            let ring: Vec<(u32, u32)> = slot.chunks_exact(stride).map(|c| (c[0], c[1])).collect();
            for &(_, b) in &ring {
                out.entry(b).or_default().entries += 1;
            }
            for (b, s) in ring::shares(&ring) {
                out.entry(b).or_default().share = s;
            }
        }
        Scheduler::Maglev | Scheduler::Wrr | Scheduler::Random => {
            for &e in slot {
                out.entry(e).or_default().entries += 1;
            }
            for s in out.values_mut() {
                s.share = s.entries as f64 / slot.len().max(1) as f64;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The keys a slot names, entry by entry (ids mapped to keys).
    fn by_key(s: Scheduler, backends: &[Weighted<'_>], m: u32) -> Vec<u32> {
        let mut t = build(s, backends, m, 40, &[3, 1, 4, 1, 5, 9, 2]);
        map_ids(s, &mut t, |i| backends[i as usize].key[3] as u32);
        t
    }

    #[test]
    fn tables_do_not_depend_on_the_backends_order() {
        let keys: Vec<[u8; 4]> = (1..=7u8).map(|i| [198, 51, 100, 10 + i]).collect();
        let weights = [1, 2, 3, 1, 0, 5, 1];
        let listed: Vec<Weighted<'_>> = keys
            .iter()
            .zip(weights)
            .map(|(k, weight)| Weighted { key: k, weight })
            .collect();
        // Another node lists them in another order (rtts follow their backend).
        let mut shuffled = listed.clone();
        shuffled.reverse();
        shuffled.swap(1, 4);
        for s in Scheduler::ALL {
            if s.scans() {
                continue; // (id, weight) pairs: order is not a placement
            }
            let a = by_key(s, &listed, 65_537);
            let b = by_key(s, &shuffled, 65_537);
            assert_eq!(a, b, "{}: same backends in another order", s.name());
        }
    }

    #[test]
    fn a_maglev_table_is_the_same_in_every_process() {
        // Nothing random, no hash-map order: this fingerprint is the same on
        // every node and in every release that does not mean to change it.
        let keys: Vec<[u8; 16]> = (0..100u32)
            .map(|i| {
                crate::addr::to_bytes(
                    format!("198.51.{}.{}", 100 + i / 250, 1 + i % 250)
                        .parse()
                        .unwrap(),
                )
            })
            .collect();
        let b: Vec<Weighted<'_>> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| Weighted {
                key: k,
                weight: 1 + (i as u32 % 3),
            })
            .collect();
        let t = build(Scheduler::Maglev, &b, 65_537, 0, &[]);
        let sum = lb_common::hash::bytes_hash(bytemuck::cast_slice(&t), t.len() as u64);
        assert_eq!(sum, MAGLEV_FINGERPRINT, "{sum:#x}");
    }

    const MAGLEV_FINGERPRINT: u64 = 0x3856_c960_cad0_8e77;

    #[test]
    fn shares_per_layout() {
        // Maglev: entries counted.
        let s = shares(Scheduler::Maglev, &[7, 7, 9, NO_BACKEND]);
        assert_eq!(s[&7].entries, 2);
        assert_eq!(s[&7].share, 0.5);
        assert_eq!(s[&NO_BACKEND].entries, 1);
        // least-conn: (id, weight) pairs, shares by weight.
        let s = shares(Scheduler::LeastConn, &[4, 1, 5, 3]);
        assert_eq!(s[&5].share, 0.75);
        // shortest-response: (id, weight, ms).
        let s = shares(Scheduler::ShortestResponse, &[4, 1, 10, 5, 1, 20]);
        assert_eq!(s[&4].share, 0.5);
        // ring: two points half the circle apart.
        let s = shares(Scheduler::Ring, &[0, 1, 1 << 31, 2]);
        assert_eq!((s[&1].share, s[&2].share), (0.5, 0.5));
    }

    #[test]
    fn map_ids_touches_only_backend_words() {
        let mut ring = vec![100, 0, 200, 1];
        map_ids(Scheduler::Ring, &mut ring, |i| i + 40);
        assert_eq!(ring, [100, 40, 200, 41]);
        let mut m = vec![0, NO_BACKEND, 1];
        map_ids(Scheduler::Maglev, &mut m, |i| i + 40);
        assert_eq!(m, [40, NO_BACKEND, 41]);
    }
}
