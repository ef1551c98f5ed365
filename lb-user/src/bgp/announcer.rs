//! Keeps the device's addresses equal to the announced VIPs. A task owns
//! the netlink work; the agent only publishes the plan (a watch channel),
//! so a slow netlink answer never holds up the map writer.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    time::Duration,
};

use anyhow::{Context, Result};
use rtnetlink::LinkUnspec;
use tokio::{sync::watch, task::JoinHandle};

use super::{VipPlan, device::Device};
use crate::{agent::neigh::Net, api::Checks, config::Vip, vrrp::addrs};

/// Each VIP of the plan: announce it or not.
type Want = BTreeMap<IpAddr, bool>;

/// A failed netlink round is tried again after this.
const RETRY: Duration = Duration::from_secs(1);

pub struct Announcer {
    device: Device,
    ifindex: u32,
    net: Net,
    want: watch::Sender<Want>,
    task: Option<JoinHandle<()>>,
    /// `lb_bgp_announced` on /metrics, when the API runs.
    metrics: Option<Checks>,
}

impl Announcer {
    /// Bring `device` up, announcing nothing until the first `follow`.
    pub async fn start(net: &Net, device: Device, metrics: Option<Checks>) -> Result<Announcer> {
        let link = net
            .link(&device.name)
            .await
            .with_context(|| format!("finding {}", device.name))?;
        net.handle()
            .link()
            .set(LinkUnspec::new_with_index(link.ifindex).up().build())
            .execute()
            .await
            .with_context(|| format!("setting {} up", device.name))?;
        let (want, rx) = watch::channel(Want::new());
        let task = tokio::spawn(follow_task(net.clone(), link.ifindex, rx, metrics.clone()));
        tracing::info!(device = %device.name, "BGP device up: BIRD's protocol direct exports its addresses");
        Ok(Announcer {
            device,
            ifindex: link.ifindex,
            net: net.clone(),
            want,
            task: Some(task),
            metrics,
        })
    }

    /// Announce the VIPs `plan` allows, withdraw the others.
    pub fn follow(&self, plan: &[VipPlan]) {
        let vips: Want = plan.iter().map(|p| (p.vip, p.announce)).collect();
        self.want.send_if_modified(|cur| {
            let changed = *cur != vips;
            *cur = vips;
            changed
        });
    }

    /// Withdraw every route for good (drain, shutdown): no more follow
    /// rounds, the addresses go and the device goes down, which BIRD's
    /// direct protocol sees at once. Returns when the kernel has done it.
    pub async fn withdraw(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
        if let Some(m) = &self.metrics {
            for vip in self.want.borrow().keys() {
                m.announced(&vip.to_string(), false);
            }
        }
        if let Err(e) = reconcile(&self.net, self.ifindex, &Want::new()).await {
            tracing::warn!(error = %e, "removing the announced VIPs failed; setting the device down withdraws them");
        }
        let down = self
            .net
            .handle()
            .link()
            .set(LinkUnspec::new_with_index(self.ifindex).down().build())
            .execute()
            .await;
        if let Err(e) = down {
            tracing::warn!(error = %e, device = %self.device.name, "setting the device down failed");
        }
        tracing::info!(device = %self.device.name, "every route withdrawn");
    }
}

async fn follow_task(
    net: Net,
    ifindex: u32,
    mut rx: watch::Receiver<Want>,
    metrics: Option<Checks>,
) {
    loop {
        let want = rx.borrow_and_update().clone();
        match reconcile(&net, ifindex, &want).await {
            Ok(()) => {
                if let Some(m) = &metrics {
                    for (vip, on) in &want {
                        m.announced(&vip.to_string(), *on);
                    }
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "updating the announced VIPs failed (will retry)");
                let _ = tokio::time::timeout(RETRY, rx.changed()).await;
            }
        }
    }
}

/// Add the VIPs to announce to the device and remove the others.
async fn reconcile(net: &Net, ifindex: u32, want: &Want) -> Result<()> {
    let want: BTreeSet<IpAddr> = want
        .iter()
        .filter(|(_, on)| **on)
        .map(|(v, _)| *v)
        .collect();
    let have: BTreeSet<IpAddr> = net
        .addresses(ifindex)
        .await?
        .into_iter()
        .filter(|a| !matches!(a, IpAddr::V6(v) if v.is_unicast_link_local()))
        .collect();
    let handle = net.handle();
    for &addr in want.difference(&have) {
        addrs::add(&handle, ifindex, host(addr)).await?;
        tracing::info!(vip = %addr, "announced");
    }
    for &addr in have.difference(&want) {
        addrs::remove(&handle, ifindex, host(addr)).await?;
        tracing::info!(vip = %addr, "withdrawn");
    }
    Ok(())
}

/// `addr` as a host route: /32 or /128.
fn host(addr: IpAddr) -> Vip {
    Vip {
        addr,
        prefix: if addr.is_ipv4() { 32 } else { 128 },
    }
}
