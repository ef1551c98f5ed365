//! Weighted sequences for `wrr` and `random`: each backend appears exactly
//! in proportion to its weight (weights divided by their gcd, or scaled to
//! fit with the largest-remainder method), ordered by nginx's smooth
//! weighted round robin so that weights 5,1,1 give a a b a c a a.
//! `wrr` walks the sequence with a per-CPU counter; `random` picks a
//! uniformly random position, so its shares are exact too.

use super::Weighted;

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Appearances per backend in a sequence of at most `max_len`.
pub fn counts(backends: &[Weighted<'_>], max_len: usize) -> Vec<u64> {
    let w: Vec<u64> = backends.iter().map(|b| b.weight as u64).collect();
    let g = w.iter().copied().filter(|&x| x > 0).fold(0, gcd);
    if g == 0 {
        return vec![0; w.len()];
    }
    let c: Vec<u64> = w.iter().map(|x| x / g).collect();
    let total: u64 = c.iter().sum();
    if total as usize <= max_len {
        return c;
    }
    // Largest remainder, and every positive weight keeps at least one slot.
    let m = max_len as u64;
    let mut out: Vec<u64> = c
        .iter()
        .map(|&x| (x * m / total).max((x > 0) as u64))
        .collect();
    let mut rem: Vec<(u64, usize)> = c
        .iter()
        .enumerate()
        .map(|(i, &x)| ((x * m) % total, i))
        .collect();
    rem.sort_unstable_by(|a, b| b.cmp(a));
    let mut sum: u64 = out.iter().sum();
    for (_, i) in rem {
        if sum >= m {
            break;
        }
        if c[i] > 0 {
            out[i] += 1;
            sum += 1;
        }
    }
    out
}

/// The smooth weighted round-robin sequence of backend indices.
pub fn build(backends: &[Weighted<'_>], max_len: usize) -> Vec<u32> {
    let c = counts(backends, max_len);
    let total: i64 = c.iter().sum::<u64>() as i64;
    let live: Vec<usize> = (0..c.len()).filter(|&i| c[i] > 0).collect();
    let mut current = vec![0i64; c.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = live[0];
        for &i in &live {
            current[i] += c[i] as i64;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        out.push(best as u32);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries<'a>(keys: &'a [[u8; 4]], w: &[u32]) -> Vec<Weighted<'a>> {
        keys.iter()
            .zip(w)
            .map(|(k, &w)| Weighted { key: k, weight: w })
            .collect()
    }

    #[test]
    fn nginx_smooth_order() {
        let k = [[1u8; 4], [2; 4], [3; 4]];
        let s = build(&entries(&k, &[5, 1, 1]), 65537);
        assert_eq!(s, vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn exact_counts_and_scaling() {
        let k = [[1u8; 4], [2; 4], [3; 4], [4; 4]];
        assert_eq!(
            counts(&entries(&k, &[100, 200, 300, 0]), 65537),
            vec![1, 2, 3, 0]
        );
        let big = counts(&entries(&k, &[65535, 1, 30000, 7]), 1000);
        assert_eq!(big.iter().sum::<u64>(), 1000);
        assert!(
            big[1] >= 1 && big[3] >= 1,
            "every live backend keeps a slot"
        );
        assert!(build(&entries(&k, &[0, 0, 0, 0]), 10).is_empty());
    }
}
