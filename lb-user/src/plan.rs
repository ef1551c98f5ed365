//! The desired data-plane state: a pure function of the config and what the
//! agent has learnt about links and neighbours (and, later, health).

use std::{collections::HashMap, net::IpAddr};

use lb_common::{FORWARD_DR, SCHED_MAGLEV, ServiceKey};

use crate::config::Config;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredService {
    pub key: ServiceKey,
    pub scheduler: u8,
    pub forward: u8,
    pub hash_fields: u8,
    pub backends: Vec<DesiredBackend>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredBackend {
    pub addr: IpAddr,
    pub weight: u32,
    /// Egress interface and its MAC (the frame's new source).
    pub ifindex: u32,
    pub src_mac: [u8; 6],
    /// The backend's MAC, once the neighbour table has it.
    pub mac: Option<[u8; 6]>,
    pub healthy: bool,
}

/// An interface as the plan needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkInfo {
    pub ifindex: u32,
    pub mac: [u8; 6],
}

/// What the agent knows of the host.
#[derive(Debug, Default, Clone)]
pub struct HostView {
    pub links: HashMap<String, LinkInfo>,
    pub macs: HashMap<(u32, IpAddr), [u8; 6]>,
}

/// The interface each backend is reached through.
pub fn egress<'a>(cfg: &'a Config, b: &'a crate::config::BackendCfg) -> &'a str {
    b.interface.as_deref().unwrap_or(&cfg.agent.interface)
}

pub fn desired(cfg: &Config, host: &HostView) -> Vec<DesiredService> {
    cfg.services
        .iter()
        .map(|s| DesiredService {
            key: s.key(),
            scheduler: SCHED_MAGLEV,
            forward: FORWARD_DR,
            hash_fields: s.hash_fields,
            backends: s
                .backends
                .iter()
                .map(|b| {
                    let link = host.links.get(egress(cfg, b)).copied();
                    let ifindex = link.map_or(0, |l| l.ifindex);
                    DesiredBackend {
                        addr: b.address,
                        weight: b.weight,
                        ifindex,
                        src_mac: link.map_or([0; 6], |l| l.mac),
                        mac: link.and_then(|l| host.macs.get(&(l.ifindex, b.address)).copied()),
                        healthy: true,
                    }
                })
                .collect(),
        })
        .collect()
}
