//! Weighted Maglev lookup tables (Eisenbud et al., NSDI 2016, section 3.4):
//! a pure function from (backends, weights, M) to a table of M entries.
//!
//! Every backend walks its own permutation of the slots, seeded from its
//! address, so all balancers with the same config build the same table, and a
//! backend leaving moves few flows that were not its own. Weights: each round,
//! a backend earns `weight` credit and claims a slot each time its credit
//! reaches the largest weight, so claims are proportional to weight (to within
//! one slot) and the heaviest backend claims every round.

use lb_common::{NO_BACKEND, hash::bytes_hash};

use super::Weighted;

/// Table of `m` entries (m prime), each an index into `backends`, or
/// `NO_BACKEND` everywhere when no backend has a weight.
pub fn build(backends: &[Weighted<'_>], m: u32) -> Vec<u32> {
    let mut table = vec![NO_BACKEND; m as usize];
    let live: Vec<usize> = (0..backends.len())
        .filter(|&i| backends[i].weight > 0)
        .collect();
    let Some(max_w) = live.iter().map(|&i| backends[i].weight as u64).max() else {
        return table;
    };
    let m64 = m as u64;
    // (offset, skip) define backend i's permutation: slot_j = offset + j*skip mod m.
    let perm: Vec<(u64, u64)> = live
        .iter()
        .map(|&i| {
            let k = backends[i].key;
            (
                bytes_hash(k, 0x6d61_676c) % m64,
                bytes_hash(k, 0x6c65_7621) % (m64 - 1) + 1,
            )
        })
        .collect();
    let mut next = vec![0u64; live.len()];
    let mut credit = vec![0u64; live.len()];
    let mut filled = 0u64;
    while filled < m64 {
        for (n, &i) in live.iter().enumerate() {
            credit[n] += backends[i].weight as u64;
            if credit[n] < max_w {
                continue;
            }
            credit[n] -= max_w;
            let (offset, skip) = perm[n];
            loop {
                let slot = ((offset + next[n] * skip) % m64) as usize;
                next[n] += 1;
                if table[slot] == NO_BACKEND {
                    table[slot] = i as u32;
                    break;
                }
            }
            filled += 1;
            if filled == m64 {
                break;
            }
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: u32 = 65537;

    fn keys(n: usize) -> Vec<[u8; 16]> {
        (0..n)
            .map(|i| {
                let mut k = [0u8; 16];
                k[..4].copy_from_slice(&[198, 51, (i >> 8) as u8, i as u8]);
                k
            })
            .collect()
    }

    fn weights(n: usize) -> Vec<u32> {
        (0..n).map(|i| [1, 2, 3, 5, 10][i % 5]).collect()
    }

    fn entries<'a>(keys: &'a [[u8; 16]], weights: &[u32]) -> Vec<Weighted<'a>> {
        keys.iter()
            .zip(weights)
            .map(|(k, &w)| Weighted { key: k, weight: w })
            .collect()
    }

    #[test]
    fn shares_follow_weights_within_one_percent() {
        for n in [3, 10, 100, 1000] {
            let (k, w) = (keys(n), weights(n));
            let t = build(&entries(&k, &w), M);
            let mut count = vec![0u64; n];
            for &e in &t {
                count[e as usize] += 1;
            }
            let total_w: u32 = w.iter().sum();
            for i in 0..n {
                let share = count[i] as f64 / M as f64;
                let want = w[i] as f64 / total_w as f64;
                assert!(
                    (share - want).abs() <= 0.01,
                    "n={n} backend {i}: share {share:.5}, weight share {want:.5}"
                );
                // Also within one slot of exact: the credit scheme is exact up to rounding.
                assert!(
                    (count[i] as f64 - want * M as f64).abs() <= 2.0 + want * M as f64 * 0.001,
                    "n={n} i={i} count {}",
                    count[i]
                );
            }
        }
    }

    #[test]
    fn removing_one_backend_moves_few_other_slots() {
        for n in [3, 10, 100, 1000] {
            let (k, w) = (keys(n), weights(n));
            let before = build(&entries(&k, &w), M);
            let gone = n / 2;
            let mut w2 = w.clone();
            w2[gone] = 0;
            let after = build(&entries(&k, &w2), M);
            let others: Vec<usize> = (0..M as usize)
                .filter(|&s| before[s] != gone as u32)
                .collect();
            let moved = others.iter().filter(|&&s| before[s] != after[s]).count();
            let frac = moved as f64 / others.len() as f64;
            assert!(
                frac <= 1.0 / n as f64 + 0.015,
                "n={n}: {frac:.4} of other slots moved"
            );
            assert!(
                after.iter().all(|&e| e != gone as u32),
                "removed backend still in table"
            );
        }
    }

    #[test]
    fn deterministic_and_handles_edges() {
        let k = keys(5);
        let w = weights(5);
        assert_eq!(build(&entries(&k, &w), 251), build(&entries(&k, &w), 251));
        assert!(
            build(&entries(&k, &[0; 5]), 251)
                .iter()
                .all(|&e| e == NO_BACKEND)
        );
        assert!(build(&[], 251).iter().all(|&e| e == NO_BACKEND));
        let one = build(&entries(&k[..1], &[7]), 251);
        assert!(one.iter().all(|&e| e == 0));
        // Drained (weight 0) backends get no slot.
        let t = build(&entries(&k, &[1, 0, 1, 0, 1]), 251);
        assert!(t.iter().all(|&e| e % 2 == 0));
    }
}
