//! `lb run`: one task owns the maps. It applies the config, keeps backend
//! MACs current, reloads on SIGHUP (a bad file changes nothing), and on
//! SIGINT/SIGTERM detaches and removes its pins unless told to keep them.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    config::{Agent, Config},
    dataplane::Dataplane,
    ebpf::{self, Sizes},
    neigh::Net,
    plan::{self, DesiredService, HostView},
};

/// How often neighbour state is re-read; also the fastest a new backend's MAC is picked up.
const REFRESH: Duration = Duration::from_secs(1);

pub struct Options {
    pub config: PathBuf,
    pub keep_pinned: bool,
}

pub fn sizes(a: &Agent) -> Sizes {
    Sizes {
        flows: a.flow_table_size,
        max_services: a.max_services,
        max_backends: a.max_backends,
        table_size: a.table_size,
    }
}

pub async fn run(opts: Options) -> Result<()> {
    let mut cfg = Config::load(&opts.config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let pin_dir = cfg.agent.pin_dir.clone();
    let mut bpf = ebpf::load(&pin_dir, sizes(&cfg.agent)).context("loading the XDP program")?;
    let (link, how) = ebpf::attach(&mut bpf, &cfg.agent.interface, cfg.agent.xdp_mode, &pin_dir)
        .with_context(|| format!("attaching XDP to {}", cfg.agent.interface))?;
    tracing::info!(interface = %cfg.agent.interface, mode = ?how, pin_dir = %pin_dir.display(), "XDP program attached");
    let mut dp = Dataplane::new(&mut bpf, sizes(&cfg.agent))?;
    let net = Net::new().context("opening rtnetlink")?;
    let mut host = HostView::default();
    let mut last: Vec<DesiredService> = Vec::new();

    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut tick = tokio::time::interval(REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(services = cfg.services.len(), config = %opts.config.display(), "serving");
    loop {
        tokio::select! {
            _ = tick.tick() => {
                refresh_host(&net, &cfg, &mut host).await;
                sync(&mut dp, &cfg, &host, &mut last);
            }
            _ = hup.recv() => {
                match reload(&opts.config, &cfg) {
                    Ok(new) => {
                        tracing::info!(services = new.services.len(), "config reloaded");
                        cfg = new;
                        refresh_host(&net, &cfg, &mut host).await;
                        sync(&mut dp, &cfg, &host, &mut last);
                    }
                    Err(e) => tracing::error!("reload rejected, keeping the running config:\n{e:#}"),
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    drop(dp);
    if opts.keep_pinned {
        tracing::info!(pin_dir = %pin_dir.display(), "stopping; XDP program and maps stay pinned (--keep-pinned)");
        drop(link);
    } else {
        // Unpinning and closing the last fd of the link detaches the program.
        let _ = link.unpin();
        ebpf::unpin_all(&pin_dir);
        tracing::info!(interface = %cfg.agent.interface, "stopped; XDP program detached, pins removed");
    }
    Ok(())
}

/// The new config, if it is valid and can be applied without a restart.
fn reload(path: &Path, running: &Config) -> Result<Config> {
    let new = Config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    if new.agent != running.agent {
        bail!(
            "{}: [agent] settings changed; they size and place the maps and need a restart (`lb run` again)",
            path.display()
        );
    }
    Ok(new)
}

fn sync(dp: &mut Dataplane, cfg: &Config, host: &HostView, last: &mut Vec<DesiredService>) {
    let desired = plan::desired(cfg, host);
    if desired == *last {
        return;
    }
    match dp.apply(&desired) {
        Ok(()) => *last = desired,
        Err(e) => tracing::error!("updating the maps failed (will retry): {e}"),
    }
}

/// Re-read the interfaces and neighbour entries the config needs, and nudge
/// the kernel to resolve backends without a fresh entry.
async fn refresh_host(net: &Net, cfg: &Config, host: &mut HostView) {
    let names: BTreeSet<&str> = std::iter::once(cfg.agent.interface.as_str())
        .chain(
            cfg.services
                .iter()
                .flat_map(|s| s.backends.iter().filter_map(|b| b.interface.as_deref())),
        )
        .collect();
    for name in names {
        match net.link(name).await {
            Ok(l) => {
                host.links.insert(name.to_string(), l);
            }
            Err(e) => {
                if host.links.remove(name).is_some() {
                    tracing::warn!(interface = name, error = %e, "interface gone");
                } else {
                    tracing::debug!(interface = name, error = %e, "interface not found");
                }
            }
        }
    }
    let neighbours = match net.neighbours().await {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "reading the neighbour table failed");
            return;
        }
    };
    for s in &cfg.services {
        for b in &s.backends {
            let Some(link) = host.links.get(plan::egress(cfg, b)) else {
                continue;
            };
            let key = (link.ifindex, b.address);
            let n = neighbours.get(&key);
            if let Some(mac) = n.and_then(|n| n.mac)
                && host.macs.insert(key, mac) != Some(mac)
            {
                tracing::info!(backend = %b.address, mac = %crate::addr::mac(&mac), "backend MAC resolved");
            }
            // Keep the last known MAC meanwhile: XDP traffic bypasses the
            // neighbour subsystem, so entries age to STALE even when in use.
            if !n.is_some_and(|n| n.fresh)
                && let Err(e) = net.resolve(link.ifindex, b.address).await
            {
                tracing::debug!(backend = %b.address, error = %e, "neighbour resolution request failed");
            }
        }
    }
}
