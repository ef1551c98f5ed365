//! Direct-routing forward: rewrite the MACs, then XDP_TX or XDP_REDIRECT.

use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use lb_common::{Backend, Reason};
use network_types::eth::EthHdr;

use crate::{maps::DEVMAP, parse::ptr_at, stats};

/// Send the frame to `b`: out the same interface, or via the devmap.
#[inline(always)]
pub fn direct(ctx: &XdpContext, b: &Backend) -> u32 {
    let Ok(eth) = ptr_at::<EthHdr>(ctx, 0) else {
        return xdp_action::XDP_PASS;
    };
    let eth = eth as *mut EthHdr;
    // SAFETY: ptr_at checked the bounds; XDP frames are writable.
    unsafe {
        (*eth).dst_addr = b.mac;
        (*eth).src_addr = b.src_mac;
    }
    if b.ifindex == 0 || b.ifindex == ctx.ingress_ifindex() as u32 {
        return xdp_action::XDP_TX;
    }
    match DEVMAP.redirect(b.ifindex, 0) {
        Ok(action) => action,
        Err(_) => {
            stats::reason(Reason::DropNoRoute);
            xdp_action::XDP_DROP
        }
    }
}

/// The benchmark floor: swap source and destination MACs and bounce.
#[inline(always)]
pub fn swap_macs(ctx: &XdpContext, _l3_off: usize) -> u32 {
    let Ok(eth) = ptr_at::<EthHdr>(ctx, 0) else {
        return xdp_action::XDP_PASS;
    };
    let eth = eth as *mut EthHdr;
    unsafe { core::mem::swap(&mut (*eth).dst_addr, &mut (*eth).src_addr) };
    xdp_action::XDP_TX
}
