//! Ketama-style consistent-hash ring: every backend places points on
//! [0, 2^32) (`virtual_nodes` per unit of its weight relative to the
//! lightest backend); a flow goes to the first point clockwise of its hash.
//! Removing a backend removes only its points, so only its flows move.
//!
//! The table is the sorted points as (point, backend index) pairs, which is
//! what the XDP program binary-searches.

use std::collections::BTreeMap;

use lb_common::hash::bytes_hash;

use super::Weighted;

const SEED: u64 = 0x6b65_7461;
/// Points live on [0, 2^32).
const FULL_CIRCLE: f64 = 4_294_967_296.0;

/// Points per backend: `virtual_nodes x weight / lightest weight`, scaled
/// down together (at least 1 each) when they would exceed `max_points`.
pub fn points_per_backend(
    backends: &[Weighted<'_>],
    virtual_nodes: u32,
    max_points: usize,
) -> Vec<u64> {
    let min_w = backends.iter().map(|b| b.weight).filter(|&w| w > 0).min();
    let Some(min_w) = min_w else {
        return vec![0; backends.len()];
    };
    let want: Vec<u64> = backends
        .iter()
        .map(|b| b.weight as u64 * virtual_nodes as u64 / min_w as u64)
        .collect();
    let total: u64 = want.iter().sum();
    if total as usize <= max_points {
        return want;
    }
    want.iter()
        .map(|&n| {
            if n == 0 {
                0
            } else {
                (n * max_points as u64 / total).max(1)
            }
        })
        .collect()
}

/// The ring as sorted (point, backend index) pairs.
pub fn build(backends: &[Weighted<'_>], virtual_nodes: u32, max_points: usize) -> Vec<(u32, u32)> {
    let counts = points_per_backend(backends, virtual_nodes, max_points);
    let mut points = Vec::with_capacity(counts.iter().sum::<u64>() as usize);
    for (i, (b, &n)) in backends.iter().zip(&counts).enumerate() {
        let mut buf = Vec::with_capacity(b.key.len() + 4);
        for k in 0..n as u32 {
            buf.clear();
            buf.extend_from_slice(b.key);
            buf.extend_from_slice(&k.to_le_bytes());
            points.push(((bytes_hash(&buf, SEED) >> 32) as u32, i as u32));
        }
    }
    // Ties (two backends on one point) go to the lower index; stable and
    // the same on every balancer with the same config.
    points.sort_unstable();
    points.dedup_by_key(|p| p.0);
    points
}

/// The backend index for hash `h`: the first point at or after it, wrapping.
pub fn lookup(ring: &[(u32, u32)], h: u32) -> Option<u32> {
    if ring.is_empty() {
        return None;
    }
    let i = ring.partition_point(|p| p.0 < h);
    Some(ring[i % ring.len()].1)
}

/// Each backend's share of the hash space: the arcs ending at its points.
/// The pairs' second words may be indices or ids; the shares are keyed by them.
pub fn shares(ring: &[(u32, u32)]) -> BTreeMap<u32, f64> {
    let mut s = BTreeMap::new();
    for (i, &(p, b)) in ring.iter().enumerate() {
        let prev = ring[if i == 0 { ring.len() } else { i } - 1].0;
        let arc = if ring.len() == 1 {
            FULL_CIRCLE
        } else {
            p.wrapping_sub(prev) as f64
        };
        *s.entry(b).or_default() += arc / FULL_CIRCLE;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: usize) -> Vec<[u8; 16]> {
        (0..n)
            .map(|i| {
                let mut k = [0u8; 16];
                k[..4].copy_from_slice(&[198, 51, 100, 10 + i as u8]);
                k
            })
            .collect()
    }

    #[test]
    fn removing_a_backend_moves_only_its_flows() {
        let k = keys(10);
        let all: Vec<Weighted<'_>> = k.iter().map(|k| Weighted { key: k, weight: 1 }).collect();
        let ring = build(&all, 160, 32768);
        // Backend 3 leaves (weight 0 = no points), indices stay the same.
        let mut fewer = all.clone();
        fewer[3].weight = 0;
        let ring2 = build(&fewer, 160, 32768);
        let mut moved_other = 0;
        let mut moved = 0;
        for f in 0..100_000u32 {
            let h = lb_common::hash::bytes_hash(&f.to_le_bytes(), 7) as u32;
            let (a, b) = (lookup(&ring, h).unwrap(), lookup(&ring2, h).unwrap());
            if a != b {
                moved += 1;
                if a != 3 {
                    moved_other += 1;
                }
            }
        }
        assert_eq!(moved_other, 0, "a flow whose backend stayed moved");
        assert!(moved > 5000, "backend 3's flows moved: {moved}");
    }

    #[test]
    fn points_scale_with_weight_and_are_capped() {
        let k = keys(3);
        let e: Vec<Weighted<'_>> = [1, 2, 3]
            .iter()
            .zip(&k)
            .map(|(&w, k)| Weighted { key: k, weight: w })
            .collect();
        assert_eq!(points_per_backend(&e, 160, 100_000), vec![160, 320, 480]);
        assert_eq!(points_per_backend(&e, 160, 96), vec![16, 32, 48]);
        let s = shares(&build(&e, 160, 32768));
        assert!((s.values().sum::<f64>() - 1.0).abs() < 1e-9);
    }
}
