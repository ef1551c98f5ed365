//! Per packet: service lookup, flow table, backend selection.

use aya_ebpf::helpers::bpf_get_prandom_u32;
use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use lb_common::{
    Backend, FlowValue, HASH_5TUPLE, NO_BACKEND, Reason, SCHED_RANDOM, SCHED_RING, SCHED_WRR,
    SERVICE_STANDBY, ServiceKey, ServiceMeta, flow_hash,
};

use crate::{
    forward,
    maps::{BACKENDS, FLOWS, RR_STATE, SERVICES, TABLES},
    parse, stats,
};

#[inline(always)]
pub fn balance(ctx: &XdpContext) -> u32 {
    let p = match parse::parse(ctx) {
        Ok(p) => p,
        Err(r) => {
            stats::reason(r);
            return xdp_action::XDP_PASS;
        }
    };
    let Some(svc) = service(&p.key) else {
        stats::reason(Reason::PassNotVip);
        return xdp_action::XDP_PASS;
    };
    if svc.flags & SERVICE_STANDBY != 0 {
        stats::reason(Reason::PassStandby);
        return xdp_action::XDP_PASS;
    }
    let Some((id, backend)) = pick(&p.key, &svc, p.opening) else {
        stats::reason(Reason::DropNoBackend);
        return xdp_action::XDP_DROP;
    };
    stats::forwarded(svc.id, id, (ctx.data_end() - ctx.data()) as u64);
    forward::direct(ctx, &backend)
}

/// The service for (dst, dport, proto), else the VIP's all-ports service.
#[inline(always)]
fn service(key: &lb_common::FlowKey) -> Option<ServiceMeta> {
    let mut sk = ServiceKey {
        addr: key.dst,
        port: key.dport,
        proto: key.proto,
        family: key.family,
    };
    // SAFETY: values are copied out at once; a concurrent update can at worst
    // give this packet the old or new meta, both valid.
    if let Some(m) = unsafe { SERVICES.get(&sk) } {
        return Some(*m);
    }
    sk.port = 0;
    unsafe { SERVICES.get(&sk) }.copied()
}

#[inline(always)]
fn backend(id: u32) -> Option<Backend> {
    match BACKENDS.get(id) {
        Some(b) if b.usable() => Some(*b),
        _ => None,
    }
}

/// The flow's remembered backend while it is usable, else a fresh choice.
#[inline(always)]
fn pick(key: &lb_common::FlowKey, svc: &ServiceMeta, opening: bool) -> Option<(u32, Backend)> {
    if let Some(v) = unsafe { FLOWS.get(key) } {
        if v.service == svc.id {
            if let Some(b) = backend(v.backend) {
                stats::reason(Reason::FwdFlowHit);
                return Some((v.backend, b));
            }
        }
    }
    let len = svc.active_len();
    if len == 0 || len > svc.table_size {
        return None;
    }
    let base = svc.active_base();
    let hash = flow_hash(key, svc.hash_fields);
    let at = match svc.scheduler {
        SCHED_RING => ring(base, len / 2, hash)?,
        // A connection's first packet takes the next position (wrr) or a
        // random one; a mid-flow packet the flow table forgot falls back to
        // its hash, so it lands the same way every time. With hash =
        // "src-ip" (persistence), the hash always decides.
        SCHED_WRR if opening && svc.hash_fields == HASH_5TUPLE => {
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
        SCHED_RANDOM if opening && svc.hash_fields == HASH_5TUPLE => {
            base + unsafe { bpf_get_prandom_u32() } % len
        }
        _ => base + hash % len,
    };
    let id = *TABLES.get(at)?;
    if id == NO_BACKEND {
        return None;
    }
    let b = backend(id)?;
    let v = FlowValue {
        backend: id,
        service: svc.id,
    };
    // A full LRU evicts the oldest flow; failure here only costs a re-hash later.
    let _ = FLOWS.insert(key, &v, 0);
    stats::reason(Reason::FwdFlowMiss);
    Some((id, b))
}

/// TABLES index of the backend of the first ring point at or after `hash`
/// (wrapping): a binary search over `points` sorted (point, backend) pairs.
#[inline(always)]
fn ring(base: u32, points: u32, hash: u32) -> Option<u32> {
    if points == 0 {
        return None;
    }
    let (mut lo, mut hi) = (0u32, points);
    // 2^17 > the most points a slot holds (table_size / 2).
    for _ in 0..17 {
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
