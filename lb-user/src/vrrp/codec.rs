//! VRRP advertisements on the wire: VRRPv3 (RFC 5798) for IPv4 and IPv6,
//! VRRPv2 (RFC 3768) for IPv4. Decoding validates everything RFC 5798
//! §7.1 / RFC 3768 §7.1 ask of a receiver except the IP-level checks the
//! caller does (TTL/hop limit, which it passes in); a rejected packet
//! names its reason and never reaches the state machine.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use lb_common::{VrrpStatus, vrrp::VRRP_DROP_REASONS};

pub const PROTO_VRRP: u8 = 112;
pub const MCAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
pub const MCAST_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// The only type defined: ADVERTISEMENT.
const TYPE_ADVERT: u8 = 1;
const V2_AUTH_LEN: usize = 8;

pub use crate::config::Version;

/// VRRPv2 authentication (RFC 3768 §5.3.6; type 2, AH, is not supported).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    None,
    /// Simple text password, up to 8 bytes, zero-padded on the wire.
    Pass([u8; V2_AUTH_LEN]),
}

impl Auth {
    pub fn pass(text: &str) -> Auth {
        let mut p = [0u8; V2_AUTH_LEN];
        let n = text.len().min(V2_AUTH_LEN);
        p[..n].copy_from_slice(&text.as_bytes()[..n]);
        Auth::Pass(p)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    pub version: Version,
    pub vrid: u8,
    pub priority: u8,
    /// Advertisement interval in centiseconds (v2 carries whole seconds).
    pub interval_cs: u16,
    pub addrs: Vec<IpAddr>,
}

/// What a receiver checks beyond the packet itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    pub version: Version,
    pub vrid: u8,
    pub auth: Auth,
    /// VRRPv3 over IPv4 without the pseudo-header (RFC 9568, Cisco);
    /// keepalived's `v3_checksum_as_v2`.
    pub v3_checksum_as_v2: bool,
}

/// Why a packet was dropped; counted per reason in `lb show vrrp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// IPv4 TTL or IPv6 hop limit not 255: it crossed a router.
    Ttl,
    Truncated,
    Version,
    Type,
    Vrid,
    Checksum,
    /// Address count disagrees with the length, or no address.
    AddrCount,
    AuthType,
    AuthMismatch,
    /// Advertisement interval of 0.
    Interval,
    /// Another family's addresses, or a malformed IP header.
    Family,
}

impl DropReason {
    pub const ALL: [DropReason; 11] = [
        DropReason::Ttl,
        DropReason::Truncated,
        DropReason::Version,
        DropReason::Type,
        DropReason::Vrid,
        DropReason::Checksum,
        DropReason::AddrCount,
        DropReason::AuthType,
        DropReason::AuthMismatch,
        DropReason::Interval,
        DropReason::Family,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DropReason::Ttl => "ttl",
            DropReason::Truncated => "truncated",
            DropReason::Version => "version",
            DropReason::Type => "type",
            DropReason::Vrid => "vrid",
            DropReason::Checksum => "checksum",
            DropReason::AddrCount => "addr_count",
            DropReason::AuthType => "auth_type",
            DropReason::AuthMismatch => "auth_mismatch",
            DropReason::Interval => "interval",
            DropReason::Family => "family",
        }
    }
}

/// `VrrpStatus::drops` slot of a reason; the last slot counts packets that
/// were not even IP (`malformed`).
pub fn drop_index(r: DropReason) -> usize {
    DropReason::ALL.iter().position(|x| *x == r).unwrap_or(0)
}

/// Slot for packets that were not even IP.
pub const DROP_MALFORMED: usize = DropReason::ALL.len();
const _: () = assert!(VRRP_DROP_REASONS == DROP_MALFORMED + 1);

/// Drop counters by name, for `lb show vrrp`.
pub fn drops_by_name(s: &VrrpStatus) -> BTreeMap<&'static str, u32> {
    DropReason::ALL
        .iter()
        .map(|r| (r.name(), s.drops[drop_index(*r)]))
        .chain(std::iter::once(("malformed", s.drops[DROP_MALFORMED])))
        .collect()
}

/// The Internet checksum (RFC 1071) over `parts`, concatenated.
pub fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut odd: Option<u8> = None;
    for part in parts {
        for &b in part.iter() {
            match odd.take() {
                Some(hi) => sum += u16::from_be_bytes([hi, b]) as u32,
                None => odd = Some(b),
            }
        }
    }
    if let Some(hi) = odd {
        sum += u16::from_be_bytes([hi, 0]) as u32;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The pseudo-header a v3 checksum covers (RFC 5798 §5.2.8; RFC 8200 §8.1
/// for IPv6), or nothing.
fn pseudo(src: IpAddr, dst: IpAddr, len: usize, version: Version, as_v2: bool) -> Vec<u8> {
    match (version, src, dst) {
        (Version::V2, ..) => Vec::new(),
        (Version::V3, IpAddr::V4(_), _) if as_v2 => Vec::new(),
        (Version::V3, IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut p = Vec::with_capacity(12);
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&[0, PROTO_VRRP]);
            p.extend_from_slice(&(len as u16).to_be_bytes());
            p
        }
        (Version::V3, s, d) => {
            let v6 = |a: IpAddr| match a {
                IpAddr::V6(a) => a.octets(),
                IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            };
            let mut p = Vec::with_capacity(40);
            p.extend_from_slice(&v6(s));
            p.extend_from_slice(&v6(d));
            p.extend_from_slice(&(len as u32).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, PROTO_VRRP]);
            p
        }
    }
}

