//! `lb run`: one task owns the maps. It applies the config, keeps backend
//! MACs current, turns health-check transitions into table rewrites, writes
//! what VRRP instances report, reloads on SIGHUP (a bad file changes
//! nothing), and on SIGINT/SIGTERM detaches and removes its pins unless told
//! to keep them.

pub mod adopt;
pub mod board;
pub mod check_path;
mod drain;
pub mod nat_sweep;
pub mod neigh;
mod sync;
mod systemd;
pub mod vrrp;

use std::{
    collections::{BTreeSet, HashSet},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use aya::programs::links::PinnedLink;
use lb_common::{SERVICE_STANDBY, Scheduler};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{mpsc, watch},
};

use crate::{
    api::{Api, Checks},
    bgp,
    config::{Config, Probe},
    health::{Key, Report, Status, Supervisor},
    maps::{Pinned, Sizes, Writer, loader, migrate},
    plan::{self, DesiredBackend, DesiredService, Health, HostView},
    vrrp::instance::ToAgent,
};
use board::Board;
use neigh::Net;

/// How often neighbour state is re-read; also the fastest a new backend's MAC is picked up.
const REFRESH: Duration = Duration::from_secs(1);
/// Right after a start or reload, while some backend has no MAC yet, re-read
/// this often: neighbour discovery answers within milliseconds, and a
/// service should not wait a whole REFRESH for it.
const REFRESH_FAST: Duration = Duration::from_millis(200);
/// How long after a start or reload REFRESH_FAST may apply; a backend that
/// stays unresolved is then asked about at the normal pace.
const FAST_WINDOW: Duration = Duration::from_secs(5);
/// Check reports waiting for the agent; checkers wait when it is full.
const REPORT_QUEUE: usize = 4096;

pub struct Options {
    pub config: PathBuf,
    pub keep_pinned: bool,
}

