//! The desired data-plane state: a pure function of the config, what the
//! agent has learnt about links and neighbours, health, and the time (for
//! warmup). Effective weights are computed here and nowhere else, so every
//! table builder sees the same ones.

use std::{
    collections::HashMap,
    net::IpAddr,
    time::{Duration, Instant},
};

use lb_common::{Forward, HashFields, Scheduler, ServiceKey};

use crate::{
    agent::neigh::{LinkInfo, Route},
    config::{BackendCfg, Config, Probe, Service},
    health::{Key, Status},
};

/// Effective weights are in thousandths of a configured weight, so a
/// ramping backend of weight 1 still ramps smoothly.
pub const MILLI: u64 = 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredService {
    pub key: ServiceKey,
    pub scheduler: Scheduler,
    pub forward: Forward,
    pub hash: HashFields,
    /// Ring points per unit of weight (ring only).
    pub virtual_nodes: u32,
    /// The VIP is VRRP-managed and not held here: pass its packets.
    pub standby: bool,
    pub backends: Vec<DesiredBackend>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredBackend {
    pub addr: IpAddr,
    /// NAT: the port it listens on (0: the VIP's).
    pub port: u16,
    /// Configured weight.
    pub weight: u32,
    /// The weight tables are built from, in thousandths: `weight * MILLI`
    /// once warm, ramping from 0 during warmup, 0 when unhealthy.
    pub effective: u32,
    /// Egress interface and its MAC (the frame's new source).
    pub ifindex: u32,
    pub src_mac: [u8; 6],
    /// The next hop's MAC (the backend's own in DR), once the neighbour
    /// table has it.
    pub mac: Option<[u8; 6]>,
    /// The next hop: the backend (DR) or the route's gateway (tunnels).
    pub via: Option<IpAddr>,
    /// First of its check source ports, when checked through the data path.
    pub check_port: Option<u16>,
    pub healthy: bool,
    /// Still ramping up.
    pub warming: bool,
    /// Smoothed health-check response time in whole milliseconds (0 =
    /// unknown); only shortest-response services carry it.
    pub rtt_ms: u32,
}

impl DesiredBackend {
    /// Healthy and reachable (its next hop's MAC known): it can take flows.
    pub fn usable(&self) -> bool {
        self.mac.is_some() && self.healthy
    }
}

/// A checked backend's health as the agent holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    pub status: Status,
    /// When a check last brought it up; warmup counts from here. `None`
    /// for a backend up from the start (`initial = "up"`): nothing to warm.
    pub up_since: Option<Instant>,
}

/// What the agent knows of the host and the backends.
#[derive(Debug, Default, Clone)]
pub struct HostView {
    pub links: HashMap<String, LinkInfo>,
    pub macs: HashMap<(u32, IpAddr), [u8; 6]>,
    /// Tunnel backends: the kernel's route to each, and its egress link.
    pub routes: HashMap<IpAddr, (Route, LinkInfo)>,
    /// Backends with a check; a backend without one is healthy.
    pub health: HashMap<Key, Health>,
    /// When a backend without a check was first seen (its warmup start).
    pub added: HashMap<Key, Instant>,
    /// Smoothed check response times, milliseconds, as last published.
    pub rtt_ms: HashMap<Key, u32>,
    /// VRRP instances (by config index) that are master here.
    pub vrrp_master: std::collections::HashSet<usize>,
}

/// Whether `vip` is moved by a VRRP instance that is not master here.
fn standby(cfg: &Config, host: &HostView, vip: IpAddr) -> bool {
    let mut managed = false;
    for (i, v) in cfg.vrrp.iter().enumerate() {
        if v.held().any(|x| x.addr == vip) {
            if host.vrrp_master.contains(&i) {
                return false;
            }
            managed = true;
        }
    }
    managed
}

/// The interface each backend is reached through.
/// The first source port of each backend checked through the data path,
/// in config order: blocks of CHECK_BLOCK from CHECK_PORT_BASE. The check
/// tasks and the map writer both take them from here.
pub fn check_ports(cfg: &Config) -> HashMap<Key, u16> {
    use lb_common::check::{CHECK_BLOCK, CHECK_PORT_BASE, MAX_DATAPLANE_CHECKS};
    cfg.services
        .iter()
        .flat_map(|s| s.backends.iter().map(move |b| (s, b)))
        .filter(|(_, b)| {
            b.check.via == crate::config::Via::Dataplane && b.check.probe != Probe::None
        })
        .take(MAX_DATAPLANE_CHECKS as usize)
        .enumerate()
        .map(|(i, (s, b))| {
            (
                (s.key(), b.address),
                CHECK_PORT_BASE + i as u16 * CHECK_BLOCK,
            )
        })
        .collect()
}

pub fn egress<'a>(cfg: &'a Config, b: &'a BackendCfg) -> &'a str {
    b.interface.as_deref().unwrap_or(&cfg.agent.interface)
}

/// The link frames to `b` leave by and the neighbour they go to: the
/// backend itself on the configured interface (DR), or the route's
/// next hop (tunnels: the XDP program asks the FIB for the same).
pub fn next_hop(
    cfg: &Config,
    host: &HostView,
    s: &Service,
    b: &BackendCfg,
) -> Option<(LinkInfo, IpAddr)> {
    if s.forward.routed() {
        host.routes.get(&b.address).map(|(r, l)| (*l, r.via))
    } else {
        host.links.get(egress(cfg, b)).map(|l| (*l, b.address))
    }
}

