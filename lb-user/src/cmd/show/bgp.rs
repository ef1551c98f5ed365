//! `lb show bgp`: each VIP, whether this node announces it (its address is
//! on the agent's TUN device, which BIRD exports) and why.

use std::net::IpAddr;

use anyhow::Result;
use futures::TryStreamExt;
use lb_common::SERVICE_STANDBY;
use netlink_packet_route::link::LinkFlags;
use serde::Serialize;

use super::{
    View,
    render::{self, Col, Row, left},
};
use crate::{
    addr,
    agent::neigh::Net,
    bgp::{self, plan::plan},
    config::{BgpCfg, bgp::DEFAULT_BGP_DEVICE},
    maps::Pinned,
};

#[derive(Serialize)]
pub struct VipRow {
    pub vip: IpAddr,
    pub announced: bool,
    pub why: String,
}

#[derive(Serialize)]
pub struct Bgp {
    pub device: String,
    /// "up", "down" (draining or stopping) or "missing" (no agent).
    pub device_state: &'static str,
    pub min_backends: u32,
    pub vips: Vec<VipRow>,
}

impl Bgp {
    /// `cfg`: the agent's [bgp], if known (else the defaults).
    pub fn read(p: &Pinned, cfg: Option<&BgpCfg>) -> Result<Self> {
        let device = cfg.map_or(DEFAULT_BGP_DEVICE, |b| b.device.as_str());
        let min_backends = cfg.map_or(1, |b| b.min_backends);
        let mut health = Vec::new();
        for (key, m) in p.services()? {
            let bs = p.backends(m.id)?;
            health.push(bgp::Health {
                vip: addr::from_bytes(&key.addr, key.family),
                service: addr::service_name(&key),
                up: bs.iter().filter(|(_, b)| b.usable()).count(),
                total: bs.len(),
                standby: m.flags & SERVICE_STANDBY != 0,
            });
        }
        let (state, on_device) = device_state(device)?;
        let vips = plan(&health, min_backends as usize)
            .into_iter()
            .map(|v| {
                let announced = on_device.contains(&v.vip);
                let why = match state {
                    "missing" => format!(
                        "no device {device}: the agent is not running, BIRD announces nothing"
                    ),
                    "down" => format!("device {device} is down: the node is draining or stopping"),
                    _ if announced != v.announce => {
                        format!("{} (the agent is updating the device)", v.why)
                    }
                    _ => v.why,
                };
                VipRow {
                    vip: v.vip,
                    announced,
                    why,
                }
            })
            .collect();
        Ok(Bgp {
            device: device.to_string(),
            device_state: state,
            min_backends,
            vips,
        })
    }
}

/// The device's state and the addresses on it, from the kernel.
fn device_state(name: &str) -> Result<(&'static str, Vec<IpAddr>)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let net = Net::new()?;
        let mut links = net
            .handle()
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        let link = match links.try_next().await {
            Ok(Some(l)) => l,
            _ => return Ok(("missing", Vec::new())),
        };
        let state = if link.header.flags.contains(LinkFlags::Up) {
            "up"
        } else {
            "down"
        };
        Ok((state, net.addresses(link.header.index).await?))
    })
}

impl Row for VipRow {
    const COLS: &'static [Col] = &[left("VIP", 28), left("Announced", 9), left("Why", 60)];
    fn cells(&self) -> Vec<String> {
        vec![
            self.vip.to_string(),
            if self.announced { "yes" } else { "no" }.into(),
            self.why.clone(),
        ]
    }
}

impl View for Bgp {
    fn text(&self) -> String {
        let mut s = format!(
            "device {} ({}), min_backends {}\n",
            self.device, self.device_state, self.min_backends
        );
        s.push_str(&render::text(&self.vips));
        s
    }
}