pub async fn run(opts: Options) -> Result<()> {
    tracing::debug!(config = %opts.config.display(), "starting");
    let cfg = Config::load(&opts.config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let pin_dir = cfg.agent.pin_dir.clone();
    // The API answers from the start (/healthz: 503 until serving).
    let api = match cfg.agent.api {
        Some(addr) => Some(
            Api::start(addr, cfg.agent.flow_table_size)
                .await
                .with_context(|| format!("starting the API on {addr}"))?,
        ),
        None => None,
    };
    let net = Net::new().context("opening rtnetlink")?;
    // Made before anything is attached: a name in use stops us here.
    let device = match &cfg.bgp {
        Some(b) => Some(bgp::device::Device::create(&b.device)?),
        None => None,
    };
    let older = migrate::older(&pin_dir);
    // VRRP first: its Master_Down_Interval runs while the program loads
    // and the first sync builds the tables, so a restarted node is back
    // as soon as keepalived would be. An instance that becomes master
    // waits for the loop below to switch its VIPs on before it announces
    // them; one resumed as master (it still holds its VIPs, and the pinned
    // maps forward them) never stops forwarding.
    let pins = Pinned::open(&loader::layout_dir(&pin_dir))
        .or_else(|e| older.as_deref().map_or(Err(e), Pinned::open))
        .ok();
    let resume = resumable(&cfg, pins.as_ref(), vrrp::held(&net, &cfg).await);
    drop(pins);
    let (down_tx, down_rx) = watch::channel(BTreeSet::new());
    let (vrrp_tx, mut from_vrrp) = mpsc::unbounded_channel();
    let vrrp = vrrp::start(&net, &cfg, &resume, down_rx, vrrp_tx)
        .await
        .context("starting VRRP")?;
    let (tx, mut reports) = mpsc::channel(REPORT_QUEUE);
    let checks = api.as_ref().map(|a| a.checks.clone());
    let (mut a, link) =
        match start_data_plane(cfg, net, older.as_deref(), tx, down_tx, checks).await {
            Ok(started) => started,
            Err(e) => {
                vrrp::stop(vrrp).await;
                return Err(e);
            }
        };
    a.host.vrrp_master.extend(resume.iter().copied());
    a.sync();
    if let Some(device) = device {
        // Announced only now: the program forwards and the tables are built.
        match bgp::Announcer::start(&a.net, device, a.check_metrics.clone()).await {
            Ok(ann) => {
                a.bgp = Some(ann);
                a.sync();
            }
            Err(e) => {
                vrrp::stop(vrrp).await;
                let interface = a.cfg.agent.interface.clone();
                drop(a);
                teardown(link, &pin_dir, opts.keep_pinned, &interface);
                return Err(e.context("starting the BGP announcement"));
            }
        }
    }
    if let Some(api) = &api {
        match Pinned::open(&loader::layout_dir(&pin_dir)) {
            Ok(p) => api.set_maps(p),
            Err(e) => tracing::warn!(error = %e, "the API cannot read the maps"),
        }
        api.set_serving(true);
    }

    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let mut drain: Option<drain::Drain> = None;
    tracing::info!(services = a.cfg.services.len(), checks = a.checks.len(), config = %opts.config.display(), "serving");
    systemd::ready(a.cfg.services.len());
    loop {
        let ramp = plan::next_warmup_step(&a.cfg, &a.host, Instant::now());
        let refresh = a.next_refresh();
        let dumps_due = (!a.held_masters.is_empty()).then(|| a.flow_sync.deadline());
        tokio::select! {
            Some(r) = reports.recv() => {
                // Take every report already queued, then rewrite the maps
                // once: a thousand backends coming up is one table build.
                let mut changed = a.on_report(r);
                for _ in 0..REPORT_QUEUE {
                    match reports.try_recv() {
                        Ok(r) => changed |= a.on_report(r),
                        Err(_) => break,
                    }
                }
                if changed {
                    a.sync();
                }
            }
            _ = sleep_until(ramp), if ramp.is_some() => a.sync(),
            Some(m) = from_vrrp.recv() => a.on_vrrp(m),
            ev = a.flow_sync.next() => a.on_flow_sync(ev),
            _ = sleep_until(dumps_due), if dumps_due.is_some() => a.release_masters(),
            _ = tokio::time::sleep_until(refresh.into()) => {
                a.refresh_host().await;
                // Also restarts a check task that died.
                a.start_checks(None);
                a.sync();
            }
            _ = hup.recv() => a.reload(&opts.config).await,
            _ = usr1.recv(), if drain.is_none() => drain = a.drain().await,
            _ = sleep_until(drain.as_ref().map(|d| d.next)), if drain.is_some() => {
                if let Some(why) = drain.as_mut().and_then(|d| d.done(Instant::now())) {
                    tracing::info!(why, "drained; stopping");
                    break;
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    if drain.is_none()
        && let (Some(ann), Some(b)) = (a.bgp.as_mut(), &a.cfg.bgp)
    {
        // The router moves new flows away while this node still forwards
        // what is on its way.
        ann.withdraw().await;
        tracing::info!(grace = ?b.grace, "forwarding through the grace time before stopping");
        tokio::time::sleep(b.grace).await;
    }
    let interface = a.cfg.agent.interface.clone();
    systemd::stopping();
    if let Some(api) = &api {
        api.set_serving(false);
    }
    // VRRP first: a master hands over (priority 0) while it still forwards.
    // Its last status reports are not written: the pins are going (or stay
    // as the last running state, with --keep-pinned).
    vrrp::stop(vrrp).await;
    drop(a);
    teardown(link, &pin_dir, opts.keep_pinned, &interface);
    Ok(())
}

/// Load the program (migrating an older layout's state), attach it, and
/// make the agent that owns its maps, carrying on from what they hold.
async fn start_data_plane(
    cfg: Config,
    net: Net,
    older: Option<&Path>,
    reports: mpsc::Sender<Report>,
    down_services: watch::Sender<BTreeSet<String>>,
    check_metrics: Option<Checks>,
) -> Result<(Agent, Vec<PinnedLink>)> {
    // Loading, verifying and migrating block: off the runtime's workers,
    // so VRRP's timers keep running meanwhile.
    let (mut dp, link, mut bpf) = tokio::task::block_in_place(|| load_and_attach(&cfg, older))?;
    let check_path = if check_path::needed(&cfg) && !link.is_empty() {
        let iface = net
            .link(&cfg.agent.interface)
            .await
            .with_context(|| format!("interface {}", cfg.agent.interface))?;
        let src = check_path::sources(&net, &cfg, iface.ifindex).await?;
        let h = check_path::build(&mut bpf, &net, iface, src)
            .await
            .context("building the path of checks through the data path")?;
        dp.write_check_path(&h.record)?;
        Some(h)
    } else {
        None
    };
    let ring = bpf
        .take_map(lb_common::names::FLOW_EVENTS)
        .context("FLOW_EVENTS missing from the object")?;
    let flow_sync = sync::FlowSync::start(
        ring,
        &loader::layout_dir(&cfg.agent.pin_dir),
        cfg.sync.as_ref(),
    )?;
    let nat = bpf
        .take_map(lb_common::names::NAT)
        .context("NAT missing from the object")?;
    let nat_sweep = nat_sweep::Sweeper::start(
        aya::maps::HashMap::try_from(nat).context("NAT")?,
        cfg.agent.nat.clone(),
    );
    // The programs stay attached through their links.
    drop(bpf);
    let mut checks = Supervisor::new(reports);
    if let Some(h) = &check_path {
        checks.set_check_ns(h.ns.clone());
    }
    let mut a = Agent {
        cfg,
        _check_path: check_path,
        flow_sync,
        _nat_sweep: nat_sweep,
        held_masters: Vec::new(),
        dp,
        net,
        host: HostView::default(),
        last: Vec::new(),
        checks,
        board: Board::default(),
        down_services,
        rtt_ewma: Default::default(),
        resolved: false,
        changed_at: Instant::now(),
        last_refresh: Instant::now(),
        check_metrics,
        bgp: None,
    };
    a.adopt();
    a.start_checks(None);
    a.refresh_host().await;
    Ok((a, link))
}

/// Load the program with its maps (copying an older layout's state into
/// them), attach it through the pinned link, and take the maps; the object
/// is returned for its other programs.
fn load_and_attach(
    cfg: &Config,
    older: Option<&Path>,
) -> Result<(Writer, Vec<PinnedLink>, aya::Ebpf)> {
    let pin_dir = &cfg.agent.pin_dir;
    let sizes = Sizes::from(&cfg.agent);
    let mut bpf = loader::load(pin_dir, sizes).context("loading the XDP program")?;
    tracing::debug!("XDP object loaded, maps pinned");
    let ours = loader::layout_dir(pin_dir);
    if let Some(old) = older {
        // An upgrade across a layout change: the new maps get the state
        // before the new program sees a packet.
        let c = migrate::copy(old, &ours)
            .with_context(|| format!("migrating the maps of {}", old.display()))?;
        tracing::info!(from = %old.display(), to = %ours.display(), services = c.services, flows = c.flows, table_entries = c.table_entries, entries = c.array_entries, "migrated the previous layout's maps");
    }
    let mut dp = Writer::new(&mut bpf, sizes)?;
    // Before the program runs: a tunnel service's first packet needs it.
    dp.write_tunnel(&cfg.agent.tunnel.record())?;
    dp.write_limits(cfg.agent.new_flows_per_cpu, cfg.sync.is_some())?;
    // [agent] settings: they change only with a restart.
    dp.write_nat(&cfg.agent.nat.record())?;
    if cfg.services.iter().any(|s| s.forward.routed()) {
        for interface in cfg.agent.interfaces() {
            forward_on(interface)?;
        }
    }
    if cfg.services.iter().any(|s| s.forward.nat()) {
        for interface in cfg.agent.interfaces() {
            accept_local(interface)?;
        }
    }
    if cfg.services.is_empty() {
        // VRRP only (keepalived in front of nginx, say): the maps hold the
        // status `lb show vrrp` reads; no program runs on the interface.
        for dir in [Some(ours.as_path()), older].into_iter().flatten() {
            // A program a previous config attached goes with its link.
            for (i, interface) in cfg.agent.interfaces().enumerate() {
                let _ = std::fs::remove_file(dir.join(loader::link_name(interface, i == 0)));
            }
        }
        tracing::info!(pin_dir = %ours.display(), "no [[service]]: VRRP only, no XDP program attached");
        if let Some(old) = older {
            loader::unpin_dir(old);
        }
        return Ok((dp, Vec::new(), bpf));
    }
    let mut links = Vec::new();
    for (i, interface) in cfg.agent.interfaces().enumerate() {
        let name = loader::link_name(interface, i == 0);
        let (link, how) = loader::attach(
            &mut bpf,
            interface,
            cfg.agent.xdp_mode,
            pin_dir,
            older,
            &name,
        )
        .with_context(|| format!("attaching XDP to {interface}"))?;
        tracing::info!(%interface, mode = ?how, pin_dir = %ours.display(), "XDP program attached");
        links.push(link);
    }
    if let Some(old) = older {
        // Flows the old program placed between the copy and the swap.
        let late = migrate::copy_new_flows(old, &ours).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "copying the last flows of the previous layout failed");
            0
        });
        loader::unpin_dir(old);
        tracing::info!(late_flows = late, "previous layout's pins removed");
    }
    Ok((dp, links, bpf))
}

/// The kernel's FIB answers an XDP program only for an interface that
/// forwards (it routes the tunnelled packet as a router would), so tunnel
/// services turn forwarding on there; it stays on after the agent exits,
/// like any router setting.
fn forward_on(interface: &str) -> Result<()> {
    for family in ["ipv4", "ipv6"] {
        let key = crate::sysctl::conf(family, interface, "forwarding");
        match crate::sysctl::set(&key, "1") {
            Ok(Some(old)) => {
                tracing::info!(key, old, "forwarding turned on for tunnel and NAT services")
            }
            Ok(None) => {}
            // IPv6 may be off on the interface: IPv6 tunnels then miss.
            Err(e) if family == "ipv6" => {
                tracing::warn!(key, error = %e, "cannot turn IPv6 forwarding on; IPv6 tunnels will pass to the kernel")
            }
            Err(e) => return Err(e).with_context(|| format!("turning on /proc/sys/{key}")),
        }
    }
    Ok(())
}

/// A NAT reply whose next hop the FIB cannot give yet (the client's
/// neighbour unresolved, say after a failover) is passed to the kernel
/// already translated, to route it and resolve the neighbour; its source
/// is the VIP, one of our own addresses, which the kernel drops as martian
/// unless the interface accepts local sources.
fn accept_local(interface: &str) -> Result<()> {
    let key = crate::sysctl::conf("ipv4", interface, "accept_local");
    match crate::sysctl::set(&key, "1") {
        Ok(Some(old)) => tracing::info!(key, old, "accept_local turned on for NAT services"),
        Ok(None) => {}
        Err(e) => return Err(e).with_context(|| format!("turning on /proc/sys/{key}")),
    }
    Ok(())
}

/// Of the instances whose VIPs are on their interface (`held`), those whose
/// services the pinned maps still forward (not standby): a previous agent
/// was master here and did not hand over.
fn resumable(cfg: &Config, pins: Option<&Pinned>, held: BTreeSet<usize>) -> BTreeSet<usize> {
    let Some(services) = pins.and_then(|p| p.services().ok()) else {
        return BTreeSet::new();
    };
    held.into_iter()
        .filter(|&i| {
            let vips: Vec<_> = cfg.vrrp[i].held().map(|v| v.addr).collect();
            cfg.services
                .iter()
                .filter(|s| vips.contains(&s.vip))
                .all(|s| {
                    services
                        .iter()
                        .any(|(k, m)| *k == s.key() && m.flags & SERVICE_STANDBY == 0)
                })
        })
        .collect()
}

/// Detach and unpin, unless told to keep both.
fn teardown(links: Vec<PinnedLink>, pin_dir: &Path, keep: bool, interface: &str) {
    if keep {
        tracing::info!(pin_dir = %pin_dir.display(), "stopping; XDP program and maps stay pinned (--keep-pinned)");
        drop(links);
    } else {
        // Unpinning and closing the last fd of the link detaches the program.
        for link in links {
            let _ = link.unpin();
        }
        loader::unpin_all(pin_dir);
        tracing::info!(%interface, "stopped; XDP program detached, pins removed");
    }
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

/// The running agent's state; only this task writes the maps.
struct Agent {
    cfg: Config,
    dp: Writer,
    net: Net,
    host: HostView,
    last: Vec<DesiredService>,
    checks: Supervisor,
    /// The check namespace, while checks go through the data path: held
    /// for its lifetime (dropping it detaches the programs; the namespace
    /// goes with its last descriptor).
    _check_path: Option<check_path::CheckPathHandle>,
    /// Flow events of the data plane, and the link to the sync peers.
    flow_sync: sync::FlowSync,
    /// Expires idle NAT connections (stops when dropped).
    _nat_sweep: nat_sweep::Sweeper,
    /// VRRP masterships waiting for the peers' flow dumps.
    held_masters: Vec<(u32, Option<tokio::sync::oneshot::Sender<()>>)>,
    board: Board,
    /// Services with no usable backend, for VRRP's service tracking.
    down_services: watch::Sender<BTreeSet<String>>,
    /// Smoothed check durations, milliseconds.
    rtt_ewma: std::collections::HashMap<Key, f64>,
    /// Every backend had a MAC at the last refresh.
    resolved: bool,
    /// The last start or reload (neighbours are re-read faster after it).
    changed_at: Instant,
    last_refresh: Instant,
    /// The VIPs' announcement through BIRD ([bgp]).
    bgp: Option<bgp::Announcer>,
    /// Check durations and outcomes for /metrics, when the API is on.
    check_metrics: Option<Checks>,
}

impl Agent {
    /// Start from what the maps hold (see adopt.rs).
    fn adopt(&mut self) {
        let seed = adopt::seed(&self.cfg, &self.dp.adopted(), Instant::now());
        if seed.records.is_empty() && seed.macs.is_empty() {
            return;
        }
        tracing::info!(
            checked = seed.health.len(),
            macs = seed.macs.len(),
            "carrying on from the previous agent's health verdicts and MACs"
        );
        self.host.health.extend(seed.health);
        self.host.added.extend(seed.added);
        self.host.macs.extend(seed.macs);
        for (k, r) in seed.records {
            self.board.adopt(k, r);
        }
    }

    fn next_refresh(&self) -> Instant {
        let fast = !self.resolved && self.changed_at.elapsed() < FAST_WINDOW;
        self.last_refresh + if fast { REFRESH_FAST } else { REFRESH }
    }

    /// What a VRRP instance reports: its mastership (only the master
    /// forwards its VIPs' traffic) or its status for `lb show vrrp`.
    fn on_vrrp(&mut self, m: ToAgent) {
        match m {
            ToAgent::Master { slot, master, ack } => {
                if master && !self.flow_sync.ready() {
                    // Not before the peers' flows are in (bounded wait).
                    self.held_masters.push((slot, ack));
                    return;
                }
                if master {
                    self.host.vrrp_master.insert(slot as usize);
                } else {
                    self.host.vrrp_master.remove(&(slot as usize));
                }
                self.sync();
                if let Some(ack) = ack {
                    let _ = ack.send(());
                }
            }
            ToAgent::Status { slot, status } => {
                if let Err(e) = self.dp.write_vrrp(slot, &status) {
                    tracing::warn!(error = %e, "writing VRRP status failed");
                }
            }
        }
    }

    /// SIGUSR1 (`lb drain`): withdraw the routes and start counting down.
    async fn drain(&mut self) -> Option<drain::Drain> {
        let (Some(ann), Some(b)) = (self.bgp.as_mut(), &self.cfg.bgp) else {
            tracing::warn!(
                "SIGUSR1 (lb drain) ignored: without [bgp] there is no route to withdraw"
            );
            return None;
        };
        ann.withdraw().await;
        tracing::info!(idle = ?b.drain_idle, timeout = ?b.drain_timeout, "draining: forwarding until no VIP packet arrives for the idle time");
        Some(drain::Drain::start(
            &loader::layout_dir(&self.cfg.agent.pin_dir),
            b.drain_idle,
            b.drain_timeout,
        ))
    }

    /// Masterships held back while the peers' flow dumps were awaited.
    fn release_masters(&mut self) {
        if self.held_masters.is_empty() || !self.flow_sync.ready() {
            return;
        }
        for (slot, ack) in std::mem::take(&mut self.held_masters) {
            self.host.vrrp_master.insert(slot as usize);
            self.sync();
            if let Some(ack) = ack {
                let _ = ack.send(());
            }
        }
    }

    /// SIGHUP: a valid new config replaces the running one; anything else
    /// is logged and the running config stays.
    async fn reload(&mut self, path: &Path) {
        systemd::reloading();
        let new = match validate_reload(path, &self.cfg) {
            Ok(new) => new,
            Err(e) => {
                tracing::error!("reload rejected, keeping the running config:\n{e:#}");
                systemd::ready(self.cfg.services.len());
                return;
            }
        };
        self.resolved = read_host(&self.net, &new, &mut self.host).await;
        self.last_refresh = Instant::now();
        self.changed_at = Instant::now();
        // What the host changed meanwhile (a MAC resolved) goes out under
        // the running config first, so the writes counted below are the
        // reload's own.
        self.sync();
        let services = new.services.len();
        let old = std::mem::replace(&mut self.cfg, new);
        if let Some(m) = &self.check_metrics {
            let now = backend_keys(&self.cfg);
            for (svc, b) in backend_keys(&old).difference(&now) {
                m.forget(&crate::addr::service_name(svc), &b.to_string());
            }
        }
        self.start_checks(Some(&old));
        let before = self.dp.writes;
        self.sync();
        let w = self.dp.writes;
        // What this reload changed in the maps: nothing for an unchanged file.
        tracing::info!(
            services,
            tables = w.tables - before.tables,
            backends = w.backends - before.backends,
            service_writes = w.services - before.services,
            "config reloaded"
        );
        systemd::ready(services);
    }

    fn publish_health(&mut self) {
        if let Err(e) = self.dp.write_health(self.board.records()) {
            tracing::warn!(error = %e, "writing the health map failed");
        }
    }
    /// Match check tasks to the config. `old` is the config before a reload:
    /// backends it lacked that have no check start their warmup now.
    fn start_checks(&mut self, old: Option<&Config>) {
        let now = Instant::now();
        let keys = backend_keys(&self.cfg);
        self.host.health.retain(|k, _| keys.contains(k));
        self.host.added.retain(|k, _| keys.contains(k));
        self.host.rtt_ms.retain(|k, _| keys.contains(k));
        self.rtt_ewma.retain(|k, _| keys.contains(k));
        self.board.retain(&self.cfg);
        if let Some(old) = old {
            let before = backend_keys(old);
            for s in &self.cfg.services {
                for b in &s.backends {
                    let k = (s.key(), b.address);
                    if b.check.probe == Probe::None && !before.contains(&k) {
                        self.host.added.insert(k, now);
                    }
                }
            }
        }
        // A backend whose check was removed is healthy from now on.
        for s in &self.cfg.services {
            for b in &s.backends {
                if b.check.probe == Probe::None {
                    self.host.health.remove(&(s.key(), b.address));
                }
            }
        }
        // A backend that served without a check and gains one stays up until
        // the new check says otherwise.
        let unchecked_before: HashSet<Key> = old
            .into_iter()
            .flat_map(|o| &o.services)
            .flat_map(|s| {
                s.backends
                    .iter()
                    .filter(|b| b.check.probe == Probe::None)
                    .map(move |b| (s.key(), b.address))
            })
            .collect();
        let health = &self.host.health;
        let started = self.checks.sync(&self.cfg, |k| {
            health
                .get(k)
                .map(|h| h.status)
                .or_else(|| unchecked_before.contains(k).then_some(Status::Up))
        });
        for (key, status) in started {
            let probe = self
                .cfg
                .services
                .iter()
                .find(|s| s.key() == key.0)
                .and_then(|s| s.backends.iter().find(|b| b.address == key.1))
                .map(|b| b.check.probe.clone())
                .unwrap_or(Probe::None);
            self.host.health.entry(key).or_insert(Health {
                status,
                up_since: None,
            });
            self.board.reset(key, status, &probe);
        }
    }

    /// Record one check result; true when the maps need a sync (the backend
    /// changed state, or its response time moved).
    fn on_report(&mut self, r: Report) -> bool {
        if !self.host.health.contains_key(&r.key) {
            return false; // a report from a task stopped by a reload
        }
        let rtt_moved = r.error.is_none() && self.smooth_rtt(&r);
        let Some(h) = self.host.health.get_mut(&r.key) else {
            return false;
        };
        self.board.on_report(&r);
        let service = || crate::addr::service_name(&r.key.0);
        if let Some(m) = &self.check_metrics {
            m.observe(&service(), &r.key.1.to_string(), r.rtt, r.error.is_none());
        }
        let reason = || {
            r.error
                .as_ref()
                .map_or_else(String::new, ToString::to_string)
        };
        if r.changed {
            h.status = r.status;
            h.up_since = r.status.is_up().then(Instant::now);
            match r.status {
                Status::Up => {
                    tracing::info!(service = %service(), backend = %r.key.1, passes = r.ok, rtt_ms = r.rtt.as_millis() as u64, "backend up")
                }
                _ => {
                    tracing::warn!(service = %service(), backend = %r.key.1, reason = %reason(), failures = r.fail, "backend down")
                }
            }
            true
        } else {
            if r.error.is_some() && r.status.is_up() {
                tracing::info!(service = %service(), backend = %r.key.1, reason = %reason(), failures = r.fail, "check failed, retrying");
            }
            if let Err(e) = self.dp.write_health(self.board.record(&r.key)) {
                tracing::warn!(error = %e, "writing the health map failed");
            }
            rtt_moved
        }
    }

    /// Fold a passing check's duration into the backend's smoothed response
    /// time (EWMA, 0.3 new); true when its whole milliseconds changed for a
    /// shortest-response service (others never resync for it).
    fn smooth_rtt(&mut self, r: &Report) -> bool {
        let ms = r.rtt.as_secs_f64() * 1000.0;
        let e = self.rtt_ewma.entry(r.key).or_insert(ms);
        *e = 0.7 * *e + 0.3 * ms;
        let now = e.round() as u32;
        let moved = self.host.rtt_ms.insert(r.key, now) != Some(now);
        // Only shortest-response tables carry response times.
        moved
            && self
                .cfg
                .services
                .iter()
                .any(|s| s.scheduler == Scheduler::ShortestResponse && s.key() == r.key.0)
    }

    fn sync(&mut self) {
        // Map writes block; the runtime's other tasks (VRRP) move to
        // another worker meanwhile.
        tokio::task::block_in_place(|| self.sync_maps());
    }

    fn sync_maps(&mut self) {
        let desired = plan::desired(&self.cfg, &self.host, Instant::now());
        // Health first: whoever sees a backend's new state in the maps also
        // sees why (a table rewrite can take a while).
        self.board.weigh(&self.cfg, &desired);
        self.publish_health();
        if desired != self.last {
            match self.dp.apply(&desired) {
                Ok(()) => self.last = desired,
                Err(e) => {
                    tracing::error!("updating the maps failed (will retry): {e}");
                    return;
                }
            }
        }
        self.board.weigh(&self.cfg, &self.last);
        self.publish_health();
        let links: Vec<_> = (self.cfg.agent.interfaces())
            .map(|i| self.host.links.get(i).copied())
            .collect();
        if let Err(e) = self.dp.write_interfaces(&links) {
            tracing::warn!(error = %e, "writing the interfaces' MACs failed");
        }
        if let (Some(ann), Some(b)) = (&self.bgp, &self.cfg.bgp) {
            ann.follow(&bgp::plan::plan(
                &bgp_health(&self.last),
                b.min_backends as usize,
            ));
        }
        let down: BTreeSet<String> = self
            .last
            .iter()
            .filter(|d| !d.backends.iter().any(DesiredBackend::usable))
            .map(|d| crate::addr::service_name(&d.key))
            .collect();
        self.down_services.send_if_modified(|cur| {
            let changed = *cur != down;
            *cur = down;
            changed
        });
    }

    async fn refresh_host(&mut self) {
        self.resolved = read_host(&self.net, &self.cfg, &mut self.host).await;
        self.last_refresh = Instant::now();
    }
}

/// What the BGP plan needs of each service: its usable backends.
fn bgp_health(services: &[DesiredService]) -> Vec<bgp::Health> {
    services
        .iter()
        .map(|d| bgp::Health {
            vip: crate::addr::from_bytes(&d.key.addr, d.key.family),
            service: crate::addr::service_name(&d.key),
            up: d.backends.iter().filter(|b| b.usable()).count(),
            total: d.backends.len(),
            standby: d.standby,
        })
        .collect()
}

/// Every (service, backend) of a config.
pub(crate) fn backend_keys(cfg: &Config) -> HashSet<Key> {
    cfg.services
        .iter()
        .flat_map(|s| s.backends.iter().map(move |b| (s.key(), b.address)))
        .collect()
}

/// The new config, if it is valid and can be applied without a restart.
fn validate_reload(path: &Path, running: &Config) -> Result<Config> {
    let new = Config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    if new.vrrp != running.vrrp {
        bail!(
            "{}: [[vrrp]] settings changed; they take effect on a restart (`lb run` again)",
            path.display()
        );
    }
    if new.services.is_empty() != running.services.is_empty() {
        bail!(
            "{}: going from VRRP only to serving [[service]]s (or back) attaches or detaches the XDP program and needs a restart (`lb run` again)",
            path.display()
        );
    }
    if new.sync != running.sync {
        bail!(
            "{}: [sync] settings changed; they take effect on a restart (`lb run` again)",
            path.display()
        );
    }
    if check_path::needed(&new) && !check_path::needed(running) {
        bail!(
            "{}: the first check with via = \"dataplane\" builds the check namespace at start; restart (`lb run` again) to add it",
            path.display()
        );
    }
    if new.bgp.as_ref().map(|b| &b.device) != running.bgp.as_ref().map(|b| &b.device) {
        bail!(
            "{}: [bgp] added, removed or its device renamed; that takes a restart (`lb run` again)",
            path.display()
        );
    }
    if new.agent != running.agent {
        bail!(
            "{}: [agent] settings changed; they size and place the maps and need a restart (`lb run` again)",
            path.display()
        );
    }
    Ok(new)
}

/// What one refresh has already read: each tunnel backend's route is asked
/// once (a backend may serve several services), each egress link once.
#[derive(Default)]
struct RouteRound {
    done: HashSet<std::net::IpAddr>,
    links: std::collections::HashMap<u32, neigh::LinkInfo>,
}

/// Re-read the route to a tunnel backend (and its egress link's MAC).
async fn refresh_route(
    net: &Net,
    host: &mut HostView,
    round: &mut RouteRound,
    addr: std::net::IpAddr,
) {
    if !round.done.insert(addr) {
        return;
    }
    let route = match net.route(addr).await {
        Ok(r) => r,
        Err(e) => {
            if host.routes.remove(&addr).is_some() {
                tracing::warn!(backend = %addr, error = %e, "no route to tunnel backend");
            }
            return;
        }
    };
    let link = match round.links.get(&route.ifindex) {
        Some(l) => *l,
        None => match net.link_by_index(route.ifindex).await {
            Ok((_, l)) => *round.links.entry(route.ifindex).or_insert(l),
            Err(e) => {
                tracing::warn!(backend = %addr, error = %e, "the route's interface is gone");
                return;
            }
        },
    };
    let old = host.routes.insert(addr, (route, link));
    if old.map(|(r, _)| r) != Some(route) {
        tracing::info!(backend = %addr, via = %route.via, ifindex = route.ifindex, "route to tunnel backend");
    }
}

/// Re-read the interfaces and neighbour entries the config needs, and nudge
/// the kernel to resolve backends without a fresh entry. True when every
/// backend has a MAC.
async fn read_host(net: &Net, cfg: &Config, host: &mut HostView) -> bool {
    let names: BTreeSet<&str> = cfg
        .agent
        .interfaces()
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
            return false;
        }
    };
    let mut resolved = true;
    let mut round = RouteRound::default();
    for s in &cfg.services {
        for b in &s.backends {
            if s.forward.routed() {
                refresh_route(net, host, &mut round, b.address).await;
            }
            let Some((link, via)) = plan::next_hop(cfg, host, s, b) else {
                resolved = false;
                continue;
            };
            let key = (link.ifindex, via);
            let n = neighbours.get(&key);
            if let Some(mac) = n.and_then(|n| n.mac)
                && host.macs.insert(key, mac) != Some(mac)
            {
                tracing::info!(backend = %b.address, via = %via, mac = %crate::addr::mac(&mac), "next hop MAC resolved");
            }
            resolved &= host.macs.contains_key(&key);
            // Keep the last known MAC meanwhile: XDP traffic bypasses the
            // neighbour subsystem, so entries age to STALE even when in use
            // (and a tunnel's FIB lookup needs the entry to exist).
            if !n.is_some_and(|n| n.fresh)
                && let Err(e) = net.resolve(link.ifindex, via).await
            {
                tracing::debug!(backend = %b.address, error = %e, "neighbour resolution request failed");
            }
        }
    }
    resolved
}
