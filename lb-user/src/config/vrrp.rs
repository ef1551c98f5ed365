//! `[[vrrp]]` instances: validated VRRP settings.

use std::{collections::HashSet, net::IpAddr, time::Duration};

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Service, Validator};
use lb_common::vrrp::VRRP_NAME_LEN;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVrrp {
    pub name: Spanned<String>,
    pub interface: Option<Spanned<String>>,
    pub vrid: Spanned<i64>,
    pub priority: Option<Spanned<i64>>,
    pub version: Option<Spanned<i64>>,
    pub advert_interval: Option<Spanned<String>>,
    pub vips: Spanned<Vec<String>>,
    pub vips_excluded: Option<Spanned<Vec<String>>>,
    pub preempt: Option<Spanned<bool>>,
    pub preempt_delay: Option<Spanned<String>>,
    pub auth_pass: Option<Spanned<String>>,
    pub unicast_peers: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub heartbeat_paths: Vec<Spanned<RawPath>>,
    pub garp_repeat: Option<Spanned<i64>>,
    pub garp_interval: Option<Spanned<String>>,
    pub garp_refresh: Option<Spanned<String>>,
    pub track_interfaces: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub track_scripts: Vec<Spanned<RawTrackScript>>,
    #[serde(default)]
    pub track_services: Vec<Spanned<RawTrackService>>,
    pub notify: Option<Spanned<Vec<String>>>,
    pub v3_checksum_as_v2: Option<Spanned<bool>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPath {
    pub interface: Spanned<String>,
    pub unicast_peers: Option<Spanned<Vec<String>>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrackScript {
    pub command: Spanned<Vec<String>>,
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub weight: Spanned<i64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrackService {
    pub service: Spanned<String>,
    pub weight: Spanned<i64>,
}

/// VRRP version on the wire: 2 (RFC 3768) or 3 (RFC 5798).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    V2,
    V3,
}

impl Version {
    pub const fn number(self) -> u8 {
        match self {
            Version::V2 => 2,
            Version::V3 => 3,
        }
    }
}

/// A VIP as configured: address and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Vip {
    pub addr: IpAddr,
    pub prefix: u8,
}

/// An extra path the master also advertises on (the split-brain guard).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatPath {
    pub interface: String,
    pub unicast_peers: Vec<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackScript {
    pub command: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub weight: u8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackService {
    /// "203.0.113.10:80/tcp"
    pub service: String,
    pub weight: u8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vrrp {
    pub name: String,
    pub interface: String,
    pub vrid: u8,
    pub priority: u8,
    pub version: Version,
    pub advert_interval: Duration,
    /// The first VIP's family is the instance's; VIPs of the other family
    /// move with it but are not listed in adverts (keepalived's
    /// virtual_ipaddress_excluded).
    pub vips: Vec<Vip>,
    /// Addresses that move with the instance but are not listed in its
    /// adverts (keepalived's virtual_ipaddress_excluded).
    pub vips_excluded: Vec<Vip>,
    pub preempt: bool,
    pub preempt_delay: Duration,
    pub auth_pass: Option<String>,
    pub unicast_peers: Vec<IpAddr>,
    pub heartbeat_paths: Vec<HeartbeatPath>,
    pub garp_repeat: u32,
    pub garp_interval: Duration,
    pub garp_refresh: Option<Duration>,
    pub track_interfaces: Vec<String>,
    pub track_scripts: Vec<TrackScript>,
    pub track_services: Vec<TrackService>,
    pub notify: Option<Vec<String>>,
    pub v3_checksum_as_v2: bool,
    /// The `[[vrrp_sync_group]]` it belongs to: its members go to FAULT,
    /// MASTER and BACKUP together.
    pub sync_group: Option<String>,
}

impl Vrrp {
    pub fn family_v6(&self) -> bool {
        self.vips.first().is_some_and(|v| v.addr.is_ipv6())
    }

    /// Every address the master holds: the advertised ones and the excluded.
    pub fn held(&self) -> impl Iterator<Item = &Vip> {
        self.vips.iter().chain(&self.vips_excluded)
    }
}

impl Validator<'_> {
    fn vip(&self, s: &str, span: std::ops::Range<usize>) -> Result<Vip, ConfigError> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let bad = || {
            self.err(
                span.clone(),
                format!("bad VIP {s:?}"),
                "an address with an optional prefix length, like \"203.0.113.10\" or \"203.0.113.10/24\"",
            )
        };
        let addr: IpAddr = a.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
        };
        Ok(Vip { addr, prefix })
    }

    fn addrs(
        &self,
        v: &Option<Spanned<Vec<String>>>,
        v6: bool,
        what: &str,
    ) -> Result<Vec<IpAddr>, ConfigError> {
        let Some(v) = v else { return Ok(Vec::new()) };
        v.get_ref()
            .iter()
            .map(|s| match s.parse::<IpAddr>() {
                Ok(a) if a.is_ipv6() == v6 => Ok(a),
                _ => Err(self.err(
                    v.span(),
                    format!("bad {what} {s:?}"),
                    "addresses of the instance's family (that of its first VIP), without prefix",
                )),
            })
            .collect()
    }

    pub(super) fn vrrp(
        &self,
        r: &RawVrrp,
        agent_interface: &str,
        services: &[Service],
    ) -> Result<Vrrp, ConfigError> {
        let name = r.name.get_ref().clone();
        if name.is_empty() || name.len() >= VRRP_NAME_LEN || name.chars().any(|c| c.is_whitespace())
        {
            return Err(self.err(
                r.name.span(),
                format!("bad instance name {name:?}"),
                &format!(
                    "1 to {} characters without spaces, like \"VI_1\"",
                    VRRP_NAME_LEN - 1
                ),
            ));
        }
        let vrid = self.int(&Some(r.vrid.clone()), 0, 1, 255, "vrid")? as u8;
        let priority = self.int(&r.priority, 100, 1, 255, "priority")? as u8;
        let version = match r.version.as_ref().map(|v| *v.get_ref()) {
            None | Some(3) => Version::V3,
            Some(2) => Version::V2,
            Some(n) => {
                return Err(self.err(
                    r.version.as_ref().map(Spanned::span).unwrap_or_default(),
                    format!("unknown VRRP version {n}"),
                    "use 3 (RFC 5798, IPv4 and IPv6) or 2 (RFC 3768, IPv4 only)",
                ));
            }
        };
        if r.vips.get_ref().is_empty() {
            return Err(self.err(
                r.vips.span(),
                "an instance without VIPs".into(),
                "list the addresses the master holds: vips = [\"203.0.113.10\"]",
            ));
        }
        let vips = r
            .vips
            .get_ref()
            .iter()
            .map(|s| self.vip(s, r.vips.span()))
            .collect::<Result<Vec<_>, _>>()?;
        let vips_excluded = match &r.vips_excluded {
            None => Vec::new(),
            Some(x) => x
                .get_ref()
                .iter()
                .map(|s| self.vip(s, x.span()))
                .collect::<Result<Vec<_>, _>>()?,
        };
        let v6 = vips[0].addr.is_ipv6();
        if version == Version::V2 && v6 {
            return Err(self.err(
                r.vips.span(),
                "VRRPv2 carries IPv4 only".into(),
                "use version = 3 for an IPv6 instance, or put an IPv4 VIP first",
            ));
        }
        let default_interval = Duration::from_secs(1);
        let advert_interval =
            self.duration(&r.advert_interval, default_interval, "advert_interval")?;
        let ispan = r
            .advert_interval
            .as_ref()
            .map(Spanned::span)
            .unwrap_or_default();
        match version {
            Version::V3 => {
                let cs = advert_interval.as_millis();
                if !(10..=40_950).contains(&cs) || cs % 10 != 0 {
                    return Err(self.err(
                        ispan,
                        format!("advert_interval {} is not a VRRPv3 interval", humantime::format_duration(advert_interval)),
                        "VRRPv3 counts centiseconds: 10ms to 40.95s in steps of 10ms, like \"100ms\" or \"1s\"",
                    ));
                }
            }
            Version::V2 => {
                let ms = advert_interval.as_millis();
                if !(1000..=255_000).contains(&ms) || ms % 1000 != 0 {
                    return Err(self.err(
                        ispan,
                        format!("advert_interval {} is not a VRRPv2 interval", humantime::format_duration(advert_interval)),
                        "VRRPv2 counts whole seconds, 1s to 255s; use version = 3 for sub-second adverts",
                    ));
                }
            }
        }
        let auth_pass = match &r.auth_pass {
            None => None,
            Some(p) if version != Version::V2 => {
                return Err(self.err(
                    p.span(),
                    "auth_pass is VRRPv2 only".into(),
                    "VRRPv3 has no authentication (RFC 5798 §9); remove auth_pass or use version = 2",
                ));
            }
            Some(p) if p.get_ref().is_empty() || p.get_ref().len() > 8 => {
                return Err(self.err(
                    p.span(),
                    "auth_pass must be 1 to 8 characters".into(),
                    "VRRPv2 simple passwords are at most 8 bytes (longer ones are cut by keepalived)",
                ));
            }
            Some(p) => Some(p.get_ref().clone()),
        };
        let mut heartbeat_paths = Vec::new();
        for p in &r.heartbeat_paths {
            let p = p.get_ref();
            heartbeat_paths.push(HeartbeatPath {
                interface: p.interface.get_ref().clone(),
                unicast_peers: self.addrs(&p.unicast_peers, v6, "heartbeat peer")?,
            });
        }
        let mut track_scripts = Vec::new();
        for t in &r.track_scripts {
            let t = t.get_ref();
            if t.command.get_ref().is_empty() || t.command.get_ref()[0].is_empty() {
                return Err(self.err(
                    t.command.span(),
                    "empty track script command".into(),
                    "give the program and its arguments: command = [\"/usr/local/bin/check\"]",
                ));
            }
            let interval = self.duration(&t.interval, Duration::from_secs(2), "interval")?;
            let timeout =
                self.duration(&t.timeout, Duration::from_secs(1).min(interval), "timeout")?;
            track_scripts.push(TrackScript {
                command: t.command.get_ref().clone(),
                interval,
                timeout,
                weight: self.int(&Some(t.weight.clone()), 0, 1, 254, "weight")? as u8,
            });
        }
        let names: HashSet<String> = services.iter().map(Service::name).collect();
        let mut track_services = Vec::new();
        for t in &r.track_services {
            let t = t.get_ref();
            if !names.contains(t.service.get_ref()) {
                return Err(self.err(
                    t.service.span(),
                    format!("no service {:?} to track", t.service.get_ref()),
                    "name a configured service as VIP:PORT/PROTO, like \"203.0.113.10:80/tcp\"",
                ));
            }
            track_services.push(TrackService {
                service: t.service.get_ref().clone(),
                weight: self.int(&Some(t.weight.clone()), 0, 1, 254, "weight")? as u8,
            });
        }
        if let Some(n) = &r.notify
            && (n.get_ref().is_empty() || n.get_ref()[0].is_empty())
        {
            return Err(self.err(
                n.span(),
                "empty notify command".into(),
                "give the program and its arguments; it also gets the instance name, old and new state",
            ));
        }
        Ok(Vrrp {
            name,
            interface: r
                .interface
                .as_ref()
                .map_or_else(|| agent_interface.to_string(), |i| i.get_ref().clone()),
            vrid,
            priority,
            version,
            advert_interval,
            vips,
            vips_excluded,
            preempt: r.preempt.as_ref().is_none_or(|p| *p.get_ref()),
            preempt_delay: self.duration(&r.preempt_delay, Duration::ZERO, "preempt_delay")?,
            auth_pass,
            unicast_peers: self.addrs(&r.unicast_peers, v6, "unicast peer")?,
            heartbeat_paths,
            garp_repeat: self.int(&r.garp_repeat, 5, 1, 100, "garp_repeat")?,
            garp_interval: self.duration(
                &r.garp_interval,
                Duration::from_millis(100),
                "garp_interval",
            )?,
            garp_refresh: r
                .garp_refresh
                .as_ref()
                .map(|_| self.duration(&r.garp_refresh, Duration::ZERO, "garp_refresh"))
                .transpose()?
                .filter(|d| !d.is_zero()),
            track_interfaces: r
                .track_interfaces
                .as_ref()
                .map(|t| t.get_ref().clone())
                .unwrap_or_default(),
            track_scripts,
            track_services,
            notify: r.notify.as_ref().map(|n| n.get_ref().clone()),
            v3_checksum_as_v2: r.v3_checksum_as_v2.as_ref().is_some_and(|v| *v.get_ref()),
            sync_group: None,
        })
    }
}

