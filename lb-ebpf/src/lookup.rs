//! Per packet: service lookup, flow table, backend selection.

use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use lb_common::{
    Backend, FlowValue, NO_BACKEND, Reason, SERVICE_STANDBY, ServiceKey, ServiceMeta, flow_hash,
};

use crate::{
    forward,
    maps::{BACKENDS, FLOWS, SERVICES, TABLES},
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
    let Some((id, backend)) = pick(&p.key, &svc) else {
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
fn pick(key: &lb_common::FlowKey, svc: &ServiceMeta) -> Option<(u32, Backend)> {
    if let Some(v) = unsafe { FLOWS.get(key) } {
        if v.service == svc.id {
            if let Some(b) = backend(v.backend) {
                stats::reason(Reason::FwdFlowHit);
                return Some((v.backend, b));
            }
        }
    }
    if svc.table_size == 0 {
        return None;
    }
    let idx = svc.table_index(flow_hash(key, svc.hash_fields));
    let id = *TABLES.get(idx)?;
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
