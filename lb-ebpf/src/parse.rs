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

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
/// IPv4 flags+offset: MF bit and the 13-bit fragment offset.
const IP_MF_OFFSET_MASK: u16 = 0x3fff;
/// RFC 9293 §3.1: the data offset counts 32-bit words, 5 (no options) to 15.
const TCP_DOFF_MIN: usize = 5;
/// Byte of the TCP header whose high nibble is the data offset.
const TCP_DOFF_BYTE: usize = 12;

// IPv6 extension headers (RFC 8200 section 4, IANA "IPv6 Extension Header Types").
const IPV6_EXT_HEADERS: [u8; 9] = [0, 43, 44, 50, 51, 60, 135, 139, 140];

pub struct Parsed {
    pub key: FlowKey,
    /// A connection's first packet: TCP SYN without ACK, or any UDP datagram.
    pub opening: bool,
    /// TCP FIN or RST: the client is ending the connection.
    pub closing: bool,
    /// Offset of the IP header (after Ethernet and any VLAN tag).
    pub l3_off: usize,
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

#[inline(always)]
pub fn parse(ctx: &XdpContext) -> Result<Parsed, Reason> {
    let eth: *const EthHdr = ptr_at(ctx, 0)?;
    // SAFETY: ptr_at checked the bounds.
    let mut ether_type = u16::from_be(unsafe { (*eth).ether_type });
    let mut l3_off = EthHdr::LEN;
    if ether_type == ETH_P_8021Q {
        let vlan: *const VlanHdr = ptr_at(ctx, l3_off)?;
        ether_type = u16::from_be(unsafe { (*vlan).ether_type });
        l3_off += VlanHdr::LEN;
    }
    let frame_len = ctx.data_end() - ctx.data();
    let mut key = FlowKey::default();
    // The L4 segment: where it starts and how long the IP header says it is.
    let (proto, l4_off, l4_len) = match ether_type {
        ETH_P_IP => ipv4(ctx, l3_off, frame_len, &mut key)?,
        ETH_P_IPV6 => ipv6(ctx, l3_off, frame_len, &mut key)?,
        _ => return Err(Reason::PassNotIp),
    };
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

/// (protocol, L4 offset, L4 length) of an IPv4 packet at `off`.
#[inline(always)]
fn ipv4(
    ctx: &XdpContext,
    off: usize,
    frame_len: usize,
    key: &mut FlowKey,
) -> Result<(u8, usize, usize), Reason> {
    let ip: *const Ipv4Hdr = ptr_at(ctx, off)?;
    // SAFETY: ptr_at checked the bounds.
    let (vihl, total, frags, proto) = unsafe {
        (
            (*ip).vihl,
            u16::from_be_bytes((*ip).tot_len) as usize,
            u16::from_be_bytes((*ip).frags),
            (*ip).proto,
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
    Ok((proto, off + ihl * 4, total - ihl * 4))
}

/// (next header, L4 offset, L4 length) of an IPv6 packet at `off`.
#[inline(always)]
fn ipv6(
    ctx: &XdpContext,
    off: usize,
    frame_len: usize,
    key: &mut FlowKey,
) -> Result<(u8, usize, usize), Reason> {
    let ip: *const Ipv6Hdr = ptr_at(ctx, off)?;
    // SAFETY: ptr_at checked the bounds.
    let (vcf0, payload, next) = unsafe {
        (
            (*ip).vcf[0],
            u16::from_be_bytes((*ip).payload_len) as usize,
            (*ip).next_hdr,
        )
    };
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
        key.src = (*ip).src_addr;
        key.dst = (*ip).dst_addr;
    }
    key.family = FAMILY_V6;
    Ok((next, off + Ipv6Hdr::LEN, payload))
}
