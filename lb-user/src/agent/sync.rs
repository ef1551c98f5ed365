//! The agent's half of flow sync: it drains the data plane's flow events
//! (the FLOW_EVENTS ring buffer), names them for the peers, and writes the
//! peers' flows into its own flow table (it is the only map writer; the
//! sync task owns the socket).

use std::{
    collections::{BTreeSet, HashMap as StdHashMap},
    net::IpAddr,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use aya::maps::{Array, HashMap, Map, MapData, RingBuf};
use lb_common::{
    Backend, FLOW_CLOSING, FlowKey, FlowValue, Forward, ServiceMeta, names,
    nat::NatConfig,
    sync::{FLOW_CLOSED, FLOW_OPENED, FlowEvent},
};
use tokio::{io::unix::AsyncFd, sync::mpsc};

use super::Agent;
use crate::sync::{Incoming, Outgoing, Sync, codec::Entry};

/// Queue depths between the agent and the sync task.
const QUEUE: usize = 1024;

pub enum SyncEvent {
    /// Flows this node's data plane opened or closed.
    Local(Vec<FlowEvent>),
    Peer(Incoming),
}

/// The ring buffer, and when `[sync]` is configured, the link to the sync
/// task and the maps the peers' flows are written to.
pub struct FlowSync {
    ring: AsyncFd<RingBuf<MapData>>,
    link: Option<Link>,
    /// Peers whose dump has not arrived yet, and how long mastership may
    /// wait for them: a starting node takes over with its peers' flows.
    awaiting: BTreeSet<IpAddr>,
    deadline: Instant,
}

/// How long a starting node's first mastership waits for its peers' dumps.
const DUMP_WAIT: Duration = Duration::from_secs(1);

struct Link {
    tx: mpsc::Sender<Outgoing>,
    rx: mpsc::Receiver<Incoming>,
    /// NAT's way back, for a peer's NAT flows.
    nat: Option<HashMap<MapData, FlowKey, lb_common::nat::NatEntry>>,
    flows: HashMap<MapData, FlowKey, FlowValue>,
    active: Array<MapData, u64>,
    /// Received flows naming a service or backend this node lacks.
    skipped: StdHashMap<IpAddr, u64>,
}

impl FlowSync {
    /// `ring` is the object's FLOW_EVENTS; the flow maps are opened from
    /// `layout_dir`'s pins.
    pub fn start(
        ring: Map,
        layout_dir: &Path,
        cfg: Option<&crate::config::SyncCfg>,
    ) -> Result<Self> {
        // SAFETY: the RingBuf owns its descriptor and is only dropped
        // with (inside) the AsyncFd.
        let ring = unsafe { AsyncFd::register(RingBuf::try_from(ring)?) }
            .map_err(|e| anyhow::anyhow!("polling FLOW_EVENTS: {}", e.into_parts().1))?;
        let link = match cfg {
            None => None,
            Some(cfg) => {
                let open = |name: &str| {
                    MapData::from_pin(layout_dir.join(name))
                        .with_context(|| format!("opening the pinned {name}"))
                };
                let flows = HashMap::try_from(Map::LruHashMap(open(names::FLOWS)?))?;
                let active = Array::try_from(Map::Array(open(names::ACTIVE)?))?;
                let nat = HashMap::try_from(Map::LruHashMap(open(names::NAT)?)).ok();
                let (out_tx, out_rx) = mpsc::channel(QUEUE);
                let (in_tx, in_rx) = mpsc::channel(QUEUE);
                let task = Sync::new(cfg)?;
                tokio::spawn(task.run(out_rx, in_tx));
                tracing::info!(peers = ?cfg.peers, port = cfg.port, keyed = cfg.key.is_some(), "flow sync started");
                Some(Link {
                    tx: out_tx,
                    rx: in_rx,
                    flows,
                    active,
                    nat,
                    skipped: StdHashMap::new(),
                })
            }
        };
        Ok(FlowSync {
            ring,
            awaiting: cfg
                .map(|c| c.peers.iter().copied().collect())
                .unwrap_or_default(),
            link,
            deadline: Instant::now() + DUMP_WAIT,
        })
    }

    /// Whether mastership may start: every peer's dump is in, or the wait
    /// is over.
    pub fn ready(&self) -> bool {
        self.awaiting.is_empty() || Instant::now() >= self.deadline
    }

    /// When waiting for dumps ends at the latest.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The next thing to do: local flow events, or a peer's message.
    pub async fn next(&mut self) -> SyncEvent {
        let peer = async {
            match &mut self.link {
                Some(l) => match l.rx.recv().await {
                    Some(m) => m,
                    None => std::future::pending().await,
                },
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            m = peer => SyncEvent::Peer(m),
            g = self.ring.readable_mut() => {
                let mut events = Vec::new();
                if let Ok(mut g) = g {
                    let rb = g.get_inner_mut();
                    while let Some(item) = rb.next() {
                        if item.len() >= size_of::<FlowEvent>() {
                            events.push(bytemuck::pod_read_unaligned(&item[..size_of::<FlowEvent>()]));
                        }
                    }
                    g.clear_ready();
                }
                SyncEvent::Local(events)
            }
        }
    }
}

impl Agent {
    pub(super) fn on_flow_sync(&mut self, ev: SyncEvent) {
        let Some(link) = &mut self.flow_sync.link else {
            // No peers: the events are drained so the ring never fills.
            return;
        };
        match ev {
            SyncEvent::Local(events) => {
                let names = self.dp.backend_names();
                let entries: Vec<Entry> = events
                    .iter()
                    .filter_map(|e| {
                        let (service, sid, addr) = names.get(&e.backend)?;
                        // A flow of a service removed since is not synced.
                        (*sid == e.service).then(|| entry(e.key, *service, *addr, e.kind, e.nat))
                    })
                    .collect();
                if !entries.is_empty() && link.tx.try_send(Outgoing::Flows(entries)).is_err() {
                    tracing::debug!("sync queue full: flows not sent");
                }
            }
            SyncEvent::Peer(Incoming::Flows { from, entries }) => {
                let dp = &self.dp;
                let nat = self.cfg.agent.nat.record();
                let mut skipped = 0;
                tokio::task::block_in_place(|| {
                    for e in &entries {
                        match dp.service_backend(&e.service, e.backend_addr()) {
                            Some((meta, id, b)) => link.write(e, &meta, id, &b, &nat),
                            None => skipped += 1,
                        }
                    }
                });
                *link.skipped.entry(from).or_default() += skipped;
            }
            SyncEvent::Peer(Incoming::DumpDone { from }) => {
                tracing::info!(peer = %from, "flow dump received");
                self.flow_sync.awaiting.remove(&from);
                self.release_masters();
            }
            SyncEvent::Peer(Incoming::DumpRequest { from }) => {
                let names = self.dp.backend_names();
                let entries: Vec<Entry> = tokio::task::block_in_place(|| {
                    link.flows
                        .iter()
                        .filter_map(|r| r.ok())
                        .filter(|(_, v)| v.flags & FLOW_CLOSING == 0)
                        .filter_map(|(k, v)| {
                            let (service, sid, addr) = names.get(&v.backend)?;
                            (*sid == v.service)
                                .then(|| entry(k, *service, *addr, FLOW_OPENED, v.nat))
                        })
                        .collect()
                });
                tracing::info!(peer = %from, flows = entries.len(), "sending a flow dump");
                let _ = link.tx.try_send(Outgoing::Dump { to: from, entries });
            }
            SyncEvent::Peer(Incoming::Stats {
                mut peers,
                strangers,
            }) => {
                for s in &mut peers {
                    let a = crate::addr::from_bytes(&s.addr, s.family);
                    s.flows_skipped = link.skipped.get(&a).copied().unwrap_or(0);
                }
                if let Err(e) = self.dp.write_sync_stats(&peers, &strangers) {
                    tracing::warn!(error = %e, "writing sync counters failed");
                }
            }
        }
    }
}

fn entry(
    flow: FlowKey,
    service: lb_common::ServiceKey,
    backend: IpAddr,
    kind: u8,
    nat: u32,
) -> Entry {
    Entry {
        flow,
        service,
        backend: crate::addr::to_bytes(backend),
        backend_family: crate::addr::family(backend),
        kind,
        snat_port: lb_common::nat::snat_unpack(nat).1,
    }
}

impl Link {
    /// A peer's flow into this node's table, with its active count (and,
    /// for NAT, its way back).
    fn write(&mut self, e: &Entry, meta: &ServiceMeta, backend: u32, b: &Backend, nat: &NatConfig) {
        let service = meta.id;
        let old = self.flows.get(&e.flow, 0).ok();
        let open = |v: &FlowValue| v.flags & FLOW_CLOSING == 0;
        let mut value = FlowValue {
            backend,
            service,
            flags: if e.kind == FLOW_CLOSED {
                FLOW_CLOSING
            } else {
                0
            },
            ..Default::default()
        };
        if Forward::from_id(meta.forward).is_some_and(|f| f.nat()) {
            value.nat = self.write_nat(e, meta, backend, b, nat);
        }
        if old == Some(value) {
            return;
        }
        if e.kind == FLOW_CLOSED && old.is_none() {
            // Never heard of: nothing to close.
            return;
        }
        // A full LRU evicts its oldest entry, as for local flows.
        if self.flows.insert(e.flow, value, 0).is_err() {
            return;
        }
        if let Some(v) = old.filter(open) {
            self.add_active(v.backend, -1);
        }
        if open(&value) {
            self.add_active(backend, 1);
        }
    }

    /// The reverse entry of a peer's NAT flow, as this node's program would
    /// make it; full-NAT's `nat` (source index from the flow hash, the
    /// peer's port).
    fn write_nat(
        &mut self,
        e: &Entry,
        meta: &ServiceMeta,
        backend: u32,
        b: &Backend,
        nat: &NatConfig,
    ) -> u32 {
        use lb_common::nat::{NAT_CLOSING, forward_rewrite, reply_entry, reply_key, snat_pack};
        let Some(map) = &mut self.nat else {
            return 0;
        };
        let v6 = e.flow.family == lb_common::FAMILY_V6;
        let (mut packed, mut snat) = (0, None);
        if meta.forward == lb_common::FORWARD_FULLNAT {
            let hash = lb_common::flow_hash(&e.flow, lb_common::HASH_5TUPLE);
            let Some((idx, src)) = nat.source(v6, hash).filter(|_| e.snat_port != 0) else {
                return 0;
            };
            packed = snat_pack(idx, e.snat_port);
            snat = Some((src, e.snat_port));
        }
        let to = forward_rewrite(&e.flow, &b.addr, b.port, snat);
        let mut r = reply_entry(&e.flow, backend, meta.id, super::nat_sweep::now_ns());
        if e.kind == FLOW_CLOSED {
            r.flags = NAT_CLOSING;
        }
        let _ = map.insert(reply_key(&to, e.flow.proto, e.flow.family), r, 0);
        packed
    }

    /// ACTIVE from user space: the data plane adds atomically on its own
    /// flows; these are the peer's, which this node's program is not
    /// touching (it does not hold their VIP), so read-modify-write is safe
    /// enough.
    fn add_active(&mut self, backend: u32, d: i64) {
        if let Ok(n) = self.active.get(&backend, 0) {
            let _ = self.active.set(backend, (n as i64 + d).max(0) as u64, 0);
        }
    }
}
