//! The backend's decapsulation program (`lb realserver --mode ipip|gue`):
//! strips the outer header of IPIP, IP6IP6, 4in6 and GUE (variant 1)
//! packets whose inner destination is a configured VIP, so the inner packet
//! goes up the stack as if it had arrived as is. Everything else passes
//! untouched. Parsing is the balancer's own module, run on both headers.
#![no_std]
#![no_main]

// The balancer's parser; the flow-key half of it is not used here.
#[allow(dead_code)]
mod parse;

use aya_ebpf::{
    bindings::xdp_action,
    helpers::bpf_xdp_adjust_head,
    macros::{map, xdp},
    maps::{Array, HashMap, PerCpuArray},
    programs::XdpContext,
};
use lb_common::{
    FAMILY_V4, FAMILY_V6, FlowKey, PROTO_UDP, Reason, ServiceKey,
    decap::{DECAP_REASON_COUNT, DecapConfig, DecapReason},
};
use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
    udp::UdpHdr,
    vlan::VlanHdr,
};

use crate::parse::{ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6, Ip, ptr_at, ptr_mut};

#[map]
static DECAP_VIPS: HashMap<ServiceKey, u32> = HashMap::pinned(256, 0);

#[map]
static DECAP_CONFIG: Array<DecapConfig> = Array::pinned(1, 0);

#[map]
static DECAP_STATS: PerCpuArray<u64> = PerCpuArray::pinned(DECAP_REASON_COUNT, 0);

const IPPROTO_IPIP: u8 = 4;
const IPPROTO_IPV6: u8 = 41;

#[xdp]
pub fn lb_decap(ctx: XdpContext) -> u32 {
    let r = match try_decap(&ctx) {
        Ok(()) => DecapReason::Decapsulated,
        Err(r) => r,
    };
    if let Some(c) = DECAP_STATS.get_ptr_mut(r as u32) {
        // SAFETY: per-CPU slot, no other writer on this CPU while we run.
        unsafe { *c += 1 };
    }
    xdp_action::XDP_PASS
}

/// The outer header's verdict: a fragment or an extension header is not a
/// tunnel packet we can open; anything else odd is malformed.
#[inline(always)]
fn outer_err(r: Reason) -> DecapReason {
    match r {
        Reason::PassFragment | Reason::PassIpv6Ext | Reason::PassNotIp => {
            DecapReason::PassNotTunnel
        }
        _ => DecapReason::PassMalformed,
    }
}

#[inline(always)]
fn try_decap(ctx: &XdpContext) -> Result<(), DecapReason> {
    let (ether_type, l2) = parse::l2(ctx).map_err(|_| DecapReason::PassNotTunnel)?;
    let frame_len = ctx.data_end() - ctx.data();
    let mut outer = FlowKey::default();
    let ip: Ip = match ether_type {
        ETH_P_IP => parse::ipv4(ctx, l2, frame_len, &mut outer),
        ETH_P_IPV6 => parse::ipv6(ctx, l2, frame_len, &mut outer),
        _ => return Err(DecapReason::PassNotTunnel),
    }
    .map_err(outer_err)?;
    // Where the inner packet starts, how long it may be, and its version.
    let (inner_off, inner_len, version) = match ip.proto {
        IPPROTO_IPIP => (ip.l4_off, ip.l4_len, 4),
        IPPROTO_IPV6 => (ip.l4_off, ip.l4_len, 6),
        PROTO_UDP => {
            let port = DECAP_CONFIG.get(0).map_or(0, |c| c.gue_port);
            let udp = ptr_at::<UdpHdr>(ctx, ip.l4_off).map_err(|_| DecapReason::PassMalformed)?;
            // SAFETY: ptr_at checked the bounds.
            let (dst, len) = unsafe {
                (
                    u16::from_be_bytes((*udp).dst),
                    u16::from_be_bytes((*udp).len) as usize,
                )
            };
            if port == 0 || dst != port {
                return Err(DecapReason::PassNotTunnel);
            }
            if len < UdpHdr::LEN || len > ip.l4_len {
                return Err(DecapReason::PassMalformed);
            }
            // GUE variant 1 (RFC 8086 §4): the first nibble is the IP version.
            // Two bytes: a one-byte bound check compiles to a form the
            // verifier does not follow.
            let first = ptr_at::<[u8; 2]>(ctx, ip.l4_off + UdpHdr::LEN)
                .map_err(|_| DecapReason::PassMalformed)?;
            let version = match unsafe { (*first)[0] } >> 4 {
                4 => 4,
                6 => 6,
                _ => return Err(DecapReason::PassNotTunnel),
            };
            (ip.l4_off + UdpHdr::LEN, len - UdpHdr::LEN, version)
        }
        _ => return Err(DecapReason::PassNotTunnel),
    };
    // The inner packet must fit inside the outer one's payload.
    let mut inner = FlowKey::default();
    let end = inner_off + inner_len;
    let parsed = if version == 4 {
        parse::ipv4(ctx, inner_off, end, &mut inner)
    } else {
        parse::ipv6(ctx, inner_off, end, &mut inner)
    };
    let mut vip = ServiceKey {
        addr: inner.dst,
        port: 0,
        proto: 0,
        family: inner.family,
    };
    match parsed {
        Ok(_) => {}
        // The kernel reassembles an inner fragment or walks its extension
        // headers; the destination is all this program needs.
        Err(Reason::PassFragment) | Err(Reason::PassIpv6Ext) => {
            vip = inner_dst(ctx, inner_off, version)?;
        }
        Err(_) => return Err(DecapReason::PassMalformed),
    }
    // SAFETY: the value is only tested for presence.
    if unsafe { DECAP_VIPS.get(vip) }.is_none() {
        return Err(DecapReason::PassNotVip);
    }
    strip(ctx, l2, inner_off, version)
}

