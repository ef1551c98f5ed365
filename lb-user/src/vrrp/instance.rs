//! One VRRP instance at run time: feeds the state machine with timers,
//! adverts from every path, tracked interfaces, scripts and services, and
//! carries out its actions (adverts, VIPs, announcements, notify). Nothing
//! here decides anything the state machine does not.

use std::{
    collections::BTreeSet,
    net::IpAddr,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use lb_common::{
    VrrpStatus,
    vrrp::{VRRP_BACKUP, VRRP_FAULT, VRRP_INIT, VRRP_MASTER},
};
use rtnetlink::Handle;
use tokio::{
    sync::{mpsc, oneshot, watch},
    time::Instant,
};

use super::{
    addrs::{self, Announcer},
    codec::{self, Advert, Auth, DROP_MALFORMED, Expect, drop_index},
    socket::{Received, Transport},
    state::{Action, Event, Machine, Params, State},
    track,
};
use crate::{config::Vrrp, exec};

/// How often tracked interfaces are looked at.
const LINK_POLL: Duration = Duration::from_millis(200);

/// What the instance needs from the host, resolved by the agent.
#[derive(Clone)]
pub struct Setup {
    pub cfg: Vrrp,
    pub slot: u32,
    pub ifindex: u32,
    pub mac: [u8; 6],
    /// Our address on `cfg.interface` in the instance's family.
    pub primary: IpAddr,
    /// (interface, ifindex, our address) per heartbeat path.
    pub paths: Vec<(String, u32, IpAddr)>,
    /// Start as master: a restarted agent that was master (`Event::Resume`).
    pub resume: bool,
    /// Its sync group, if any.
    pub group: Option<super::group::Link>,
}

/// Ask a running instance to stop; it answers once its priority-0 advert is
/// out and its VIPs are gone.
pub type Stop = oneshot::Sender<oneshot::Sender<()>>;

/// What an instance tells the agent, which alone writes the maps.
#[derive(Debug)]
pub enum ToAgent {
    /// The instance at config index `slot` became master or stopped being
    /// it. On becoming master it waits for the ack: the data plane forwards
    /// the VIPs' traffic before anyone is told to send it here.
    Master {
        slot: u32,
        master: bool,
        ack: Option<oneshot::Sender<()>>,
    },
    /// Its status for `lb show vrrp` changed.
    Status { slot: u32, status: VrrpStatus },
}

pub type AgentTx = mpsc::UnboundedSender<ToAgent>;

pub struct Instance {
    s: Setup,
    agent: AgentTx,
    m: Machine,
    transports: Vec<Arc<Transport>>,
    announcer: Announcer,
    net: Handle,
    status: VrrpStatus,
    /// What the agent was last sent.
    published: VrrpStatus,
    expect: Expect,
    auth: Auth,
    /// Announcements still due in this round, and when the next is.
    garp_left: u32,
    garp_at: Option<Instant>,
    refresh_at: Option<Instant>,
    failed_scripts: BTreeSet<usize>,
    down_services: BTreeSet<String>,
    link_fault: bool,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The next change of a sync group's states; never without a group.
async fn group_changed(g: &mut Option<super::group::Link>) {
    match g {
        Some(g) => {
            if g.rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

impl Instance {
    pub fn new(s: Setup, net: Handle, agent: AgentTx) -> std::io::Result<Self> {
        let cfg = &s.cfg;
        let mut transports = vec![Arc::new(Transport::open(
            &cfg.interface,
            s.ifindex,
            s.primary,
            cfg.unicast_peers.clone(),
        )?)];
        for (p, (name, ifindex, src)) in cfg.heartbeat_paths.iter().zip(&s.paths) {
            transports.push(Arc::new(Transport::open(
                name,
                *ifindex,
                *src,
                p.unicast_peers.clone(),
            )?));
        }
        let announcer = Announcer::new(&cfg.interface, s.ifindex, s.mac)?;
        let auth = cfg.auth_pass.as_deref().map_or(Auth::None, Auth::pass);
        let m = Machine::new(Params {
            version: cfg.version,
            priority: cfg.priority,
            advert_cs: (cfg.advert_interval.as_millis() / 10) as u16,
            preempt: cfg.preempt,
            preempt_delay: cfg.preempt_delay,
            primary: s.primary,
        });
        let mut status = VrrpStatus::default();
        status.set_name(&cfg.name);
        status.configured = 1;
        status.version = cfg.version.number();
        status.vrid = cfg.vrid;
        status.priority = cfg.priority;
        status.effective_priority = cfg.priority;
        status.interval_cs = (cfg.advert_interval.as_millis() / 10) as u32;
        Ok(Instance {
            expect: Expect {
                version: cfg.version,
                vrid: cfg.vrid,
                auth: auth.clone(),
                v3_checksum_as_v2: cfg.v3_checksum_as_v2,
            },
            auth,
            s,
            agent,
            m,
            transports,
            announcer,
            net,
            status,
            published: VrrpStatus::default(),
            garp_left: 0,
            garp_at: None,
            refresh_at: None,
            failed_scripts: BTreeSet::new(),
            down_services: BTreeSet::new(),
            link_fault: false,
        })
    }

    pub async fn run(
        mut self,
        stop: oneshot::Receiver<oneshot::Sender<()>>,
        mut down_services: watch::Receiver<BTreeSet<String>>,
    ) {
        let (rx_tx, mut adverts) = mpsc::channel::<Received>(256);
        let (drop_tx, mut malformed) = mpsc::channel::<()>(64);
        let mut readers = Vec::new();
        for t in &self.transports {
            let (t, tx, dtx) = (t.clone(), rx_tx.clone(), drop_tx.clone());
            readers.push(tokio::spawn(async move {
                loop {
                    match t.recv().await {
                        Ok(Ok(r)) => {
                            if tx.send(r).await.is_err() {
                                return;
                            }
                        }
                        Ok(Err(_)) => {
                            let _ = dtx.try_send(());
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "VRRP receive failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            }));
        }
        let (script_tx, mut scripts) = mpsc::channel::<(usize, bool)>(16);
        for (i, t) in self.s.cfg.track_scripts.iter().enumerate() {
            readers.push(tokio::spawn(track::script(i, t.clone(), script_tx.clone())));
        }
        self.down_services = down_services.borrow_and_update().clone();
        self.link_fault = self.links_down().await;
        let p = self.priority();
        self.m.step(Event::Priority(p), Instant::now());
        let start = if self.s.resume {
            tracing::info!(instance = %self.s.cfg.name, "VIPs held and forwarded: resuming as master");
            Event::Resume
        } else {
            Event::Startup
        };
        let a = self.m.step(start, Instant::now());
        self.exec(a).await;
        if self.link_fault {
            let a = self.m.step(Event::Fault(true), Instant::now());
            self.exec(a).await;
        }
        let mut links = tokio::time::interval(LINK_POLL);
        links.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stop = stop;
        loop {
            tokio::select! {
                _ = sleep_until(self.m.deadline()) => {
                    let a = self.m.step(Event::Timer, Instant::now());
                    self.exec(a).await;
                }
                Some(r) = adverts.recv() => self.on_packet(r).await,
                Some(()) = malformed.recv() => {
                    self.status.drops[DROP_MALFORMED] += 1;
                    self.publish();
                }
                _ = sleep_until(self.garp_at) => self.announce_round(),
                _ = sleep_until(self.refresh_at) => {
                    self.start_announcing();
                }
                _ = links.tick() => {
                    let down = self.links_down().await;
                    if down != self.link_fault {
                        self.link_fault = down;
                        tracing::warn!(instance = %self.s.cfg.name, down, "tracked interface state changed");
                        let fault = down || self.group_fault();
                        let a = self.m.step(Event::Fault(fault), Instant::now());
                        self.exec(a).await;
                    }
                }
                () = group_changed(&mut self.s.group) => self.on_group().await,
                Some((i, ok)) = scripts.recv() => {
                    let changed = if ok { self.failed_scripts.remove(&i) } else { self.failed_scripts.insert(i) };
                    if changed {
                        tracing::info!(instance = %self.s.cfg.name, script = ?self.s.cfg.track_scripts[i].command, ok, "track script changed");
                        self.reprioritise().await;
                    }
                }
                Ok(()) = down_services.changed() => {
                    self.down_services = down_services.borrow_and_update().clone();
                    self.reprioritise().await;
                }
                reply = &mut stop => {
                    let a = self.m.step(Event::Shutdown, Instant::now());
                    self.exec(a).await;
                    for r in &readers {
                        r.abort();
                    }
                    if let Ok(reply) = reply {
                        let _ = reply.send(());
                    }
                    return;
                }
            }
        }
    }

    fn priority(&self) -> u8 {
        track::priority(&self.s.cfg, &self.failed_scripts, &self.down_services)
    }

    /// Whether another member of our sync group has a fault of its own.
    fn group_fault(&self) -> bool {
        self.s
            .group
            .as_ref()
            .is_some_and(|g| super::group::others_fault(g.me, &g.rx.borrow()))
    }

    /// The sync group changed: follow it (see group.rs).
    async fn on_group(&mut self) {
        let Some(g) = &mut self.s.group else {
            return;
        };
        let now = g.rx.borrow_and_update().clone();
        let events = super::group::follow(g.me, self.link_fault, self.m.state(), &g.seen, &now);
        g.seen = now;
        for ev in events {
            tracing::warn!(instance = %self.s.cfg.name, group = ?self.s.cfg.sync_group, event = ?ev, "following the sync group");
            let a = self.m.step(ev, Instant::now());
            self.exec(a).await;
        }
    }

    async fn reprioritise(&mut self) {
        let p = self.priority();
        if p != self.m.priority() {
            tracing::warn!(instance = %self.s.cfg.name, from = self.m.priority(), to = p, "effective priority changed");
            let a = self.m.step(Event::Priority(p), Instant::now());
            self.exec(a).await;
        }
        self.publish();
    }

    async fn links_down(&self) -> bool {
        track::links_down(&self.net, &self.s.cfg.track_interfaces).await
    }

    async fn on_packet(&mut self, r: Received) {
        if self.transports.iter().any(|t| t.src == r.src) {
            return; // our own advert
        }
        match codec::decode(&r.payload, r.src, r.dst, r.ttl, &self.expect) {
            Ok(a) => {
                self.status.adverts_received += 1;
                self.status.last_advert_ms = now_ms();
                let ev = Event::Advert {
                    from: r.src,
                    priority: a.priority,
                    interval_cs: a.interval_cs,
                };
                let actions = self.m.step(ev, Instant::now());
                self.exec(actions).await;
            }
            Err(reason) => {
                self.status.drops[drop_index(reason)] += 1;
                tracing::debug!(instance = %self.s.cfg.name, from = %r.src, reason = reason.name(), "VRRP packet dropped");
                self.publish();
            }
        }
    }

    fn advert(&self, priority: u8) -> Advert {
        let v6 = self.s.cfg.family_v6();
        Advert {
            version: self.s.cfg.version,
            vrid: self.s.cfg.vrid,
            priority,
            interval_cs: (self.s.cfg.advert_interval.as_millis() / 10) as u16,
            addrs: self
                .s
                .cfg
                .vips
                .iter()
                .map(|v| v.addr)
                .filter(|a| a.is_ipv6() == v6)
                .collect(),
        }
    }

    fn send_advert(&mut self, priority: u8) {
        let a = self.advert(priority);
        for t in &self.transports {
            for dst in t.destinations() {
                let msg = codec::encode(&a, &self.auth, t.src, dst, self.s.cfg.v3_checksum_as_v2);
                match t.send(dst, &msg) {
                    Ok(()) => self.status.adverts_sent += 1,
                    Err(e) => {
                        tracing::warn!(instance = %self.s.cfg.name, %dst, error = %e, "sending an advert failed")
                    }
                }
            }
        }
    }

    fn start_announcing(&mut self) {
        self.garp_left = self.s.cfg.garp_repeat;
        self.garp_at = Some(Instant::now());
        self.refresh_at = self.s.cfg.garp_refresh.map(|r| Instant::now() + r);
    }

    fn announce_round(&mut self) {
        for v in self.s.cfg.held() {
            if let Err(e) = self.announcer.announce(v.addr) {
                tracing::warn!(instance = %self.s.cfg.name, vip = %v.addr, error = %e, "announcing a VIP failed");
            }
        }
        self.garp_left = self.garp_left.saturating_sub(1);
        self.garp_at = (self.garp_left > 0).then(|| Instant::now() + self.s.cfg.garp_interval);
    }

    async fn exec(&mut self, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::SendAdvert { priority } => self.send_advert(priority),
                Action::TakeVips => {
                    let (ack, ready) = oneshot::channel();
                    let asked = self.agent.send(ToAgent::Master {
                        slot: self.s.slot,
                        master: true,
                        ack: Some(ack),
                    });
                    if asked.is_ok() {
                        // Never announce VIPs the data plane does not
                        // forward yet (at start-up it may still be loading).
                        tokio::pin!(ready);
                        if tokio::time::timeout(Duration::from_secs(1), &mut ready)
                            .await
                            .is_err()
                        {
                            tracing::warn!(instance = %self.s.cfg.name, "data plane slow to take the VIPs; waiting");
                            let _ = ready.await;
                        }
                    }
                    for v in self.s.cfg.held().copied().collect::<Vec<_>>() {
                        if let Err(e) = addrs::add(&self.net, self.s.ifindex, v).await {
                            tracing::error!(instance = %self.s.cfg.name, vip = %v.addr, error = %e, "adding a VIP failed");
                        }
                    }
                    // The first announcement goes out now, the rest on schedule.
                    self.start_announcing();
                    self.announce_round();
                }
                Action::RemoveVips => {
                    self.garp_at = None;
                    self.refresh_at = None;
                    for v in self.s.cfg.held().copied().collect::<Vec<_>>() {
                        if let Err(e) = addrs::remove(&self.net, self.s.ifindex, v).await {
                            tracing::error!(instance = %self.s.cfg.name, vip = %v.addr, error = %e, "removing a VIP failed");
                        }
                    }
                }
                Action::Transition { from, to } => {
                    tracing::warn!(
                        instance = %self.s.cfg.name,
                        from = from.name(),
                        to = to.name(),
                        priority = self.m.priority(),
                        "VRRP transition"
                    );
                    self.status.transitions += 1;
                    if to != State::Master {
                        let _ = self.agent.send(ToAgent::Master {
                            slot: self.s.slot,
                            master: false,
                            ack: None,
                        });
                    }
                    self.status.last_change_ms = now_ms();
                    if let Some(cmd) = &self.s.cfg.notify {
                        notify(cmd.clone(), &self.s.cfg.name, from, to);
                    }
                }
            }
        }
        if let Some(g) = &self.s.group {
            g.publish(super::group::Member {
                fault: self.link_fault,
                state: Some(self.m.state()),
            });
        }
        self.publish();
    }

    fn publish(&mut self) {
        let st = &mut self.status;
        st.state = match self.m.state() {
            State::Init => VRRP_INIT,
            State::Backup => VRRP_BACKUP,
            State::Master => VRRP_MASTER,
            State::Fault => VRRP_FAULT,
        };
        st.effective_priority = self.m.priority();
        match self.m.master() {
            Some(a) => {
                st.master = crate::addr::to_bytes(a);
                st.family = crate::addr::family(a);
            }
            None => {
                st.master = [0; 16];
                st.family = 0;
            }
        }
        if *st != self.published {
            self.published = *st;
            let _ = self.agent.send(ToAgent::Status {
                slot: self.s.slot,
                status: *st,
            });
        }
    }
}

/// How long a notify command may run before it is killed.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(60);

/// Run the notify command (argv + name, old and new state, and the same in
/// the environment) without ever waiting on it here.
fn notify(cmd: Vec<String>, name: &str, from: State, to: State) {
    let name = name.to_string();
    tokio::spawn(async move {
        let env = [
            ("LB_VRRP_INSTANCE", name.as_str()),
            ("LB_VRRP_FROM", from.name()),
            ("LB_VRRP_TO", to.name()),
        ];
        let args = [name.as_str(), from.name(), to.name()];
        match exec::run_for(&cmd, &args, &env, NOTIFY_TIMEOUT).await {
            Ok(()) | Err(exec::Failure::Exit(_) | exec::Failure::Signal(_)) => {}
            Err(exec::Failure::Timeout(_)) => {
                tracing::warn!(command = ?cmd, "notify command still running after 60 s; killed")
            }
            Err(exec::Failure::Spawn(e)) => {
                tracing::warn!(command = ?cmd, error = %e, "notify command failed to start")
            }
        }
    });
}
