//! Per packet lookups: the service for (VIP, port, proto), the flow table's
//! remembered backend, and the active-flow counts that follow flows.

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use lb_common::{
    BACKEND_CONFIGURED, BACKEND_HAS_MAC, Backend, CFG_ALL_PORTS, CFG_SYNC, DataplaneConfig,
    FLOW_CLOSING, FORWARD_FULLNAT, FlowKey, FlowValue, MAX_INTERFACES, ServiceKey, ServiceMeta,
};

use lb_common::sync::{FLOW_CLOSED, FLOW_OPENED, FlowEvent};

use crate::maps::{ACTIVE, BACKENDS, CONFIG, FLOW_EVENTS, FLOWS, NEW_FLOWS, OWN_MAC, SERVICES};

/// The agent's CONFIG (none before it is written).
#[inline(always)]
pub fn config() -> Option<&'static DataplaneConfig> {
    CONFIG.get(0)
}

/// Whether this CPU may remember one more new flow this second (see
/// `DataplaneConfig::new_flows_per_cpu`); counts it if so.
#[inline(always)]
pub fn may_remember() -> bool {
    let limit = match config() {
        Some(c) if c.new_flows_per_cpu != 0 => c.new_flows_per_cpu as u64,
        _ => return true,
    };
    let Some(w) = NEW_FLOWS.get_ptr_mut(0) else {
        return true;
    };
    // SAFETY: per-CPU value; nothing else runs on this CPU meanwhile.
    let w = unsafe { &mut *w };
    let now = unsafe { aya_ebpf::helpers::bpf_ktime_get_ns() };
    if now.wrapping_sub(w.window_start_ns) >= 1_000_000_000 {
        w.window_start_ns = now;
        w.count = 0;
    }
    if w.count >= limit {
        return false;
    }
    w.count += 1;
    true
}

/// Whether `dst` is the MAC of an interface the program runs on (the
/// clients' first, then NAT's backend side). Until the agent has written
/// them, nothing is ours: frames pass to the kernel untouched.
#[inline(always)]
pub fn ours(dst: &[u8; 6]) -> bool {
    for i in 0..MAX_INTERFACES {
        match OWN_MAC.get(i) {
            Some(m) if m.set != 0 => {
                if m.mac == *dst {
                    return true;
                }
            }
            _ => return false,
        }
    }
    false
}

/// The service for (dst, dport, proto), else the VIP's all-ports service.
#[inline(always)]
pub fn service(key: &FlowKey) -> Option<ServiceMeta> {
    let mut sk = ServiceKey {
        addr: key.dst,
        port: key.dport,
        proto: key.proto,
        family: key.family,
    };
    // SAFETY: values are copied out at once; a concurrent update can at worst
    // give this packet the old or new meta, both valid.
    if let Some(m) = unsafe { SERVICES.get(sk) } {
        return Some(*m);
    }
    // The all-ports lookup only when some service has every port.
    if config().is_none_or(|c| c.flags & CFG_ALL_PORTS == 0) {
        return None;
    }
    sk.port = 0;
    unsafe { SERVICES.get(sk) }.copied()
}

/// Backend `id`, if it may receive packets: the map's own value (a copy
/// would cost the stack a tunnel needs).
#[inline(always)]
pub fn backend(id: u32) -> Option<&'static Backend> {
    match BACKENDS.get(id) {
        Some(b) if b.usable() => Some(b),
        _ => None,
    }
}

/// Backend `id` if frames can be sent to it, healthy or not: where its
/// health checks go.
#[inline(always)]
pub fn reachable(id: u32) -> Option<&'static Backend> {
    const REACHABLE: u32 = BACKEND_CONFIGURED | BACKEND_HAS_MAC;
    match BACKENDS.get(id) {
        Some(b) if b.flags & REACHABLE == REACHABLE => Some(b),
        _ => None,
    }
}

/// Add `d` to backend `id`'s active flows (shared by all CPUs).
#[inline(always)]
pub fn active_add(id: u32, d: i64) {
    if let Some(p) = ACTIVE.get_ptr_mut(id) {
        // SAFETY: a valid, aligned u64 in the map. core's atomic types have
        // no read-modify-write on the BPF target; the intrinsic becomes the
        // BPF atomic add, the same for every CPU.
        unsafe { atomic_xadd::<i64, i64, { AtomicOrdering::Relaxed }>(p as *mut i64, d) };
    }
}

/// A remembered flow: its backend id, the backend, and `FlowValue::nat`.
pub type Hit = (u32, &'static Backend, u32);

/// The flow's remembered backend while it is usable. A client's first FIN
/// or RST closes the flow's active count once. A flow whose backend is gone
/// (or that belongs to another service) stops counting and gets `None`: the
/// caller places it again.
#[inline(always)]
pub fn remembered(key: &FlowKey, svc: &ServiceMeta, closing: bool) -> Option<Hit> {
    let v = FLOWS.get_ptr_mut(key)?;
    // SAFETY: the map value stays valid for this program run.
    let v = unsafe { &mut *v };
    let open = v.flags & FLOW_CLOSING == 0;
    if v.service == svc.id
        && let Some(b) = backend(v.backend)
    {
        if closing && open {
            v.flags |= FLOW_CLOSING;
            active_add(v.backend, -1);
            report(key, v.backend, svc.id, v.nat, FLOW_CLOSED);
        }
        return Some((v.backend, b, v.nat));
    }
    if open {
        // Leaving a backend that is gone: it no longer carries the flow.
        active_add(v.backend, -1);
    }
    None
}

/// Remember a new flow's backend; it counts as active unless it opened
/// already closing. A full-NAT flow is reported once its source port is
/// allocated (nat.rs).
#[inline(always)]
pub fn remember(key: &FlowKey, svc: &ServiceMeta, id: u32, closing: bool) {
    let v = FlowValue {
        backend: id,
        service: svc.id,
        flags: if closing { FLOW_CLOSING } else { 0 },
        ..Default::default()
    };
    // A full LRU evicts the oldest flow; failure here only costs a re-hash later.
    if FLOWS.insert(key, v, 0).is_ok() && !closing {
        active_add(id, 1);
        if svc.forward != FORWARD_FULLNAT {
            report(key, id, svc.id, 0, FLOW_OPENED);
        }
    }
}

/// Tell the agent (for its sync peers) that a flow opened or closed;
/// a full ring buffer costs only the report, counted.
#[inline(always)]
pub fn report(key: &FlowKey, backend: u32, service: u32, nat: u32, kind: u8) {
    // Nobody to tell without peers: the ring costs ~100 ns a flow.
    if config().is_none_or(|c| c.flags & CFG_SYNC == 0) {
        return;
    }
    match FLOW_EVENTS.reserve::<FlowEvent>(0) {
        Some(mut e) => {
            // Field by field: a whole-struct write compiles to memmove and
            // memset calls on BPF.
            let p = e.as_mut_ptr();
            // SAFETY: the reserved entry, ours until submitted.
            unsafe {
                (*p).key = *key;
                (*p).backend = backend;
                (*p).service = service;
                (*p).kind = kind;
                (*p)._pad[0] = 0;
                (*p)._pad[1] = 0;
                (*p)._pad[2] = 0;
                (*p).nat = nat;
            }
            e.submit(0);
        }
        None => crate::stats::reason(lb_common::Reason::SyncDropped),
    }
}
