//! Schedulers: the TABLES index of the backend a new flow goes to. The
//! agent lays out each slot as lb-common's `Scheduler::layout` says; here
//! it is only indexed, searched or scanned.

use aya_ebpf::helpers::bpf_get_prandom_u32;
use lb_common::{
    FlowKey, HASH_5TUPLE, MAX_SCAN_BACKENDS, RING_SEARCH_STEPS, SCHED_LEAST_CONN, SCHED_RANDOM,
    SCHED_RING, SCHED_SHORTEST_RESPONSE, SCHED_WRR, ServiceMeta, flow_hash,
};

use crate::maps::{ACTIVE, RR_STATE, TABLES};

/// TABLES index of the chosen backend's id, or None when the service has
/// no usable entry. A connection's first packet takes the scheduler's
/// choice; a mid-flow packet the flow table forgot falls back to its hash,
/// so it lands the same way every time. With hash = "src-ip"
/// (persistence), the hash always decides.
#[inline(always)]
pub fn select(key: &FlowKey, svc: &ServiceMeta, opening: bool) -> Option<u32> {
    let len = svc.active_len();
    if len == 0 || len > svc.table_size {
        return None;
    }
    let base = svc.active_base();
    let hash = flow_hash(key, svc.hash_fields);
    let fresh = opening && svc.hash_fields == HASH_5TUPLE;
    let at = match svc.scheduler {
        SCHED_RING => ring(base, len / 2, hash)?,
        SCHED_WRR if fresh => {
            let c = RR_STATE.get_ptr_mut(svc.id)?;
            // SAFETY: per-CPU value; nothing else runs on this CPU meanwhile.
            let n = unsafe {
                let n = *c;
                *c = n.wrapping_add(1);
                n
            };
            base + n % len
        }
        // SAFETY: a helper without arguments or side effects on memory.
        SCHED_RANDOM if fresh => base + unsafe { bpf_get_prandom_u32() } % len,
        SCHED_LEAST_CONN if fresh => match lb_least_conn(base, len / 2) {
            u32::MAX => return None,
            at => at,
        },
        SCHED_LEAST_CONN => base + (hash % (len / 2).max(1)) * 2,
        SCHED_SHORTEST_RESPONSE if fresh => match lb_shortest_response(base, len / 3) {
            u32::MAX => return None,
            at => at,
        },
        SCHED_SHORTEST_RESPONSE => base + (hash % (len / 3).max(1)) * 3,
        _ => base + hash % len,
    };
    Some(at)
}

/// TABLES index of the backend with the fewest active flows per unit of
/// weight among `n` (backend, weight) pairs at `base`; ties go to the
/// heavier one; u32::MAX if none. A global function: the verifier checks it
/// once on its own, not once per path that reaches it.
#[inline(never)]
#[unsafe(no_mangle)]
pub extern "C" fn lb_least_conn(base: u32, n: u32) -> u32 {
    let (mut best, mut best_a, mut best_w) = (u32::MAX, 0u64, 0u64);
    for i in 0..MAX_SCAN_BACKENDS {
        if i >= n {
            break;
        }
        let at = base.wrapping_add(2 * i);
        let (Some(id), Some(w)) = (TABLES.get(at), TABLES.get(at.wrapping_add(1))) else {
            break;
        };
        let w = *w as u64;
        let a = match ACTIVE.get(*id) {
            Some(v) if (*v as i64) > 0 => *v,
            _ => 0,
        };
        // a / w < best_a / best_w, without division; ties: heavier wins.
        let (l, r) = (a.wrapping_mul(best_w), best_a.wrapping_mul(w));
        if best == u32::MAX || l < r || (l == r && w > best_w) {
            best = at;
            best_a = a;
            best_w = w;
        }
    }
    best
}

/// Expected wait of the candidate at `at`: (response ms + 1) x (active + 1),
/// and its weight.
#[inline(always)]
fn wait_at(at: u32) -> Option<(u64, u64)> {
    let id = *TABLES.get(at)?;
    let w = *TABLES.get(at.wrapping_add(1))? as u64;
    let ms = *TABLES.get(at.wrapping_add(2))? as u64;
    let a = match ACTIVE.get(id) {
        Some(v) if (*v as i64) > 0 => *v,
        _ => 0,
    };
    Some(((ms + 1).wrapping_mul(a + 1), w))
}

/// TABLES index of the backend with the lowest expected wait, response time
/// x (active + 1), among `n` (backend, weight, ms) triples at `base`; ties
/// go to a weighted random one of them (Dubbo's rule); u32::MAX if none.
/// A global function, verified once on its own; two plain passes (find the
/// lowest wait and its tied weight, then walk to the drawn one) keep the
/// verifier's work linear.
#[inline(never)]
#[unsafe(no_mangle)]
pub extern "C" fn lb_shortest_response(base: u32, n: u32) -> u32 {
    let (mut low, mut tied, mut first) = (u64::MAX, 0u64, u32::MAX);
    for i in 0..MAX_SCAN_BACKENDS {
        if i >= n {
            break;
        }
        let at = base.wrapping_add(3 * i);
        let Some((cost, w)) = wait_at(at) else {
            break;
        };
        if cost < low {
            low = cost;
            tied = w;
            first = at;
        } else if cost == low {
            tied += w;
        }
    }
    if tied == 0 {
        return first;
    }
    // SAFETY: a helper without arguments or side effects on memory.
    let mut r = (unsafe { bpf_get_prandom_u32() } as u64)
        .checked_rem(tied)
        .unwrap_or(0);
    for i in 0..MAX_SCAN_BACKENDS {
        if i >= n {
            break;
        }
        let at = base.wrapping_add(3 * i);
        let Some((cost, w)) = wait_at(at) else {
            break;
        };
        if cost == low {
            if r < w {
                return at;
            }
            r -= w;
        }
    }
    // Counts moved on another CPU between the passes: the first lowest.
    first
}

/// TABLES index of the backend of the first ring point at or after `hash`
/// (wrapping): a binary search over `points` sorted (point, backend) pairs.
#[inline(always)]
fn ring(base: u32, points: u32, hash: u32) -> Option<u32> {
    if points == 0 {
        return None;
    }
    let (mut lo, mut hi) = (0u32, points);
    // Enough steps to converge over the largest slot (RING_MAX_POINTS).
    for _ in 0..RING_SEARCH_STEPS {
        if lo >= hi {
            break;
        }
        let mid = lo + (hi - lo) / 2;
        if *TABLES.get(base + 2 * mid)? < hash {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    let i = if lo >= points { 0 } else { lo };
    Some(base + 2 * i + 1)
}
