//! Sending a frame on: direct routing's MAC rewrite, the Ethernet header a
//! tunnel or an ICMP answer writes, and the way out (XDP_TX or a devmap
//! redirect).

use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use lb_common::{Backend, Reason};
use network_types::{eth::EthHdr, vlan::VlanHdr};

use crate::{
    maps::DEVMAP,
    parse::{ETH_P_8021Q, ptr_at, ptr_mut},
    stats,
};

/// Send the frame to `b`: out the same interface, or via the devmap.
#[inline(always)]
pub fn direct(ctx: &XdpContext, b: &Backend) -> u32 {
    let Ok(eth) = ptr_mut::<EthHdr>(ctx, 0) else {
        return xdp_action::XDP_PASS;
    };
    set_macs(eth, &b.mac, &b.src_mac);
    out(ctx, b.ifindex)
}

/// Write a frame's destination and source MACs as six 16-bit stores: a
/// plain 6-byte array assignment to packet memory compiles to a call of
/// a byte-by-byte memmove on BPF.
#[inline(always)]
pub fn set_macs(eth: *mut EthHdr, dst: &[u8; 6], src: &[u8; 6]) {
    let p = eth as *mut u16;
    let w = |m: &[u8; 6], i: usize| u16::from_ne_bytes([m[2 * i], m[2 * i + 1]]);
    // SAFETY: the caller checked the 14-byte header's bounds.
    unsafe {
        for i in 0..3 {
            p.add(i).write_unaligned(w(dst, i));
            p.add(3 + i).write_unaligned(w(src, i));
        }
    }
}

/// XDP_TX when `ifindex` is the ingress interface (or unknown), else a
/// redirect through the devmap, where the agent put every egress.
#[inline(always)]
pub fn out(ctx: &XdpContext, ifindex: u32) -> u32 {
    if ifindex == 0 || ifindex == ctx.ingress_ifindex() as u32 {
        return xdp_action::XDP_TX;
    }
    match DEVMAP.redirect(ifindex, 0) {
        Ok(action) => action,
        Err(_) => {
            stats::reason(Reason::DropNoRoute);
            xdp_action::XDP_DROP
        }
    }
}

/// The 802.1Q tag of a frame whose L3 header is at `l3_off` (None untagged).
#[inline(always)]
pub fn vlan_tci(ctx: &XdpContext, l3_off: usize) -> Option<[u8; 2]> {
    if l3_off == EthHdr::LEN {
        return None;
    }
    // SAFETY: ptr_at checked the bounds.
    ptr_at::<VlanHdr>(ctx, EthHdr::LEN)
        .ok()
        .map(|v| unsafe { (*v).tci })
}

/// Write an Ethernet header (with `tci`'s tag, if any) for an L3 header of
/// `ether_type` at `l3_off`.
#[inline(always)]
pub fn write_l2(
    ctx: &XdpContext,
    l3_off: usize,
    dst: &[u8; 6],
    src: &[u8; 6],
    tci: Option<[u8; 2]>,
    ether_type: u16,
) -> Result<(), Reason> {
    let eth = ptr_mut::<EthHdr>(ctx, 0)?;
    set_macs(eth, dst, src);
    // SAFETY: ptr_mut checked the bounds of each header written.
    match tci {
        Some(tci) if l3_off == EthHdr::LEN + VlanHdr::LEN => {
            let vlan = ptr_mut::<VlanHdr>(ctx, EthHdr::LEN)?;
            unsafe {
                (*eth).ether_type = ETH_P_8021Q.to_be();
                (*vlan).tci = tci;
                (*vlan).ether_type = ether_type.to_be();
            }
        }
        _ => unsafe { (*eth).ether_type = ether_type.to_be() },
    }
    Ok(())
}

/// The benchmark floor: swap source and destination MACs and bounce.
#[inline(always)]
pub fn swap_macs(ctx: &XdpContext) -> u32 {
    let Ok(eth) = ptr_mut::<EthHdr>(ctx, 0) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: ptr_mut checked the bounds.
    unsafe { core::mem::swap(&mut (*eth).dst_addr, &mut (*eth).src_addr) };
    xdp_action::XDP_TX
}
