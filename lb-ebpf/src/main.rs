//! XDP entry points: the balancer and two benchmark references.
#![no_std]
#![no_main]
// The BPF atomic add (core's atomics lack read-modify-write on this target).
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod forward;
mod lookup;
mod maps;
mod parse;
mod stats;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

/// The balancer: VIP traffic goes to a backend, everything else passes.
#[xdp]
pub fn lb_xdp(ctx: XdpContext) -> u32 {
    lookup::balance(&ctx)
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
        Ok(p) => forward::swap_macs(&ctx, p.l3_off),
        Err(_) => xdp_action::XDP_PASS,
    }
}

/// Never loaded: it names the user-space-only maps (HEALTH, VRRP,
/// AGENT_STATS) so the
/// linker keeps them in the object, where the loader creates and pins them
/// with the others.
#[xdp]
pub fn keep_user_maps(_ctx: XdpContext) -> u32 {
    match (
        maps::HEALTH.get(0),
        maps::VRRP.get(0),
        maps::AGENT_STATS.get(0),
    ) {
        (Some(_), Some(_), Some(_)) => xdp_action::XDP_PASS,
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