/// The inner destination of a packet the parser stopped at (a fragment, an
/// extension header) after checking its lengths.
#[inline(always)]
fn inner_dst(ctx: &XdpContext, off: usize, version: u8) -> Result<ServiceKey, DecapReason> {
    let bad = |_| DecapReason::PassMalformed;
    let mut k = ServiceKey::default();
    // SAFETY: ptr_at checked the bounds.
    if version == 4 {
        let ip = ptr_at::<Ipv4Hdr>(ctx, off).map_err(bad)?;
        k.addr[..4].copy_from_slice(unsafe { &(*ip).dst_addr });
        k.family = FAMILY_V4;
    } else {
        let ip = ptr_at::<Ipv6Hdr>(ctx, off).map_err(bad)?;
        k.addr = unsafe { (*ip).dst_addr };
        k.family = FAMILY_V6;
    }
    Ok(k)
}

/// Move the Ethernet header (and tag) up to the inner packet and drop
/// what lay between.
#[inline(always)]
fn strip(ctx: &XdpContext, l2: usize, inner_off: usize, version: u8) -> Result<(), DecapReason> {
    let bad = |_| DecapReason::PassMalformed;
    let eth = ptr_at::<EthHdr>(ctx, 0).map_err(bad)?;
    // SAFETY: ptr_at checked the bounds.
    let (dst, src) = unsafe { ((*eth).dst_addr, (*eth).src_addr) };
    let tci = if l2 > EthHdr::LEN {
        let v = ptr_at::<VlanHdr>(ctx, EthHdr::LEN).map_err(bad)?;
        Some(unsafe { (*v).tci })
    } else {
        None
    };
    let ether_type: u16 = if version == 4 { ETH_P_IP } else { ETH_P_IPV6 };
    let at = inner_off - l2;
    let new = ptr_mut::<EthHdr>(ctx, at).map_err(bad)?;
    // SAFETY: ptr_mut checked the bounds; the outer headers being
    // overwritten are dropped below.
    unsafe {
        (*new).dst_addr = dst;
        (*new).src_addr = src;
        (*new).ether_type = ether_type.to_be();
    }
    if let Some(tci) = tci {
        let v = ptr_mut::<VlanHdr>(ctx, at + EthHdr::LEN).map_err(bad)?;
        unsafe {
            (*new).ether_type = ETH_P_8021Q.to_be();
            (*v).tci = tci;
            (*v).ether_type = ether_type.to_be();
        }
    }
    // SAFETY: a helper on our own context.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, at as i32) } != 0 {
        return Err(DecapReason::PassMalformed);
    }
    Ok(())
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
