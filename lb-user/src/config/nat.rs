//! `[agent]`'s NAT keys: the interface facing the backends, full-NAT's
//! source addresses and ports, and the connection timeouts (as IPVS's).

use std::{net::IpAddr, time::Duration};

use lb_common::nat::{
    DEFAULT_SNAT_PORTS, DEFAULT_TCP_FIN_TIMEOUT, DEFAULT_TCP_TIMEOUT, DEFAULT_UDP_TIMEOUT,
    MAX_SNAT, NatConfig,
};
use toml::Spanned;

use super::{ConfigError, Validator, raw::RawAgent};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatCfg {
    /// Full-NAT's source addresses (at most MAX_SNAT per family).
    pub snat: Vec<IpAddr>,
    /// Full-NAT's source ports, inclusive.
    pub ports: (u16, u16),
    pub tcp: Duration,
    pub tcp_fin: Duration,
    pub udp: Duration,
}

impl Default for NatCfg {
    fn default() -> Self {
        Self {
            snat: Vec::new(),
            ports: DEFAULT_SNAT_PORTS,
            tcp: Duration::from_secs(DEFAULT_TCP_TIMEOUT.into()),
            tcp_fin: Duration::from_secs(DEFAULT_TCP_FIN_TIMEOUT.into()),
            udp: Duration::from_secs(DEFAULT_UDP_TIMEOUT.into()),
        }
    }
}

impl NatCfg {
    /// Whether full-NAT has a source of this family.
    pub fn has_source(&self, v6: bool) -> bool {
        self.snat.iter().any(|a| a.is_ipv6() == v6)
    }

    /// NAT_CONFIG's record.
    pub fn record(&self) -> NatConfig {
        let mut c = NatConfig {
            port_lo: self.ports.0,
            port_hi: self.ports.1,
            ..Default::default()
        };
        for a in &self.snat {
            match a {
                IpAddr::V4(a) => {
                    c.snat4[c.n4 as usize] = a.octets();
                    c.n4 += 1;
                }
                IpAddr::V6(a) => {
                    c.snat6[c.n6 as usize] = a.octets();
                    c.n6 += 1;
                }
            }
        }
        c
    }

    /// How long an idle connection of `proto` is kept (closing: after a
    /// FIN or RST).
    pub fn timeout(&self, proto: u8, closing: bool) -> Duration {
        match (proto, closing) {
            (lb_common::PROTO_UDP, _) => self.udp,
            (_, true) => self.tcp_fin,
            _ => self.tcp,
        }
    }
}

impl Validator<'_> {
    pub(super) fn nat(&self, a: &RawAgent) -> Result<NatCfg, ConfigError> {
        let mut cfg = NatCfg::default();
        for s in a.snat_addresses.iter().flatten() {
            let addr = self.ip(s, "snat_addresses")?;
            if addr.is_unspecified() || addr.is_multicast() {
                return Err(self.err(
                    s.span(),
                    format!("snat_addresses: {addr} cannot be a source"),
                    "use unicast addresses of this host",
                ));
            }
            if cfg.snat.contains(&addr) {
                return Err(self.err(
                    s.span(),
                    format!("snat_addresses lists {addr} twice"),
                    "list each address once",
                ));
            }
            if cfg
                .snat
                .iter()
                .filter(|o| o.is_ipv4() == addr.is_ipv4())
                .count()
                >= MAX_SNAT
            {
                return Err(self.err(
                    s.span(),
                    format!("more than {MAX_SNAT} snat_addresses of one family"),
                    "each address gives a backend its own port range; 4 per family is the most",
                ));
            }
            cfg.snat.push(addr);
        }
        if let Some(r) = &a.snat_ports {
            cfg.ports = self.port_range(r)?;
        }
        cfg.tcp = self.duration(&a.nat_tcp_timeout, cfg.tcp, "nat_tcp_timeout")?;
        cfg.tcp_fin = self.duration(&a.nat_tcp_fin_timeout, cfg.tcp_fin, "nat_tcp_fin_timeout")?;
        cfg.udp = self.duration(&a.nat_udp_timeout, cfg.udp, "nat_udp_timeout")?;
        for (d, what) in [
            (&a.nat_tcp_timeout, cfg.tcp),
            (&a.nat_tcp_fin_timeout, cfg.tcp_fin),
            (&a.nat_udp_timeout, cfg.udp),
        ] {
            if what < Duration::from_secs(1)
                && let Some(d) = d
            {
                return Err(self.err(
                    d.span(),
                    format!("NAT timeout {:?} is under a second", d.get_ref()),
                    "connections are swept once a second; use at least \"1s\" (IPVS: 900s, 120s, 300s)",
                ));
            }
        }
        Ok(cfg)
    }

    fn port_range(&self, r: &Spanned<String>) -> Result<(u16, u16), ConfigError> {
        let parsed = r.get_ref().split_once('-').and_then(|(lo, hi)| {
            Some((
                lo.trim().parse::<u16>().ok()?,
                hi.trim().parse::<u16>().ok()?,
            ))
        });
        match parsed {
            Some((lo, hi)) if lo >= 1024 && lo <= hi => Ok((lo, hi)),
            _ => Err(self.err(
                r.span(),
                format!("bad snat_ports {:?}", r.get_ref()),
                "a range \"LOW-HIGH\" within 1024-65535, like \"10000-32767\" (apart from the host's own ephemeral ports, 32768-60999)",
            )),
        }
    }
}
