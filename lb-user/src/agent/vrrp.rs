//! Starting and stopping the configured VRRP instances for `lb run`: each
//! gets its interface's index, MAC and primary address, and its own task,
//! which reports to the agent (master or not, its status) on one channel.

use std::{collections::BTreeSet, net::IpAddr, time::Duration};

use anyhow::{Context, Result};
use tokio::sync::{oneshot, watch};

use super::neigh::Net;
use crate::{
    config::Config,
    vrrp::instance::{AgentTx, Instance, Setup, Stop},
};

pub struct Running {
    stops: Vec<(String, Stop)>,
}

/// The address VRRP speaks from on `ifindex`: for IPv4 the interface's
/// first address that is not a VIP, for IPv6 its link-local (RFC 5798 §5.1.2.1).
async fn primary_address(net: &Net, ifindex: u32, v6: bool, vips: &[IpAddr]) -> Result<IpAddr> {
    let addrs = net.addresses(ifindex).await?;
    addrs
        .into_iter()
        .filter(|a| a.is_ipv6() == v6 && !vips.contains(a))
        .find(|a| match a {
            IpAddr::V6(v) => v.is_unicast_link_local(),
            IpAddr::V4(_) => true,
        })
        .with_context(|| {
            format!(
                "no {} address to send VRRP from",
                if v6 { "link-local IPv6" } else { "IPv4" }
            )
        })
}

/// Instances (by config index) whose VIPs are all on their interface: a
/// previous agent was master here and did not hand over.
pub async fn held(net: &Net, cfg: &Config) -> BTreeSet<usize> {
    let mut held = BTreeSet::new();
    for (i, v) in cfg.vrrp.iter().enumerate() {
        let Ok(link) = net.link(&v.interface).await else {
            continue;
        };
        let Ok(addrs) = net.addresses(link.ifindex).await else {
            continue;
        };
        if !v.vips.is_empty() && v.held().all(|x| addrs.contains(&x.addr)) {
            held.insert(i);
        }
    }
    held
}

/// Start every instance; those in `resume` start as master (see
/// `Event::Resume`), the others drop VIPs a previous run left behind.
pub async fn start(
    net: &Net,
    cfg: &Config,
    resume: &BTreeSet<usize>,
    down: watch::Receiver<BTreeSet<String>>,
    agent: AgentTx,
) -> Result<Running> {
    let mut stops = Vec::new();
    // Each sync group's channel, a member's end handed to each instance.
    let mut groups: std::collections::BTreeMap<&str, Vec<crate::vrrp::group::Link>> =
        std::collections::BTreeMap::new();
    for name in cfg.vrrp.iter().filter_map(|v| v.sync_group.as_deref()) {
        if !groups.contains_key(name) {
            let n = cfg
                .vrrp
                .iter()
                .filter(|v| v.sync_group.as_deref() == Some(name))
                .count();
            // Handed out last first: member i gets link i.
            let mut links = crate::vrrp::group::Link::group(n);
            links.reverse();
            groups.insert(name, links);
        }
    }
    for (slot, v) in cfg.vrrp.iter().enumerate() {
        let vips: Vec<IpAddr> = v.held().map(|x| x.addr).collect();
        let link = net
            .link(&v.interface)
            .await
            .with_context(|| format!("VRRP instance {}: interface {}", v.name, v.interface))?;
        let primary = primary_address(net, link.ifindex, v.family_v6(), &vips)
            .await
            .with_context(|| format!("VRRP instance {} on {}", v.name, v.interface))?;
        let resume = resume.contains(&slot);
        if !resume {
            // Addresses a previous run left behind would make two masters.
            for vip in v.held() {
                let _ = crate::vrrp::addrs::remove(&net.handle(), link.ifindex, *vip).await;
            }
        }
        let mut paths = Vec::new();
        for p in &v.heartbeat_paths {
            let l = net.link(&p.interface).await.with_context(|| {
                format!("VRRP instance {}: heartbeat path {}", v.name, p.interface)
            })?;
            let src = primary_address(net, l.ifindex, v.family_v6(), &vips).await?;
            paths.push((p.interface.clone(), l.ifindex, src));
        }
        let setup = Setup {
            cfg: v.clone(),
            slot: slot as u32,
            ifindex: link.ifindex,
            mac: link.mac,
            primary,
            paths,
            resume,
            group: v
                .sync_group
                .as_deref()
                .and_then(|g| groups.get_mut(g))
                .and_then(Vec::pop),
        };
        let inst = open_when_ready(setup, net, &agent)
            .await
            .with_context(|| format!("VRRP instance {}: opening its sockets", v.name))?;
        let (tx, rx) = oneshot::channel();
        tokio::spawn(inst.run(rx, down.clone()));
        tracing::info!(instance = %v.name, interface = %v.interface, vrid = v.vrid, priority = v.priority, %primary, "VRRP instance started");
        stops.push((v.name.clone(), tx));
    }
    Ok(Running { stops })
}

/// An IPv6 link-local address is tentative for a moment after its link
/// comes up (duplicate address detection) and cannot be bound; wait for it.
async fn open_when_ready(setup: Setup, net: &Net, agent: &AgentTx) -> std::io::Result<Instance> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match Instance::new(setup.clone(), net.handle(), agent.clone()) {
            Err(e)
                if e.raw_os_error() == Some(libc::EADDRNOTAVAIL)
                    && tokio::time::Instant::now() < deadline =>
            {
                tracing::info!(instance = %setup.cfg.name, address = %setup.primary, "waiting for the address to leave duplicate detection");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            r => return r,
        }
    }
}

/// Stop every instance: masters send priority 0 and release their VIPs.
pub async fn stop(r: Running) {
    for (name, stop) in r.stops {
        let (ack_tx, ack_rx) = oneshot::channel();
        if stop.send(ack_tx).is_ok()
            && tokio::time::timeout(Duration::from_secs(2), ack_rx)
                .await
                .is_err()
        {
            tracing::warn!(instance = %name, "VRRP instance did not stop within 2 s");
        }
    }
}
