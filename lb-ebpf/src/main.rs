//! XDP entry points: the balancer and two benchmark references.
#![no_std]
#![no_main]
// The BPF atomic add (core's atomics lack read-modify-write on this target).
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod bench;
mod check;
mod fib;
mod forward;
mod icmp;
mod lookup;
mod maps;
mod nat;
mod parse;
mod select;
mod stats;
mod tunnel;

use aya_ebpf::{
    bindings::{xdp_action, xdp_md},
    macros::xdp,
    programs::XdpContext,
};
use lb_common::{
    FORWARD_DR, FORWARD_FULLNAT, FORWARD_GUE, FORWARD_NAT, FlowKey, NO_BACKEND, Reason,
    SERVICE_STANDBY, ServiceMeta,
};
use network_types::eth::EthHdr;

use crate::maps::TABLES;

/// The balancer: VIP traffic goes to a backend, everything else passes.
/// Deciding, tunnelling, NAT and ICMP answers are separate BPF functions
/// called one after the other, so their stacks are never needed at once
/// (BPF allows 512 bytes for a whole call chain). They are global
/// functions: the verifier checks each once, on its own, instead of once
/// for every distinct state the paths before it end in.
#[xdp]
pub fn lb_xdp(ctx: XdpContext) -> u32 {
    let next = lb_decide(ctx.ctx);
    if !tunnel::Job::is_job(next) {
        return next as u32;
    }
    let sent = if tunnel::Job::kind_of(next) == tunnel::JOB_TUNNEL {
        lb_tunnel(ctx.ctx, next)
    } else {
        lb_nat(ctx.ctx, next)
    };
    match tunnel::Sent::from_raw(sent) {
        tunnel::Sent::Action(a) => a,
        tunnel::Sent::TooBig(mtu) => {
            lb_too_big(ctx.ctx, tunnel::Job::unpack(next).l3_off as u64, mtu as u64)
        }
    }
}

/// An XDP action, or a packed `tunnel::Job` for the caller to run.
#[inline(never)]
#[unsafe(no_mangle)]
pub extern "C" fn lb_decide(ctx: *mut xdp_md) -> u64 {
    let ctx = &XdpContext::new(ctx);
    match try_lb(ctx) {
        Ok(next) => next,
        Err((reason, action)) => {
            stats::reason(reason);
            action as u64
        }
    }
}

/// Encapsulate toward a packed tunnel job's backend (`tunnel::forward`).
#[inline(never)]
#[unsafe(no_mangle)]
pub extern "C" fn lb_tunnel(ctx: *mut xdp_md, job: u64) -> u64 {
    tunnel::forward(&XdpContext::new(ctx), job)
}

/// Run a NAT job (`nat::run`).
#[inline(never)]
#[unsafe(no_mangle)]
pub extern "C" fn lb_nat(ctx: *mut xdp_md, job: u64) -> u64 {
    nat::run(&XdpContext::new(ctx), job)
}

/// Tell the client of the frame at `l3_off` that `mtu` bytes fit
/// (`icmp::too_big`).
#[inline(never)]
#[unsafe(no_mangle)]
pub extern "C" fn lb_too_big(ctx: *mut xdp_md, l3_off: u64, mtu: u64) -> u32 {
    // Verified on its own, the offset is any number: it is one of two.
    let l3 = if l3_off == tunnel::L3_VLAN as u64 {
        tunnel::L3_VLAN
    } else {
        EthHdr::LEN
    };
    icmp::too_big(&XdpContext::new(ctx), l3, mtu as usize)
}