/// (healthy, warmup start) of a backend.
fn health_of(host: &HostView, s: &Service, b: &BackendCfg) -> (bool, Option<Instant>) {
    let key = (s.key(), b.address);
    if b.check.probe == Probe::None {
        return (true, host.added.get(&key).copied());
    }
    match host.health.get(&key) {
        Some(h) => (h.status.is_up(), h.up_since),
        None => (false, None),
    }
}

/// Effective weight in thousandths: `weight * MILLI * elapsed / warmup`,
/// with `elapsed` rounded down to whole `step`s, and at least 1 so a
/// ramping backend is never mistaken for a drained one. Returns whether it
/// is still ramping.
pub fn effective_weight(
    weight: u32,
    warmup: Duration,
    step: Duration,
    up_since: Option<Instant>,
    now: Instant,
) -> (u32, bool) {
    let full = weight as u64 * MILLI;
    let Some(since) = up_since else {
        return (full as u32, false);
    };
    let up = now.saturating_duration_since(since);
    if weight == 0 || warmup.is_zero() || up >= warmup {
        return (full as u32, false);
    }
    let steps = up.as_nanos() / step.as_nanos().max(1);
    let elapsed = (steps * step.as_nanos()).min(warmup.as_nanos());
    let eff = (full as u128 * elapsed / warmup.as_nanos()) as u64;
    (eff.clamp(1, full) as u32, true)
}

/// When the next ramp step of any warming backend is due.
pub fn next_warmup_step(cfg: &Config, host: &HostView, now: Instant) -> Option<Instant> {
    cfg.services
        .iter()
        .filter(|s| !s.warmup.is_zero())
        .flat_map(|s| s.backends.iter().map(move |b| (s, b)))
        .filter_map(|(s, b)| {
            let (healthy, since) = health_of(host, s, b);
            let since = since.filter(|_| healthy)?;
            let up = now.saturating_duration_since(since);
            if up >= s.warmup {
                return None;
            }
            let step = s.warmup_step.as_nanos().max(1);
            let next = (up.as_nanos() / step + 1) * step;
            Some(since + Duration::from_nanos(next.min(s.warmup.as_nanos()) as u64))
        })
        .min()
}

pub fn desired(cfg: &Config, host: &HostView, now: Instant) -> Vec<DesiredService> {
    let ports = check_ports(cfg);
    cfg.services
        .iter()
        .map(|s| DesiredService {
            key: s.key(),
            scheduler: s.scheduler,
            forward: s.forward,
            hash: s.hash,
            virtual_nodes: s.virtual_nodes,
            standby: standby(cfg, host, s.vip),
            backends: s
                .backends
                .iter()
                .map(|b| {
                    let hop = next_hop(cfg, host, s, b);
                    let link = hop.map(|(l, _)| l);
                    let ifindex = link.map_or(0, |l| l.ifindex);
                    let (healthy, since) = health_of(host, s, b);
                    let (effective, warming) = if healthy {
                        effective_weight(b.weight, s.warmup, s.warmup_step, since, now)
                    } else {
                        (0, false)
                    };
                    DesiredBackend {
                        addr: b.address,
                        port: b.port.unwrap_or(0),
                        weight: b.weight,
                        effective,
                        ifindex,
                        src_mac: link.map_or([0; 6], |l| l.mac),
                        mac: hop.and_then(|(l, via)| host.macs.get(&(l.ifindex, via)).copied()),
                        via: hop.map(|(_, via)| via),
                        check_port: ports.get(&(s.key(), b.address)).copied(),
                        healthy,
                        warming,
                        // Other schedulers' tables must not be rebuilt when a
                        // response time moves.
                        rtt_ms: if s.scheduler == Scheduler::ShortestResponse {
                            host.rtt_ms.get(&(s.key(), b.address)).copied().unwrap_or(0)
                        } else {
                            0
                        },
                    }
                })
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn warmup_ramps_linearly_in_whole_steps() {
        let t0 = Instant::now();
        let w = |secs_ms: u64| {
            effective_weight(
                100,
                Duration::from_secs(10),
                S,
                Some(t0),
                t0 + Duration::from_millis(secs_ms),
            )
        };
        // At the start: the minimum, not 0 (0 would read as drained).
        assert_eq!(w(0), (1, true));
        assert_eq!(w(999), (1, true));
        assert_eq!(w(1000), (10_000, true));
        assert_eq!(w(2500), (20_000, true));
        assert_eq!(w(5000), (50_000, true));
        assert_eq!(w(9999), (90_000, true));
        assert_eq!(w(10_000), (100_000, false));
        assert_eq!(w(60_000), (100_000, false));
    }

    #[test]
    fn no_warmup_or_no_start_is_full_weight() {
        let t0 = Instant::now();
        assert_eq!(
            effective_weight(3, Duration::ZERO, S, Some(t0), t0),
            (3000, false)
        );
        assert_eq!(
            effective_weight(3, Duration::from_secs(30), S, None, t0),
            (3000, false)
        );
        // Drained stays drained.
        assert_eq!(
            effective_weight(0, Duration::from_secs(30), S, Some(t0), t0),
            (0, false)
        );
    }

    #[test]
    fn a_step_longer_than_the_warmup_jumps_to_full_at_the_end() {
        let t0 = Instant::now();
        let w = Duration::from_secs(2);
        let step = Duration::from_secs(5);
        assert_eq!(effective_weight(2, w, step, Some(t0), t0 + S), (1, true));
        assert_eq!(
            effective_weight(2, w, step, Some(t0), t0 + w),
            (2000, false)
        );
    }
}
