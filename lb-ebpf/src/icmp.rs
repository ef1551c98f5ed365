//! ICMP too-big answers from XDP: a client whose packet would not fit the
//! tunnel learns a smaller path MTU (IPv4 Fragmentation Needed, RFC 1191;
//! IPv6 Packet Too Big, RFC 8201) from the VIP, as if the VIP's own host had
//! said it. Rate-limited per CPU.

use aya_ebpf::{
    bindings::xdp_action,
    helpers::{bpf_csum_diff, bpf_ktime_get_ns, bpf_xdp_adjust_head, bpf_xdp_adjust_tail},
    programs::XdpContext,
};
use lb_common::{ICMP_TOO_BIG_PER_SEC, Reason};
use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
};

use crate::{
    forward,
    maps::ICMP_BUDGET,
    parse::{ETH_P_IP, ETH_P_IPV6, ptr_at, ptr_mut},
    stats,
    tunnel::{fold, ipv4_checksum},
};

/// Bytes of the client's packet quoted after the ICMP header: its IP header
/// and the start of L4, enough for the client to find its socket.
const QUOTE: usize = 128;
const ICMP_HDR: usize = 8;
const IPV4_HDR: usize = 20;
const IPV6_HDR: usize = 40;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_ICMPV6: u8 = 58;
const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_FRAG_NEEDED: u8 = 4;
const ICMPV6_PKT_TOOBIG: u8 = 2;
/// The smallest MTU IPv6 allows (RFC 8200 §5).
const IPV6_MIN_MTU: usize = 1280;
const TTL: u8 = 64;
const NS_PER_SEC: u64 = 1_000_000_000;

/// Answer the client of the frame whose IP header is at `l2` that `mtu`
/// bytes fit: XDP_TX, or a pass (a packet too short to quote) or a drop
/// (over budget). The caller checked DF. Counts its reason. Its own BPF
/// function, like the tunnel's.
#[inline(never)]
pub fn too_big(ctx: &XdpContext, l2: usize, mtu: usize) -> u32 {
    let v6 = crate::parse::is_v6(ctx, l2);
    let (r, action) = match answer(ctx, l2, v6, mtu) {
        Ok(()) => (Reason::TxTooBig, xdp_action::XDP_TX),
        Err(e) => e,
    };
    stats::reason(r);
    action
}

