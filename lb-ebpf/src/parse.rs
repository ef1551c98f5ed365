//! Packet parsing shared by every program: Ethernet (one 802.1Q tag), IPv4
//! (any IHL) or IPv6 (fixed header), then the TCP/UDP ports. Every read is
//! bounds-checked against `data_end` first, and every length field against
//! the headers it must hold and the frame (IPv4 total length, IPv6 payload
//! length, TCP data offset, UDP length; trailing padding is fine). Anything
//! odd is an `Err(reason)` and the caller passes the frame untouched.

use core::mem::size_of;

use aya_ebpf::programs::XdpContext;
use lb_common::{FAMILY_V4, FAMILY_V6, FlowKey, PROTO_TCP, PROTO_UDP, Reason};
use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
    tcp::TcpHdr,
    udp::UdpHdr,
    vlan::VlanHdr,
};

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_8021Q: u16 = 0x8100;
/// IPv4 flags+offset: MF bit and the 13-bit fragment offset.
const IP_MF_OFFSET_MASK: u16 = 0x3fff;
/// IPv4 flags+offset: don't fragment.
pub const IP_DF: u16 = 0x4000;
/// RFC 9293 §3.1: the data offset counts 32-bit words, 5 (no options) to 15.
const TCP_DOFF_MIN: usize = 5;
/// Byte of the TCP header whose high nibble is the data offset.
const TCP_DOFF_BYTE: usize = 12;

// IPv6 extension headers (RFC 8200 section 4, IANA "IPv6 Extension Header Types").
const IPV6_EXT_HEADERS: [u8; 9] = [0, 43, 44, 50, 51, 60, 135, 139, 140];

/// An IP header's facts the forwarders need.
#[derive(Clone, Copy)]
pub struct Ip {
    /// Protocol / next header.
    pub proto: u8,
    /// Offset and length of what follows the IP header(s).
    pub l4_off: usize,
    pub l4_len: usize,
    /// The whole IP packet's length (headers included).
    pub len: usize,
    /// IPv4 TOS / IPv6 traffic class (DSCP and ECN).
    pub tos: u8,
    /// TTL / hop limit.
    pub ttl: u8,
    /// IPv4 DF; IPv6 is never fragmented on the way.
    pub df: bool,
}

pub struct Parsed {
    pub key: FlowKey,
    /// A connection's first packet: TCP SYN without ACK, or any UDP datagram.
    pub opening: bool,
    /// TCP FIN or RST: the client is ending the connection.
    pub closing: bool,
    /// Offset of the IP header (after Ethernet and any VLAN tag).
    pub l3_off: usize,
}

/// Copy 16 bytes (an IPv6 address) as four 32-bit loads and stores: a
/// `[u8; 16]` assignment from packet memory compiles to a call of a
/// byte-by-byte memmove on BPF.
#[inline(always)]
pub fn copy16(dst: *mut [u8; 16], src: *const [u8; 16]) {
    let (s, d) = (src as *const u32, dst as *mut u32);
    // SAFETY: both are 16 bytes; unaligned accesses are allowed.
    unsafe {
        for i in 0..4 {
            d.add(i).write_unaligned(s.add(i).read_unaligned());
        }
    }
}

/// A `*const T` at `off`, if all of it lies inside the frame.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, off: usize) -> Result<*const T, Reason> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + off + size_of::<T>() > end {
        return Err(Reason::PassTruncated);
    }
    Ok((start + off) as *const T)
}

