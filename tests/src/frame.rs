//! Ethernet frames built byte by byte, for table tests and benchmarks.

use std::net::IpAddr;

pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub const LB_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x05];

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMP: u8 = 1;
pub const SYN: u8 = 0x02;
pub const ACK: u8 = 0x10;

/// One frame's fields; `build()` lays them out.
#[derive(Clone, Debug)]
pub struct Frame {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub tcp_flags: u8,
    pub vlan: Option<u16>,
    /// IPv4 options words (IHL = 5 + this).
    pub ip_option_words: u8,
    /// IPv4 flags+fragment offset field.
    pub frag: u16,
    /// IPv6: an extension header (next header value) before L4.
    pub ipv6_ext: Option<u8>,
    pub payload: Vec<u8>,
    /// IPv4 TOS / IPv6 traffic class.
    pub tos: u8,
    /// TTL / hop limit.
    pub ttl: u8,
    /// Fill in the TCP/UDP checksum (left 0 otherwise).
    pub l4_check: bool,
}

impl Frame {
    pub fn tcp(src: &str, sport: u16, dst: &str, dport: u16) -> Self {
        Self {
            src: src.parse().expect("address"),
            dst: dst.parse().expect("address"),
            sport,
            dport,
            proto: TCP,
            tcp_flags: SYN,
            vlan: None,
            ip_option_words: 0,
            frag: 0x4000, // DF
            ipv6_ext: None,
            payload: Vec::new(),
            tos: 0,
            ttl: 64,
            l4_check: false,
        }
    }

    pub fn udp(src: &str, sport: u16, dst: &str, dport: u16) -> Self {
        Self {
            proto: UDP,
            payload: b"hello".to_vec(),
            ..Self::tcp(src, sport, dst, dport)
        }
    }

    pub fn build(&self) -> Vec<u8> {
        let mut f = Vec::with_capacity(128);
        f.extend_from_slice(&LB_MAC);
        f.extend_from_slice(&CLIENT_MAC);
        let ethertype: u16 = if self.dst.is_ipv4() { 0x0800 } else { 0x86dd };
        if let Some(vid) = self.vlan {
            f.extend_from_slice(&0x8100u16.to_be_bytes());
            f.extend_from_slice(&vid.to_be_bytes());
        }
        f.extend_from_slice(&ethertype.to_be_bytes());
        let l4 = self.l4();
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let ihl = 5 + self.ip_option_words;
                let total = ihl as usize * 4 + l4.len();
                let start = f.len();
                f.push(0x40 | ihl);
                f.push(self.tos);
                f.extend_from_slice(&(total as u16).to_be_bytes());
                f.extend_from_slice(&[0x12, 0x34]);
                f.extend_from_slice(&self.frag.to_be_bytes());
                f.push(self.ttl);
                f.push(self.proto);
                f.extend_from_slice(&[0, 0]);
                f.extend_from_slice(&s.octets());
                f.extend_from_slice(&d.octets());
                // Options: NOPs, then end-of-list.
                for i in 0..self.ip_option_words as usize * 4 {
                    f.push(if i + 1 == self.ip_option_words as usize * 4 {
                        0
                    } else {
                        1
                    });
                }
                let sum = checksum(&f[start..], 0);
                f[start + 10..start + 12].copy_from_slice(&sum.to_be_bytes());
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let ext_len = if self.ipv6_ext.is_some() { 8 } else { 0 };
                f.extend_from_slice(&[0x60 | self.tos >> 4, (self.tos & 0x0f) << 4, 0, 0]);
                f.extend_from_slice(&((l4.len() + ext_len) as u16).to_be_bytes());
                f.push(self.ipv6_ext.unwrap_or(self.proto));
                f.push(self.ttl);
                f.extend_from_slice(&s.octets());
                f.extend_from_slice(&d.octets());
                if self.ipv6_ext.is_some() {
                    f.extend_from_slice(&[self.proto, 0, 1, 4, 0, 0, 0, 0]);
                }
            }
            _ => panic!("source and destination of different families"),
        }
        let at = f.len();
        f.extend_from_slice(&l4);
        if self.l4_check && matches!(self.proto, TCP | UDP) {
            let c = l4_checksum(self.src, self.dst, self.proto, &f[at..]);
            let off = at + if self.proto == TCP { 16 } else { 6 };
            f[off..off + 2].copy_from_slice(&c.to_be_bytes());
        }
        f
    }

    fn l4(&self) -> Vec<u8> {
        let mut l = Vec::new();
        l.extend_from_slice(&self.sport.to_be_bytes());
        l.extend_from_slice(&self.dport.to_be_bytes());
        match self.proto {
            TCP => {
                l.extend_from_slice(&1u32.to_be_bytes());
                l.extend_from_slice(&0u32.to_be_bytes());
                l.push(0x50);
                l.push(self.tcp_flags);
                l.extend_from_slice(&[0xfa, 0xf0, 0, 0, 0, 0]);
            }
            UDP => {
                l.extend_from_slice(&((8 + self.payload.len()) as u16).to_be_bytes());
                l.extend_from_slice(&[0, 0]);
            }
            _ => l.extend_from_slice(&[8, 0, 0, 0]),
        }
        l.extend_from_slice(&self.payload);
        l
    }
}

