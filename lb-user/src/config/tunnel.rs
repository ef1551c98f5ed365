//! `[agent]`'s tunnel keys: the outer sources of `forward = "ipip"` and
//! `"gue"` services and GUE's port.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use lb_common::{DEFAULT_GUE_PORT, TUNNEL_V4, TUNNEL_V6, Tunnel};
use toml::Spanned;

use super::{ConfigError, Validator};

/// `tunnel_source = "198.51.100.2"` or a list with one address per
/// family: kept as a TOML value (an untagged enum of spanned strings does
/// not deserialize) and read in `tunnel`.
pub type RawSources = Spanned<toml::Value>;

/// An outer source: an address, and with `tunnel_source_hash` the prefix
/// whose host bits the flow hash fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    pub addr: IpAddr,
    pub prefix_len: u8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelCfg {
    pub v4: Option<Source>,
    pub v6: Option<Source>,
    pub hash: bool,
    pub gue_port: u16,
}

impl Default for TunnelCfg {
    fn default() -> Self {
        Self {
            v4: None,
            v6: None,
            hash: false,
            gue_port: DEFAULT_GUE_PORT,
        }
    }
}

impl TunnelCfg {
    /// The source for outer headers of `family_v6`'s family.
    pub fn source(&self, v6: bool) -> Option<Source> {
        if v6 { self.v6 } else { self.v4 }
    }

    /// The TUNNEL map's record.
    pub fn record(&self) -> Tunnel {
        let mut t = Tunnel {
            gue_port: self.gue_port,
            ..Default::default()
        };
        let host_bits = |len: u8, width: u32| -> u32 {
            // Only the last 32 bits take the hash; a shorter IPv6 prefix
            // still varies those.
            let bits = (width - len as u32).min(32);
            if bits == 0 {
                0
            } else {
                u32::MAX >> (32 - bits)
            }
        };
        if let Some(Source {
            addr: IpAddr::V4(a),
            prefix_len,
        }) = self.v4
        {
            t.src4 = a.octets();
            t.hash_mask4 = if self.hash {
                host_bits(prefix_len, 32)
            } else {
                0
            };
            t.flags |= TUNNEL_V4;
        }
        if let Some(Source {
            addr: IpAddr::V6(a),
            prefix_len,
        }) = self.v6
        {
            t.src6 = a.octets();
            t.hash_mask6 = if self.hash {
                host_bits(prefix_len, 128)
            } else {
                0
            };
            t.flags |= TUNNEL_V6;
        }
        t
    }
}

impl Validator<'_> {
    pub(super) fn tunnel(
        &self,
        sources: Option<&RawSources>,
        hash: Option<&Spanned<bool>>,
        gue_port: Option<&Spanned<i64>>,
    ) -> Result<TunnelCfg, ConfigError> {
        let hash = hash.is_some_and(|h| *h.get_ref());
        let mut cfg = TunnelCfg {
            hash,
            gue_port: self.int(
                &gue_port.cloned(),
                DEFAULT_GUE_PORT as u32,
                1,
                65535,
                "gue_port",
            )? as u16,
            ..Default::default()
        };
        let span = sources.map(Spanned::span).unwrap_or_default();
        let shape = || {
            self.err(
                span.clone(),
                "tunnel_source must be an address or a list of addresses".into(),
                "write tunnel_source = \"198.51.100.2\" or [\"198.51.100.2\", \"2001:db8:1::2\"]",
            )
        };
        let list: Vec<String> = match sources.map(Spanned::get_ref) {
            None => Vec::new(),
            Some(toml::Value::String(s)) => vec![s.clone()],
            Some(toml::Value::Array(v)) => v
                .iter()
                .map(|x| x.as_str().map(str::to_string).ok_or_else(shape))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(shape()),
        };
        for text in list {
            let s = Spanned::new(span.clone(), text);
            let src = self.source(&s, hash)?;
            let slot = match src.addr {
                IpAddr::V4(_) => &mut cfg.v4,
                IpAddr::V6(_) => &mut cfg.v6,
            };
            if slot.replace(src).is_some() {
                return Err(self.err(
                    s.span(),
                    format!(
                        "a second tunnel_source of the same family: {:?}",
                        s.get_ref()
                    ),
                    "give at most one IPv4 and one IPv6 source",
                ));
            }
        }
        Ok(cfg)
    }

    fn source(&self, s: &Spanned<String>, hash: bool) -> Result<Source, ConfigError> {
        let text = s.get_ref();
        let bad = |msg: String, hint: &str| self.err(s.span(), msg, hint);
        let (addr, len) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text.as_str(), None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| {
            bad(
                format!("bad tunnel_source {text:?}"),
                "an address of this host, like \"198.51.100.2\"; with tunnel_source_hash = true a prefix, like \"198.51.100.64/26\"",
            )
        })?;
        let width = if addr.is_ipv4() { 32 } else { 128 };
        let prefix_len = match len {
            None => width,
            Some(l) => match l.parse::<u8>() {
                Ok(l) if l <= width => l,
                _ => {
                    return Err(bad(
                        format!("bad prefix length in tunnel_source {text:?}"),
                        &format!("a prefix length from 0 to {width}"),
                    ));
                }
            },
        };
        if !hash && prefix_len != width {
            return Err(bad(
                format!("tunnel_source {text:?} is a prefix, but tunnel_source_hash is off"),
                "give one address, or set tunnel_source_hash = true to spread outer sources over the prefix",
            ));
        }
        if hash && prefix_len == width {
            return Err(bad(
                format!("tunnel_source_hash needs a prefix; {text:?} is one address"),
                "write the prefix the flow hash may fill, like \"198.51.100.64/26\" (the backends must accept packets from all of it)",
            ));
        }
        let unspecified = match addr {
            IpAddr::V4(a) => a == Ipv4Addr::UNSPECIFIED || a.is_multicast(),
            IpAddr::V6(a) => a == Ipv6Addr::UNSPECIFIED || a.is_multicast(),
        };
        if unspecified {
            return Err(bad(
                format!("tunnel_source {text:?} cannot be an outer source"),
                "use a unicast address of this host",
            ));
        }
        Ok(Source { addr, prefix_len })
    }
}