#[inline(always)]
fn answer(ctx: &XdpContext, l2: usize, v6: bool, mtu: usize) -> Result<(), (Reason, u32)> {
    let pass = |r| (r, xdp_action::XDP_PASS);
    let drop = |r| (r, xdp_action::XDP_DROP);
    if ctx.data_end() - ctx.data() < l2 + QUOTE {
        return Err(pass(Reason::PassTooBig));
    }
    if !budget() {
        return Err(drop(Reason::DropTooBigLimited));
    }
    let eth = ptr_at::<EthHdr>(ctx, 0).map_err(pass)?;
    // SAFETY: ptr_at checked the bounds.
    let (client_mac, our_mac) = unsafe { ((*eth).src_addr, (*eth).dst_addr) };
    let tci = forward::vlan_tci(ctx, l2);
    let ip_hdr = if v6 { IPV6_HDR } else { IPV4_HDR };
    let grow = ip_hdr + ICMP_HDR;
    // The client's IP packet already sits where the quote goes once the
    // head grows by the new IP and ICMP headers; the tail is cut to QUOTE.
    // SAFETY: helpers on our own context; pointers are re-derived after.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(grow as i32)) } != 0 {
        return Err(pass(Reason::PassTruncated));
    }
    let want = l2 + grow + QUOTE;
    let have = ctx.data_end() - ctx.data();
    if have < want || unsafe { bpf_xdp_adjust_tail(ctx.ctx, -((have - want) as i32)) } != 0 {
        return Err(drop(Reason::PassTruncated));
    }
    let ether_type = if v6 { ETH_P_IPV6 } else { ETH_P_IP };
    forward::write_l2(ctx, l2, &client_mac, &our_mac, tci, ether_type).map_err(drop)?;
    let quote = l2 + grow;
    let body = (ICMP_HDR + QUOTE) as u16;
    let mut seed = 0u32;
    let mut icmp = [0u8; ICMP_HDR];
    if v6 {
        let q = ptr_at::<Ipv6Hdr>(ctx, quote).map_err(drop)?;
        let h = ptr_mut::<Ipv6Hdr>(ctx, l2).map_err(drop)?;
        // SAFETY: ptr_at/ptr_mut checked the bounds; they do not overlap.
        unsafe {
            (*h).vcf = [0x60, 0, 0, 0];
            (*h).payload_len = body.to_be_bytes();
            (*h).next_hdr = IPPROTO_ICMPV6;
            (*h).hop_limit = TTL;
            (*h).src_addr = (*q).dst_addr;
            (*h).dst_addr = (*q).src_addr;
            // ICMPv6's checksum covers a pseudo-header; ICMPv4's does not.
            // Summed in memory order, as csum_diff sums the packet.
            seed = pseudo_sum(&(*h).src_addr, &(*h).dst_addr)
                + body.to_be() as u32
                + (IPPROTO_ICMPV6 as u16).to_be() as u32;
        }
        icmp[0] = ICMPV6_PKT_TOOBIG;
        icmp[4..8].copy_from_slice(&(mtu.max(IPV6_MIN_MTU) as u32).to_be_bytes());
    } else {
        let q = ptr_at::<Ipv4Hdr>(ctx, quote).map_err(drop)?;
        let h = ptr_mut::<Ipv4Hdr>(ctx, l2).map_err(drop)?;
        // SAFETY: as above.
        unsafe {
            (*h).vihl = 0x45;
            (*h).tos = 0;
            (*h).tot_len = (IPV4_HDR as u16 + body).to_be_bytes();
            (*h).id = [0; 2];
            (*h).frags = [0; 2];
            (*h).ttl = TTL;
            (*h).proto = IPPROTO_ICMP;
            (*h).check = [0; 2];
            (*h).src_addr = (*q).dst_addr;
            (*h).dst_addr = (*q).src_addr;
            (*h).check = ipv4_checksum(&*(h as *const [u8; IPV4_HDR])).to_be_bytes();
        }
        icmp[0] = ICMP_DEST_UNREACH;
        icmp[1] = ICMP_FRAG_NEEDED;
        icmp[6..8].copy_from_slice(&(mtu.min(u16::MAX as usize) as u16).to_be_bytes());
    }
    let at = l2 + ip_hdr;
    ptr_mut::<[u8; ICMP_HDR]>(ctx, at)
        .map(|o| unsafe { *o = icmp })
        .map_err(drop)?;
    let whole = ptr_mut::<[u8; ICMP_HDR + QUOTE]>(ctx, at).map_err(drop)?;
    // SAFETY: `whole` lies inside the frame (checked); csum_diff only reads it.
    let sum = unsafe {
        bpf_csum_diff(
            core::ptr::null_mut(),
            0,
            whole as *mut u32,
            (ICMP_HDR + QUOTE) as u32,
            seed,
        )
    };
    // csum_diff summed memory-order words: the folded sum goes back as is.
    let c = fold(sum as u32);
    ptr_mut::<[u8; 2]>(ctx, at + 2)
        .map(|o| unsafe { *o = c.to_ne_bytes() })
        .map_err(drop)?;
    Ok(())
}

/// The sum of both addresses' 16-bit words in memory order (IPv6
/// pseudo-header part).
#[inline(always)]
fn pseudo_sum(a: &[u8; 16], b: &[u8; 16]) -> u32 {
    let mut sum = 0u32;
    let mut i = 0;
    while i < 16 {
        sum += u16::from_ne_bytes([a[i], a[i + 1]]) as u32;
        sum += u16::from_ne_bytes([b[i], b[i + 1]]) as u32;
        i += 2;
    }
    sum
}

/// Take one answer from this CPU's budget for the current second.
#[inline(always)]
fn budget() -> bool {
    let Some(b) = ICMP_BUDGET.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: per-CPU value; nothing else runs on this CPU meanwhile.
    let b = unsafe { &mut *b };
    let now = unsafe { bpf_ktime_get_ns() };
    if now.wrapping_sub(b.window_start_ns) >= NS_PER_SEC {
        b.window_start_ns = now;
        b.sent = 0;
    }
    if b.sent >= ICMP_TOO_BIG_PER_SEC {
        return false;
    }
    b.sent += 1;
    true
}
