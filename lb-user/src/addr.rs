//! Conversions between std addresses and the maps' 16-byte form, and the
//! "vip:port/proto" names people type.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use lb_common::{FAMILY_V4, FAMILY_V6, PROTO_TCP, PROTO_UDP, ServiceKey};

pub fn family(a: IpAddr) -> u8 {
    if a.is_ipv4() { FAMILY_V4 } else { FAMILY_V6 }
}

pub fn to_bytes(a: IpAddr) -> [u8; 16] {
    let mut out = [0u8; 16];
    match a {
        IpAddr::V4(v4) => out[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => out = v6.octets(),
    }
    out
}

pub fn from_bytes(b: &[u8; 16], family: u8) -> IpAddr {
    if family == FAMILY_V4 {
        IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(*b))
    }
}

pub fn proto_name(p: u8) -> &'static str {
    match p {
        PROTO_TCP => "tcp",
        PROTO_UDP => "udp",
        _ => "?",
    }
}

/// "ip:port", bracketing IPv6.
pub fn socket(a: IpAddr, port: u16) -> String {
    match a {
        IpAddr::V4(_) => format!("{a}:{port}"),
        IpAddr::V6(_) => format!("[{a}]:{port}"),
    }
}

pub fn service_name(k: &ServiceKey) -> String {
    format!(
        "{}/{}",
        socket(from_bytes(&k.addr, k.family), k.port),
        proto_name(k.proto)
    )
}

/// Parse "203.0.113.10:80/tcp" or "[2001:db8:f::10]:80/udp" (protocol defaults to tcp).
pub fn parse_service_name(s: &str) -> Option<ServiceKey> {
    let (sock, proto) = match s.rsplit_once('/') {
        Some((sock, p)) => (sock, p),
        None => (s, "tcp"),
    };
    let proto = match proto {
        "tcp" => PROTO_TCP,
        "udp" => PROTO_UDP,
        _ => return None,
    };
    let sa: std::net::SocketAddr = sock.parse().ok()?;
    Some(ServiceKey {
        addr: to_bytes(sa.ip()),
        port: sa.port(),
        proto,
        family: family(sa.ip()),
    })
}

pub fn mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_round_trip() {
        for s in [
            "203.0.113.10:80/tcp",
            "[2001:db8:f::10]:443/udp",
            "203.0.113.10:0/tcp",
        ] {
            assert_eq!(service_name(&parse_service_name(s).unwrap()), s);
        }
        assert_eq!(
            service_name(&parse_service_name("203.0.113.10:80").unwrap()),
            "203.0.113.10:80/tcp"
        );
        assert!(parse_service_name("203.0.113.10:80/sctp").is_none());
        assert!(parse_service_name("nonsense").is_none());
    }
}