/// An ARP request frame (not IP).
pub fn arp_request() -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&CLIENT_MAC);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&CLIENT_MAC);
    f.extend_from_slice(&[198, 51, 100, 2, 0, 0, 0, 0, 0, 0, 203, 0, 113, 10]);
    f
}

/// A TCP, UDP or ICMPv6 checksum over `seg` (its checksum field 0) with
/// the pseudo-header of `src`, `dst`; a UDP result of 0 is sent as 0xffff.
pub fn l4_checksum(src: IpAddr, dst: IpAddr, proto: u8, seg: &[u8]) -> u16 {
    let mut pseudo = Vec::new();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&[0, proto]);
            pseudo.extend_from_slice(&(seg.len() as u16).to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&(seg.len() as u32).to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, proto]);
        }
        _ => panic!("mixed families"),
    }
    pseudo.extend_from_slice(seg);
    match checksum(&pseudo, 0) {
        0 if proto == UDP => 0xffff,
        c => c,
    }
}

/// The RFC 1071 Internet checksum.
pub fn checksum(data: &[u8], initial: u32) -> u16 {
    let mut sum = initial;
    for c in data.chunks(2) {
        sum += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An Ethernet frame carrying ICMP (IPv4) or ICMPv6 message `msg` (its
/// checksum field 0) from `src` to `dst`, TTL 64, checksums computed here.
pub fn icmp_frame(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: IpAddr,
    dst: IpAddr,
    mut msg: Vec<u8>,
) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let c = checksum(&msg, 0);
            msg[2..4].copy_from_slice(&c.to_be_bytes());
            f.extend_from_slice(&[0x08, 0x00]);
            let mut ip = vec![0x45, 0];
            ip.extend_from_slice(&((20 + msg.len()) as u16).to_be_bytes());
            ip.extend_from_slice(&[0, 0, 0, 0, 64, 1, 0, 0]);
            ip.extend_from_slice(&s.octets());
            ip.extend_from_slice(&d.octets());
            let c = checksum(&ip, 0);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            f.extend_from_slice(&ip);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let c = l4_checksum(src, dst, 58, &msg);
            msg[2..4].copy_from_slice(&c.to_be_bytes());
            f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
            f.extend_from_slice(&(msg.len() as u16).to_be_bytes());
            f.extend_from_slice(&[58, 64]);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
        }
        _ => panic!("mixed families"),
    }
    f.extend_from_slice(&msg);
    f
}

/// The outer headers a balancer puts in front of a frame's IP packet.
pub struct Outer {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// GUE's (source, destination) ports; None for plain IP-in-IP.
    pub gue: Option<(u16, u16)>,
    /// IPv6 outer headers' flow label.
    pub flow_label: u32,
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
}

/// `input` (an Ethernet frame, 802.1Q or not) with `o`'s outer headers
/// between its L2 header and its IP packet: TOS/DSCP, TTL and DF carried
/// over from the inner header, checksums computed here.
pub fn encapsulate(input: &[u8], o: &Outer) -> Vec<u8> {
    let l3 = if input[12..14] == [0x81, 0x00] {
        18
    } else {
        14
    };
    let inner = &input[l3..];
    let v4_inner = inner[0] >> 4 == 4;
    let (tos, ttl, df) = if v4_inner {
        (inner[1], inner[8], inner[6] & 0x40 != 0)
    } else {
        ((inner[0] << 4) | (inner[1] >> 4), inner[7], true)
    };
    let mut payload = Vec::new();
    if let Some((sport, dport)) = o.gue {
        payload.extend_from_slice(&sport.to_be_bytes());
        payload.extend_from_slice(&dport.to_be_bytes());
        payload.extend_from_slice(&((8 + inner.len()) as u16).to_be_bytes());
        payload.extend_from_slice(&[0, 0]);
    }
    payload.extend_from_slice(inner);
    let proto = match (o.gue.is_some(), v4_inner) {
        (true, _) => UDP,
        (false, true) => 4,
        (false, false) => 41,
    };
    let mut out = Vec::new();
    out.extend_from_slice(&o.dst_mac);
    out.extend_from_slice(&o.src_mac);
    if l3 == 18 {
        out.extend_from_slice(&input[12..16]);
    }
    match (o.src, o.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.extend_from_slice(&[0x08, 0x00]);
            let mut h = vec![0x45, tos];
            h.extend_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
            h.extend_from_slice(&[0, 0, if df { 0x40 } else { 0 }, 0, ttl, proto, 0, 0]);
            h.extend_from_slice(&s.octets());
            h.extend_from_slice(&d.octets());
            let c = checksum(&h, 0);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            out.extend_from_slice(&h);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            out.extend_from_slice(&[0x86, 0xdd]);
            let vcf = (6u32 << 28) | ((tos as u32) << 20) | (o.flow_label & 0xfffff);
            out.extend_from_slice(&vcf.to_be_bytes());
            out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
            out.extend_from_slice(&[proto, ttl]);
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        _ => panic!("outer source and destination of different families"),
    }
    out.extend_from_slice(&payload);
    out
}
