//! Tunnel forwarding (`forward = "ipip"` / `"gue"`): the next hop to the
//! backend comes from the kernel's FIB, then an outer IPv4 or IPv6 header
//! (inside UDP for GUE) is pushed in front of the untouched inner packet.
//! The FIB is asked before the frame changes, so a miss or a too-big packet
//! still has the client's original bytes to pass or to answer.

use aya_ebpf::{bindings::xdp_action, helpers::bpf_xdp_adjust_head, programs::XdpContext};
use lb_common::{Backend, FAMILY_V6, PROTO_UDP, Reason, TUNNEL_V4, TUNNEL_V6};

use crate::{
    fib, forward, lookup,
    maps::TUNNEL,
    parse::{self, ETH_P_IP, ETH_P_IPV6, IP_DF, ptr_mut},
    stats,
};
use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
    udp::UdpHdr,
    vlan::VlanHdr,
};

/// IPv4 in IP (RFC 2003) and IPv6 in IP (RFC 2473) protocol numbers.
const IPPROTO_IPIP: u8 = 4;
const IPPROTO_IPV6: u8 = 41;
const IPV4_HDR: usize = 20;
const IPV6_HDR: usize = 40;
const UDP_HDR: usize = 8;
/// GUE source ports: the dynamic range, 14 bits of flow hash (RFC 8086 §5.11).
const GUE_SPORT_BASE: u16 = 0xc000;
const GUE_SPORT_MASK: u32 = 0x3fff;
const FLOW_LABEL_MASK: u32 = 0x000f_ffff;

const PASS: u32 = xdp_action::XDP_PASS;
const DROP: u32 = xdp_action::XDP_DROP;

/// What `forward` did: an XDP action, or "too big" with the MTU the
/// client must be told (the caller answers, from its own BPF function).
pub enum Sent {
    Action(u32),
    TooBig(usize),
}

/// `forward`'s result in one register: the action, or the MTU above it.
pub const TOO_BIG: u64 = 1 << 63;

impl Sent {
    #[inline(always)]
    pub fn from_raw(v: u64) -> Sent {
        if v & TOO_BIG != 0 {
            Sent::TooBig((v & 0xffff) as usize)
        } else {
            Sent::Action(v as u32)
        }
    }
}

/// The L3 offset behind an 802.1Q tag.
pub const L3_VLAN: usize = EthHdr::LEN + VlanHdr::LEN;

/// `Job::kind`: what runs after `decide`.
pub const JOB_TUNNEL: u8 = 0;
/// NAT or full-NAT toward the backend (`hash` carries `FlowValue::nat`).
pub const JOB_NAT: u8 = 1;
pub const JOB_FULLNAT: u8 = 2;
/// Perhaps a backend's reply to a NAT connection.
pub const JOB_NAT_REPLY: u8 = 3;
/// Perhaps an ICMP error about a NAT connection.
pub const JOB_NAT_ICMP: u8 = 4;

/// Work decided on (a tunnel or NAT forward, or a lookup the decision
/// could not afford on its stack): what the next function needs, in one
/// register.
#[derive(Clone, Copy)]
pub struct Job {
    pub backend: u32,
    /// The flow's 5-tuple hash (outer source bits, GUE port, flow label);
    /// for NAT jobs, the flow's `nat`.
    pub hash: u32,
    /// Offset of the IP header: 14, or 18 behind an 802.1Q tag.
    pub l3_off: usize,
    pub gue: bool,
    /// A health check's packet: the backend need not be healthy.
    pub check: bool,
    pub kind: u8,
}

const JOB: u64 = 1 << 63;
const JOB_GUE: u64 = 1 << 62;
const JOB_VLAN: u64 = 1 << 61;
const JOB_CHECK: u64 = 1 << 60;
const JOB_KIND_SHIFT: u32 = 57;
const JOB_KIND_MASK: u64 = 0b111;
const JOB_ID_SHIFT: u32 = 32;
const JOB_ID_MASK: u64 = (1 << 24) - 1;
// Every backend id fits the job's 24 bits.
const _: () = assert!(lb_common::names::MAX_BACKENDS as u64 <= JOB_ID_MASK + 1);