/// The IP header facts of an already parsed frame, read again where a
/// forwarder needs them (passing them along would cost the caller stack).
#[inline(always)]
pub fn facts(ctx: &XdpContext, l3_off: usize) -> Result<Ip, Reason> {
    // SAFETY (below): ptr_at checked the bounds of each header read.
    if is_v6(ctx, l3_off) {
        let ip: *const Ipv6Hdr = ptr_at(ctx, l3_off)?;
        let (vcf, payload, hop) = unsafe {
            (
                (*ip).vcf,
                u16::from_be_bytes((*ip).payload_len) as usize,
                (*ip).hop_limit,
            )
        };
        return Ok(Ip {
            proto: 0,
            l4_off: 0,
            l4_len: payload,
            len: Ipv6Hdr::LEN + payload,
            tos: (vcf[0] << 4) | (vcf[1] >> 4),
            ttl: hop,
            df: true,
        });
    }
    let ip: *const Ipv4Hdr = ptr_at(ctx, l3_off)?;
    let (total, frags, tos, ttl) = unsafe {
        (
            u16::from_be_bytes((*ip).tot_len) as usize,
            u16::from_be_bytes((*ip).frags),
            (*ip).tos,
            (*ip).ttl,
        )
    };
    Ok(Ip {
        proto: 0,
        l4_off: 0,
        l4_len: 0,
        len: total,
        tos,
        ttl,
        df: frags & IP_DF != 0,
    })
}

/// Whether the IP header at `l3_off` is IPv6 (by its version nibble).
#[inline(always)]
pub fn is_v6(ctx: &XdpContext, l3_off: usize) -> bool {
    // SAFETY: ptr_at checked the bounds.
    ptr_at::<u8>(ctx, l3_off).is_ok_and(|b| unsafe { *b } >> 4 == 6)
}

/// A `*mut T` at `off`, if all of it lies inside the frame (XDP frames
/// are writable).
#[inline(always)]
pub fn ptr_mut<T>(ctx: &XdpContext, off: usize) -> Result<*mut T, Reason> {
    ptr_at::<T>(ctx, off).map(|p| p as *mut T)
}

/// (EtherType, offset of the L3 header): Ethernet and one 802.1Q tag.
#[inline(always)]
pub fn l2(ctx: &XdpContext) -> Result<(u16, usize), Reason> {
    let eth: *const EthHdr = ptr_at(ctx, 0)?;
    // SAFETY: ptr_at checked the bounds.
    let ether_type = u16::from_be(unsafe { (*eth).ether_type });
    if ether_type == ETH_P_8021Q {
        let vlan: *const VlanHdr = ptr_at(ctx, EthHdr::LEN)?;
        // SAFETY: as above.
        let inner = u16::from_be(unsafe { (*vlan).ether_type });
        return Ok((inner, EthHdr::LEN + VlanHdr::LEN));
    }
    Ok((ether_type, EthHdr::LEN))
}

#[inline(always)]
pub fn parse(ctx: &XdpContext) -> Result<Parsed, Reason> {
    let (ether_type, l3_off) = l2(ctx)?;
    let frame_len = ctx.data_end() - ctx.data();
    let mut key = FlowKey::default();
    // The L4 segment: where it starts and how long the IP header says it is.
    let ip = match ether_type {
        ETH_P_IP => ipv4(ctx, l3_off, frame_len, &mut key)?,
        ETH_P_IPV6 => ipv6(ctx, l3_off, frame_len, &mut key)?,
        _ => return Err(Reason::PassNotIp),
    };
    let (proto, l4_off, l4_len) = (ip.proto, ip.l4_off, ip.l4_len);
    key.proto = proto;
    let (opening, closing) = match proto {
        PROTO_TCP => {
            if l4_len < TcpHdr::LEN {
                return Err(Reason::PassMalformed);
            }
            let tcp: *const TcpHdr = ptr_at(ctx, l4_off)?;
            // SAFETY: ptr_at checked the bounds of the whole header.
            let doff = (unsafe { *(tcp as *const u8).add(TCP_DOFF_BYTE) } >> 4) as usize;
            if doff < TCP_DOFF_MIN || doff * 4 > l4_len {
                return Err(Reason::PassMalformed);
            }
            unsafe {
                key.sport = u16::from_be_bytes((*tcp).source);
                key.dport = u16::from_be_bytes((*tcp).dest);
                (
                    (*tcp).syn() != 0 && (*tcp).ack() == 0,
                    (*tcp).fin() != 0 || (*tcp).rst() != 0,
                )
            }
        }
        PROTO_UDP => {
            if l4_len < UdpHdr::LEN {
                return Err(Reason::PassMalformed);
            }
            let udp: *const UdpHdr = ptr_at(ctx, l4_off)?;
            // SAFETY: ptr_at checked the bounds.
            let ulen = u16::from_be_bytes(unsafe { (*udp).len }) as usize;
            if ulen < UdpHdr::LEN || ulen > l4_len {
                return Err(Reason::PassMalformed);
            }
            unsafe {
                key.sport = u16::from_be_bytes((*udp).src);
                key.dport = u16::from_be_bytes((*udp).dst);
            }
            (true, false)
        }
        _ => return Err(Reason::PassUnknownL4),
    };
    Ok(Parsed {
        key,
        opening,
        closing,
        l3_off,
    })
}