/// The VRRP message (no IP header) for `a`, sent from `src` to `dst`.
pub fn encode(a: &Advert, auth: &Auth, src: IpAddr, dst: IpAddr, v3_as_v2: bool) -> Vec<u8> {
    let mut m = Vec::with_capacity(8 + a.addrs.len() * 16 + V2_AUTH_LEN);
    let count = a.addrs.len().min(255) as u8;
    match a.version {
        Version::V2 => {
            let secs = a.interval_cs.div_ceil(100).clamp(1, 255) as u8;
            let auth_type = match auth {
                Auth::None => 0,
                Auth::Pass(_) => 1,
            };
            m.extend_from_slice(&[0x21, a.vrid, a.priority, count, auth_type, secs, 0, 0]);
        }
        Version::V3 => {
            let int = a.interval_cs & 0x0fff;
            m.extend_from_slice(&[0x31, a.vrid, a.priority, count]);
            m.extend_from_slice(&int.to_be_bytes());
            m.extend_from_slice(&[0, 0]);
        }
    }
    for addr in a.addrs.iter().take(255) {
        match addr {
            IpAddr::V4(v) => m.extend_from_slice(&v.octets()),
            IpAddr::V6(v) => m.extend_from_slice(&v.octets()),
        }
    }
    if a.version == Version::V2 {
        match auth {
            Auth::None => m.extend_from_slice(&[0; V2_AUTH_LEN]),
            Auth::Pass(p) => m.extend_from_slice(p),
        }
    }
    let ph = pseudo(src, dst, m.len(), a.version, v3_as_v2);
    let c = checksum(&[&ph, &m]);
    m[6..8].copy_from_slice(&c.to_be_bytes());
    m
}

/// Decode and validate a VRRP message received from `src` to `dst` with IP
/// TTL / hop limit `ttl`.
pub fn decode(
    m: &[u8],
    src: IpAddr,
    dst: IpAddr,
    ttl: u8,
    want: &Expect,
) -> Result<Advert, DropReason> {
    if ttl != 255 {
        return Err(DropReason::Ttl);
    }
    if m.len() < 8 {
        return Err(DropReason::Truncated);
    }
    let version = match m[0] >> 4 {
        2 => Version::V2,
        3 => Version::V3,
        _ => return Err(DropReason::Version),
    };
    if version != want.version {
        return Err(DropReason::Version);
    }
    if m[0] & 0x0f != TYPE_ADVERT {
        return Err(DropReason::Type);
    }
    if version == Version::V2 && !src.is_ipv4() {
        return Err(DropReason::Family);
    }
    let count = m[3] as usize;
    let alen = if src.is_ipv4() { 4 } else { 16 };
    let tail = if version == Version::V2 {
        V2_AUTH_LEN
    } else {
        0
    };
    if count == 0 {
        return Err(DropReason::AddrCount);
    }
    let need = 8 + count * alen + tail;
    if m.len() < need {
        // The count promises more than arrived.
        return Err(if m.len() < 8 + tail {
            DropReason::Truncated
        } else {
            DropReason::AddrCount
        });
    }
    // Trailing bytes beyond the addresses (and v2 auth data) are ignored,
    // as RFC 5798 §7.1 allows, but the checksum covers what was sent.
    let ph = pseudo(src, dst, m.len(), version, want.v3_checksum_as_v2);
    if checksum(&[&ph, m]) != 0 {
        return Err(DropReason::Checksum);
    }
    if m[1] != want.vrid {
        return Err(DropReason::Vrid);
    }
    let interval_cs = match version {
        Version::V2 => {
            let auth_type = m[4];
            let data = &m[8 + count * alen..8 + count * alen + V2_AUTH_LEN];
            match (&want.auth, auth_type) {
                (Auth::None, 0) => {}
                (Auth::Pass(p), 1) if data == p => {}
                (Auth::Pass(_), 1) => return Err(DropReason::AuthMismatch),
                _ => return Err(DropReason::AuthType),
            }
            m[5] as u16 * 100
        }
        Version::V3 => u16::from_be_bytes([m[4], m[5]]) & 0x0fff,
    };
    if interval_cs == 0 {
        return Err(DropReason::Interval);
    }
    let addrs = m[8..8 + count * alen]
        .chunks_exact(alen)
        .map(|c| match alen {
            4 => IpAddr::V4(Ipv4Addr::new(c[0], c[1], c[2], c[3])),
            _ => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(c).expect("16 bytes"))),
        })
        .collect();
    Ok(Advert {
        version,
        vrid: m[1],
        priority: m[2],
        interval_cs,
        addrs,
    })
}