impl Job {
    #[inline(always)]
    pub fn pack(self) -> u64 {
        let mut v = JOB | ((self.backend as u64 & JOB_ID_MASK) << JOB_ID_SHIFT) | self.hash as u64;
        if self.gue {
            v |= JOB_GUE;
        }
        if self.l3_off != EthHdr::LEN {
            v |= JOB_VLAN;
        }
        if self.check {
            v |= JOB_CHECK;
        }
        v | (self.kind as u64 & JOB_KIND_MASK) << JOB_KIND_SHIFT
    }

    /// A job with nothing but its kind and the L3 offset.
    #[inline(always)]
    pub fn lookup(kind: u8, l3_off: usize) -> u64 {
        Job {
            backend: 0,
            hash: 0,
            l3_off,
            gue: false,
            check: false,
            kind,
        }
        .pack()
    }

    /// The kind of a packed job.
    #[inline(always)]
    pub fn kind_of(v: u64) -> u8 {
        ((v >> JOB_KIND_SHIFT) & JOB_KIND_MASK) as u8
    }

    /// A packed job, not an XDP action (those fit in 32 bits).
    #[inline(always)]
    pub fn is_job(v: u64) -> bool {
        v & JOB != 0
    }

    #[inline(always)]
    pub fn unpack(v: u64) -> Job {
        Job {
            backend: ((v >> JOB_ID_SHIFT) & JOB_ID_MASK) as u32,
            hash: v as u32,
            l3_off: if v & JOB_VLAN != 0 {
                EthHdr::LEN + VlanHdr::LEN
            } else {
                EthHdr::LEN
            },
            gue: v & JOB_GUE != 0,
            check: v & JOB_CHECK != 0,
            kind: Self::kind_of(v),
        }
    }
}

/// Encapsulate the frame toward the packed `Job`'s backend and send it
/// where the FIB says; the verdict's reason is counted here. Read the
/// result with `Sent::from_raw`. Its own BPF function: the caller's stack
/// is not held meanwhile.
#[inline(never)]
pub fn forward(ctx: &XdpContext, job: u64) -> u64 {
    let job = Job::unpack(job);
    let b = if job.check {
        lookup::reachable(job.backend)
    } else {
        lookup::backend(job.backend)
    };
    let Some(b) = b else {
        stats::reason(Reason::DropNoBackend);
        return xdp_action::XDP_DROP as u64;
    };
    match encap(ctx, job.l3_off, job.hash, job.gue, b) {
        Ok(action) => {
            stats::reason(Reason::Encapsulated);
            action as u64
        }
        Err((Reason::TxTooBig, mtu)) => TOO_BIG | mtu as u64,
        Err((r, action)) => {
            stats::reason(r);
            action as u64
        }
    }
}