/// parse -> service -> remembered flow or a fresh selection -> forward.
/// Every exit names its reason (an `Err` is counted by the caller).
#[inline(always)]
fn try_lb(ctx: &XdpContext) -> Result<u64, (Reason, u32)> {
    const PASS: u32 = xdp_action::XDP_PASS;
    let eth: *const EthHdr = parse::ptr_at(ctx, 0).map_err(|r| (r, PASS))?;
    // SAFETY: ptr_at checked the bounds.
    if !lookup::ours(unsafe { &(*eth).dst_addr }) {
        return Err((Reason::PassNotOurs, PASS));
    }
    let p = match parse::parse(ctx) {
        Ok(p) => p,
        // Not TCP or UDP: perhaps an ICMP error about a NAT connection.
        Err(Reason::PassUnknownL4) if nat::enabled() => {
            return Ok(tunnel::Job::lookup(tunnel::JOB_NAT_ICMP, EthHdr::LEN));
        }
        Err(r) => return Err((r, PASS)),
    };
    let Some(svc) = lookup::service(&p.key) else {
        // Not a VIP: perhaps a backend answering a dataplane check, or a
        // NAT connection's reply.
        return match check::reply(ctx, &p) {
            Some(action) => Ok(action as u64),
            None if nat::enabled() => Ok(tunnel::Job::lookup(tunnel::JOB_NAT_REPLY, p.l3_off)),
            None => Err((Reason::PassNotVip, PASS)),
        };
    };
    if svc.flags & SERVICE_STANDBY != 0 {
        return Err((Reason::PassStandby, PASS));
    }
    let (id, backend, nat) = match lookup::remembered(&p.key, &svc, p.closing) {
        Some(hit) => {
            stats::reason(Reason::FwdFlowHit);
            hit
        }
        None => {
            let no_backend = (Reason::DropNoBackend, xdp_action::XDP_DROP);
            let id = place(&p.key, &svc, p.opening, p.closing);
            let b = lookup::backend(id).ok_or(no_backend)?;
            stats::reason(Reason::FwdFlowMiss);
            (id, b, 0)
        }
    };
    stats::forwarded(svc.id, id, (ctx.data_end() - ctx.data()) as u64);
    let kind = match svc.forward {
        FORWARD_DR => return Ok(forward::direct(ctx, backend) as u64),
        FORWARD_NAT => tunnel::JOB_NAT,
        FORWARD_FULLNAT => tunnel::JOB_FULLNAT,
        _ => tunnel::JOB_TUNNEL,
    };
    let hash = if kind == tunnel::JOB_TUNNEL {
        lb_common::flow_hash(&p.key, lb_common::HASH_5TUPLE)
    } else {
        nat
    };
    Ok(tunnel::Job {
        backend: id,
        hash,
        l3_off: p.l3_off,
        gue: svc.forward == FORWARD_GUE,
        check: false,
        kind,
    }
    .pack())
}

/// A new flow's backend id (NO_BACKEND if none), remembered. Above this
/// CPU's new-flow rate (a flood) it is placed by its hash, as its later
/// packets will be, and not remembered: the flood evicts no established
/// flow. Full-NAT flows are always remembered (their source port lives
/// there).
#[inline(always)]
fn place(key: &FlowKey, svc: &ServiceMeta, opening: bool, closing: bool) -> u32 {
    let remember = svc.forward == FORWARD_FULLNAT || lookup::may_remember();
    let Some(at) = select::select(key, svc, opening && remember) else {
        return NO_BACKEND;
    };
    let id = match TABLES.get(at) {
        Some(&id) if id != NO_BACKEND && lookup::backend(id).is_some() => id,
        _ => return NO_BACKEND,
    };
    if remember {
        lookup::remember(key, svc, id, closing);
    } else {
        stats::reason(Reason::Unremembered);
    }
    id
}

/// On the check namespace's veth: health checks through the data path go
/// to their backend; nothing else leaves that namespace.
#[xdp]
pub fn lb_check_out(ctx: XdpContext) -> u32 {
    match parse::parse(&ctx) {
        Ok(p) => check::out(&ctx, &p),
        Err(_) => xdp_action::XDP_DROP,
    }
}

/// Passes everything: the benchmark's empty baseline, and the program a lab
/// puts on a veth peer (a veth drops XDP_TX frames unless its peer runs XDP).
#[xdp]
pub fn xdp_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// Benchmark reference: parse to L4 and bounce the frame, nothing else.
#[xdp]
pub fn bench_floor(ctx: XdpContext) -> u32 {
    match parse::parse(&ctx) {
        Ok(_) => forward::swap_macs(&ctx),
        Err(_) => xdp_action::XDP_PASS,
    }
}

/// Forwarding-path benchmark: the next flow's frame, sent (live frames).
#[xdp]
pub fn bench_gen(ctx: XdpContext) -> u32 {
    bench::generate(&ctx)
}

/// Forwarding-path benchmark: count and drop.
#[xdp]
pub fn bench_sink(_ctx: XdpContext) -> u32 {
    bench::sink()
}

/// Never loaded: it names the user-space-only maps (HEALTH, VRRP,
/// AGENT_STATS, SLOT_SUMS, SYNC_STATS) so the linker keeps them in the object, where the loader creates and pins them
/// with the others.
#[xdp]
pub fn keep_user_maps(_ctx: XdpContext) -> u32 {
    match (
        maps::HEALTH.get(0),
        maps::VRRP.get(0),
        maps::AGENT_STATS.get(0),
        maps::SLOT_SUMS.get(0),
        maps::SYNC_STATS.get(0),
    ) {
        (Some(_), Some(_), Some(_), Some(_), Some(_)) => xdp_action::XDP_PASS,
        _ => xdp_action::XDP_ABORTED,
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