/// The IPv4 packet at `off`, which must end by `frame_len`; its addresses
/// go into `key`.
#[inline(always)]
pub fn ipv4(
    ctx: &XdpContext,
    off: usize,
    frame_len: usize,
    key: &mut FlowKey,
) -> Result<Ip, Reason> {
    let ip: *const Ipv4Hdr = ptr_at(ctx, off)?;
    // SAFETY: ptr_at checked the bounds.
    let (vihl, total, frags, proto, tos, ttl) = unsafe {
        (
            (*ip).vihl,
            u16::from_be_bytes((*ip).tot_len) as usize,
            u16::from_be_bytes((*ip).frags),
            (*ip).proto,
            (*ip).tos,
            (*ip).ttl,
        )
    };
    let ihl = (vihl & 0x0f) as usize;
    if vihl >> 4 != 4 || ihl < 5 || total < ihl * 4 {
        return Err(Reason::PassMalformed);
    }
    if off + total > frame_len {
        return Err(Reason::PassTruncated);
    }
    if frags & IP_MF_OFFSET_MASK != 0 {
        return Err(Reason::PassFragment);
    }
    unsafe {
        key.src[..4].copy_from_slice(&(*ip).src_addr);
        key.dst[..4].copy_from_slice(&(*ip).dst_addr);
    }
    key.family = FAMILY_V4;
    // ihl <= 15, so the L4 offset stays bounded for the verifier.
    Ok(Ip {
        proto,
        l4_off: off + ihl * 4,
        l4_len: total - ihl * 4,
        len: total,
        tos,
        ttl,
        df: frags & IP_DF != 0,
    })
}

/// The IPv6 packet at `off` (fixed header only), as `ipv4`.
#[inline(always)]
pub fn ipv6(
    ctx: &XdpContext,
    off: usize,
    frame_len: usize,
    key: &mut FlowKey,
) -> Result<Ip, Reason> {
    let ip: *const Ipv6Hdr = ptr_at(ctx, off)?;
    // SAFETY: ptr_at checked the bounds.
    let (vcf, payload, next, hop) = unsafe {
        (
            (*ip).vcf,
            u16::from_be_bytes((*ip).payload_len) as usize,
            (*ip).next_hdr,
            (*ip).hop_limit,
        )
    };
    let vcf0 = vcf[0];
    if vcf0 >> 4 != 6 {
        return Err(Reason::PassMalformed);
    }
    if off + Ipv6Hdr::LEN + payload > frame_len {
        return Err(Reason::PassTruncated);
    }
    if IPV6_EXT_HEADERS.contains(&next) {
        return Err(Reason::PassIpv6Ext);
    }
    unsafe {
        copy16(&mut key.src, &(*ip).src_addr);
        copy16(&mut key.dst, &(*ip).dst_addr);
    }
    key.family = FAMILY_V6;
    Ok(Ip {
        proto: next,
        l4_off: off + Ipv6Hdr::LEN,
        l4_len: payload,
        len: Ipv6Hdr::LEN + payload,
        tos: (vcf[0] << 4) | (vcf[1] >> 4),
        ttl: hop,
        df: true,
    })
}