#[inline(always)]
fn encap(
    ctx: &XdpContext,
    l2: usize,
    hash: u32,
    gue: bool,
    b: &Backend,
) -> Result<u32, (Reason, u32)> {
    let ip = parse::facts(ctx, l2).map_err(|r| (r, PASS))?;
    let t = TUNNEL.get(0).ok_or((Reason::DropNoRoute, DROP))?;
    let outer6 = b.family == FAMILY_V6;
    let inner6 = parse::is_v6(ctx, l2);
    let ip_hdr = if outer6 { IPV6_HDR } else { IPV4_HDR };
    let overhead = ip_hdr + if gue { UDP_HDR } else { 0 };
    let outer_len = ip.len + overhead;

    // The outer source: configured, its hashed bits from the flow.
    let mut src = [0u8; 16];
    if outer6 {
        if t.flags & TUNNEL_V6 == 0 {
            return Err((Reason::DropNoRoute, DROP));
        }
        src = t.src6;
        let low = u32::from_be_bytes([src[12], src[13], src[14], src[15]]);
        let low = (low & !t.hash_mask6) | (hash & t.hash_mask6);
        src[12..16].copy_from_slice(&low.to_be_bytes());
    } else {
        if t.flags & TUNNEL_V4 == 0 {
            return Err((Reason::DropNoRoute, DROP));
        }
        let s = u32::from_be_bytes(t.src4);
        let s = (s & !t.hash_mask4) | (hash & t.hash_mask4);
        src[..4].copy_from_slice(&s.to_be_bytes());
    }
    let proto = if gue {
        PROTO_UDP
    } else if inner6 {
        IPPROTO_IPV6
    } else {
        IPPROTO_IPIP
    };

    let fib = match fib::lookup(ctx, outer6, &src, &b.addr, proto, outer_len) {
        Ok(f) => f,
        Err(fib::Miss::TooBig(mtu)) => {
            if !ip.df {
                return Err((Reason::PassTooBig, PASS));
            }
            // Not an answer yet: the caller sends it (see `Sent`).
            return Err((Reason::TxTooBig, mtu.saturating_sub(overhead) as u32));
        }
        Err(m) => return Err((m.reason(), PASS)),
    };

    let tci = forward::vlan_tci(ctx, l2);
    // SAFETY: a helper on our own context; every pointer is re-derived after.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(overhead as i32)) } != 0 {
        return Err((Reason::PassTruncated, PASS));
    }
    let ether_type = if outer6 { ETH_P_IPV6 } else { ETH_P_IP };
    forward::write_l2(ctx, l2, &fib.dmac, &fib.smac, tci, ether_type).map_err(|r| (r, DROP))?;
    let inner_proto_len = ip.len + if gue { UDP_HDR } else { 0 };
    let tos = ip.tos;
    let bad = |r| (r, DROP);
    if outer6 {
        let h = ptr_mut::<Ipv6Hdr>(ctx, l2).map_err(bad)?;
        let vcf = (6u32 << 28) | ((tos as u32) << 20) | (hash & FLOW_LABEL_MASK);
        // SAFETY: ptr_mut checked the bounds.
        unsafe {
            (*h).vcf = vcf.to_be_bytes();
            (*h).payload_len = (inner_proto_len as u16).to_be_bytes();
            (*h).next_hdr = proto;
            (*h).hop_limit = ip.ttl;
            (*h).src_addr = src;
            (*h).dst_addr = b.addr;
        }
    } else {
        let h = ptr_mut::<Ipv4Hdr>(ctx, l2).map_err(bad)?;
        // SAFETY: ptr_mut checked the bounds.
        unsafe {
            (*h).vihl = 0x45;
            (*h).tos = tos;
            (*h).tot_len = (outer_len as u16).to_be_bytes();
            (*h).id = [0; 2];
            // RFC 2003 §3.1: DF copied from the inner header.
            (*h).frags = if ip.df { IP_DF } else { 0 }.to_be_bytes();
            (*h).ttl = ip.ttl;
            (*h).proto = proto;
            (*h).check = [0; 2];
            (*h).src_addr = [src[0], src[1], src[2], src[3]];
            (*h).dst_addr = [b.addr[0], b.addr[1], b.addr[2], b.addr[3]];
            (*h).check = ipv4_checksum(&*(h as *const [u8; IPV4_HDR])).to_be_bytes();
        }
    }
    if gue {
        let u = ptr_mut::<UdpHdr>(ctx, l2 + ip_hdr).map_err(bad)?;
        let sport = GUE_SPORT_BASE | (hash & GUE_SPORT_MASK) as u16;
        // SAFETY: ptr_mut checked the bounds.
        unsafe {
            (*u).src = sport.to_be_bytes();
            (*u).dst = t.gue_port.to_be_bytes();
            (*u).len = (inner_proto_len as u16).to_be_bytes();
            // 0: allowed over IPv4 and, for tunnels, over IPv6 (RFC 6935);
            // the inner packet carries its own checksum.
            (*u).check = [0; 2];
        }
    }
    Ok(forward::out(ctx, fib.ifindex))
}

/// The IPv4 header checksum of a 20-byte header whose checksum field is 0.
#[inline(always)]
pub fn ipv4_checksum(h: &[u8; IPV4_HDR]) -> u16 {
    let mut sum = 0u32;
    let mut i = 0;
    while i < IPV4_HDR {
        sum += u16::from_be_bytes([h[i], h[i + 1]]) as u32;
        i += 2;
    }
    fold(sum)
}

/// One's-complement fold of a 32-bit sum, complemented: a checksum field.
#[inline(always)]
pub fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}