impl Validator<'_> {
    /// Each `[[vrrp_sync_group]]`'s name onto its instances: every named
    /// instance exists and belongs to one group at most.
    pub(super) fn sync_groups(
        &self,
        groups: &[Spanned<super::raw::RawSyncGroup>],
        vrrp: &mut [Vrrp],
    ) -> Result<(), ConfigError> {
        let mut names = Vec::new();
        for g in groups {
            let g = g.get_ref();
            let name = g.name.get_ref();
            if names.contains(name) {
                return Err(self.err(
                    g.name.span(),
                    format!("duplicate vrrp_sync_group {name:?}"),
                    "give each group its own name",
                ));
            }
            names.push(name.clone());
            if g.instances.is_empty() {
                return Err(self.err(
                    g.name.span(),
                    format!("vrrp_sync_group {name:?} has no instances"),
                    "list the [[vrrp]] names that change state together, like instances = [\"VI_OUT\", \"VI_IN\"]",
                ));
            }
            for i in &g.instances {
                let Some(v) = vrrp.iter_mut().find(|v| v.name == *i.get_ref()) else {
                    return Err(self.err(
                        i.span(),
                        format!(
                            "vrrp_sync_group {name:?}: no [[vrrp]] named {:?}",
                            i.get_ref()
                        ),
                        "name a [[vrrp]] instance of this file",
                    ));
                };
                if let Some(other) = v.sync_group.replace(name.clone()) {
                    return Err(self.err(
                        i.span(),
                        format!(
                            "VRRP instance {:?} is already in vrrp_sync_group {other:?}",
                            v.name
                        ),
                        "an instance belongs to one sync group at most",
                    ));
                }
            }
        }
        Ok(())
    }
}
