//! Per-CPU counters: one per verdict reason, packets and bytes per service and backend.

use lb_common::{Counter, Reason};

use crate::maps::{BACKEND_STATS, REASON_STATS, SERVICE_STATS};

#[inline(always)]
pub fn reason(r: Reason) {
    if let Some(c) = REASON_STATS.get_ptr_mut(r as u32) {
        // SAFETY: per-CPU slot, no other writer on this CPU while we run.
        unsafe { *c += 1 };
    }
}

#[inline(always)]
fn add(c: Option<*mut Counter>, bytes: u64) {
    if let Some(c) = c {
        // SAFETY: as above.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += bytes;
        }
    }
}

#[inline(always)]
pub fn forwarded(service: u32, backend: u32, bytes: u64) {
    add(SERVICE_STATS.get_ptr_mut(service), bytes);
    add(BACKEND_STATS.get_ptr_mut(backend), bytes);
}
