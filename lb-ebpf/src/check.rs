//! Health checks through the data path (see lb-common's `check`): out of
//! the check namespace to one backend, and the backend's answers back in.

use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use lb_common::{
    FAMILY_V4, FORWARD_DR, FORWARD_GUE, HASH_5TUPLE, Reason,
    check::{CHECK_PORT_BASE, CHECK_PORTS_LEN, CheckPort},
    flow_hash,
};
use network_types::eth::EthHdr;

use crate::{
    forward, lookup,
    maps::{CHECK_PATH, CHECK_PORTS, DEVMAP},
    parse::{Parsed, ptr_mut},
    stats, tunnel,
};

/// The backend a check port belongs to.
#[inline(always)]
fn port(p: u16) -> Option<CheckPort> {
    if p < CHECK_PORT_BASE {
        return None;
    }
    let i = (p - CHECK_PORT_BASE) as u32;
    if i >= CHECK_PORTS_LEN {
        return None;
    }
    match CHECK_PORTS.get(i) {
        Some(c) if c.set != 0 => Some(*c),
        _ => None,
    }
}

/// An answer to a check (to the balancer's own address, a check port):
/// into the check namespace. None for anything else.
#[inline(always)]
pub fn reply(ctx: &XdpContext, p: &Parsed) -> Option<u32> {
    port(p.key.dport)?;
    let path = CHECK_PATH.get(0)?;
    let ours = if p.key.family == FAMILY_V4 {
        p.key.dst[..4] == path.src4
    } else {
        p.key.dst == path.src6
    };
    if path.set == 0 || !ours {
        return None;
    }
    let eth = ptr_mut::<EthHdr>(ctx, 0).ok()?;
    forward::set_macs(eth, &path.ns_mac, &path.our_mac);
    stats::reason(Reason::FwdCheck);
    Some(
        DEVMAP
            .redirect(path.ifindex, 0)
            .unwrap_or(xdp_action::XDP_DROP),
    )
}

/// A check leaving the namespace: to its backend, the way the backend's
/// service forwards (whatever the backend's health).
#[inline(always)]
pub fn out(ctx: &XdpContext, p: &Parsed) -> u32 {
    let Some(c) = port(p.key.sport) else {
        return xdp_action::XDP_DROP;
    };
    let Some(b) = lookup::reachable(c.backend) else {
        return xdp_action::XDP_DROP;
    };
    stats::reason(Reason::FwdCheck);
    if c.forward == FORWARD_DR {
        return forward::direct(ctx, b);
    }
    let job = tunnel::Job {
        backend: c.backend,
        hash: flow_hash(&p.key, HASH_5TUPLE),
        l3_off: p.l3_off,
        gue: c.forward == FORWARD_GUE,
        check: true,
        kind: tunnel::JOB_TUNNEL,
    };
    match tunnel::Sent::from_raw(tunnel::forward(ctx, job.pack())) {
        tunnel::Sent::Action(a) => a,
        // Checks send small packets; a path that cannot carry them fails.
        tunnel::Sent::TooBig(_) => xdp_action::XDP_DROP,
    }
}
