//! Read-only access to a running (or stopped, pinned) balancer's maps, for
//! `lb show`. Nothing here writes.

use std::path::{Path, PathBuf};

use aya::maps::{Array, HashMap, Map, MapData, PerCpuArray};
use lb_common::{
    AgentStats, BACKEND_CONFIGURED, Backend, BackendHealth, Counter, FlowKey, FlowValue, Reason,
    ServiceKey, ServiceMeta, VrrpStatus, names,
};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum PinnedError {
    #[error(
        "no pinned maps at {0}: is `lb run` running (or stopped with --keep-pinned)? \
         Point at its pins with -c CONFIG or --pin-dir DIR"
    )]
    NotFound(PathBuf),
    #[error("map {0}: {1}")]
    Map(&'static str, aya::maps::MapError),
}

type Result<T> = std::result::Result<T, PinnedError>;

pub struct Pinned {
    services: HashMap<MapData, ServiceKey, ServiceMeta>,
    backends: Array<MapData, Backend>,
    tables: Array<MapData, u32>,
    flows: HashMap<MapData, FlowKey, FlowValue>,
    reasons: PerCpuArray<MapData, u64>,
    service_stats: PerCpuArray<MapData, Counter>,
    backend_stats: PerCpuArray<MapData, Counter>,
    /// Absent in pins left by an agent older than health checks.
    health: Option<Array<MapData, BackendHealth>>,
    vrrp: Option<Array<MapData, VrrpStatus>>,
    agent_stats: Option<Array<MapData, AgentStats>>,
    active: Option<Array<MapData, u64>>,
    sync: Option<Array<MapData, lb_common::sync::SyncPeerStats>>,
    nat: Option<HashMap<MapData, FlowKey, lb_common::nat::NatEntry>>,
}

fn open<T: TryFrom<Map, Error = aya::maps::MapError>>(dir: &Path, name: &'static str) -> Result<T> {
    let path = dir.join(name);
    if !path.exists() {
        return Err(PinnedError::NotFound(dir.to_path_buf()));
    }
    let data = MapData::from_pin(&path).map_err(|e| PinnedError::Map(name, e))?;
    let map = Map::from_map_data(data).map_err(|e| PinnedError::Map(name, e))?;
    T::try_from(map).map_err(|e| PinnedError::Map(name, e))
}

fn sum(c: impl IntoIterator<Item = Counter>) -> Counter {
    c.into_iter().fold(Counter::default(), |a, b| Counter {
        packets: a.packets + b.packets,
        bytes: a.bytes + b.bytes,
    })
}

impl Pinned {
    /// The pins under an agent's `pin_dir` (this layout's directory), or
    /// in `dir` itself when it is a layout directory.
    pub fn open(dir: &Path) -> Result<Self> {
        let layout = super::loader::layout_dir(dir);
        let dir = if layout.join(names::SERVICES).exists() {
            &layout
        } else {
            dir
        };
        Ok(Self {
            services: open(dir, names::SERVICES)?,
            backends: open(dir, names::BACKENDS)?,
            tables: open(dir, names::TABLES)?,
            flows: open(dir, names::FLOWS)?,
            reasons: open(dir, names::REASON_STATS)?,
            service_stats: open(dir, names::SERVICE_STATS)?,
            backend_stats: open(dir, names::BACKEND_STATS)?,
            health: open(dir, names::HEALTH).ok(),
            vrrp: open(dir, names::VRRP).ok(),
            agent_stats: open(dir, names::AGENT_STATS).ok(),
            active: open(dir, names::ACTIVE).ok(),
            sync: open(dir, names::SYNC_STATS).ok(),
            nat: open(dir, names::NAT).ok(),
        })
    }

    /// Services sorted by key.
    pub fn services(&self) -> Result<Vec<(ServiceKey, ServiceMeta)>> {
        let mut v: Vec<_> = self
            .services
            .iter()
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| PinnedError::Map(names::SERVICES, e))?;
        v.sort_by_key(|(k, _)| (k.family, k.addr, k.port, k.proto));
        Ok(v)
    }

    /// Configured backends of service `id`, as (backend id, entry), by address.
    pub fn backends(&self, service: u32) -> Result<Vec<(u32, Backend)>> {
        let mut v = Vec::new();
        for id in 0..self.backends.len() {
            let b = self
                .backends
                .get(&id, 0)
                .map_err(|e| PinnedError::Map(names::BACKENDS, e))?;
            if b.flags & BACKEND_CONFIGURED != 0 && b.service == service {
                v.push((id, b));
            }
        }
        v.sort_by_key(|(_, b)| (b.family, b.addr));
        Ok(v)
    }

    pub fn backend(&self, id: u32) -> Option<Backend> {
        self.backends.get(&id, 0).ok()
    }

    /// The entries in use in a service's active table slot.
    pub fn table(&self, meta: &ServiceMeta) -> Result<Vec<u32>> {
        let base = meta.active_base();
        (0..meta.active_len().min(meta.table_size))
            .map(|i| {
                self.tables
                    .get(&(base + i), 0)
                    .map_err(|e| PinnedError::Map(names::TABLES, e))
            })
            .collect()
    }

    /// Up to `limit` flows (the LRU may hold a million).
    pub fn flows(&self, limit: usize) -> Result<Vec<(FlowKey, FlowValue)>> {
        self.flows
            .iter()
            .take(limit)
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| PinnedError::Map(names::FLOWS, e))
    }

    /// NAT connections' reverse entries: (reply key, entry), at most `limit`.
    pub fn nat(&self, limit: usize) -> Result<Vec<(FlowKey, lb_common::nat::NatEntry)>> {
        let Some(m) = &self.nat else {
            return Ok(Vec::new());
        };
        m.iter()
            .take(limit)
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| PinnedError::Map(names::NAT, e))
    }

    /// Entries in the flow table now (a walk of every key).
    pub fn flow_count(&self) -> u64 {
        self.flows.keys().filter(|k| k.is_ok()).count() as u64
    }

    pub fn reason(&self, r: Reason) -> u64 {
        self.reasons
            .get(&(r as u32), 0)
            .map(|v| v.iter().sum())
            .unwrap_or(0)
    }

    pub fn service_stats(&self, id: u32) -> Counter {
        self.service_stats
            .get(&id, 0)
            .map(|v| sum(v.iter().copied()))
            .unwrap_or_default()
    }

    /// Flows the data plane counts as open on backend `id`.
    pub fn active(&self, id: u32) -> u64 {
        self.active
            .as_ref()
            .and_then(|m| m.get(&id, 0).ok())
            .map_or(0, |v| (v as i64).max(0) as u64)
    }

    /// The agent's map writes so far.
    pub fn agent_stats(&self) -> AgentStats {
        self.agent_stats
            .as_ref()
            .and_then(|m| m.get(&0, 0).ok())
            .unwrap_or_default()
    }

    /// The VRRP instances the agent runs.
    pub fn vrrp(&self) -> Vec<VrrpStatus> {
        let Some(m) = &self.vrrp else {
            return Vec::new();
        };
        (0..m.len())
            .filter_map(|i| m.get(&i, 0).ok())
            .filter(|s| s.configured != 0)
            .collect()
    }

    /// Sync counters: each configured peer's, then (None for its address)
    /// batches from no peer.
    pub fn sync(&self) -> Vec<(Option<std::net::IpAddr>, lb_common::sync::SyncPeerStats)> {
        let Some(m) = &self.sync else {
            return Vec::new();
        };
        let peers: Vec<_> = (0..m.len())
            .filter_map(|i| m.get(&i, 0).ok())
            .filter(|s| s.set != 0)
            .map(|s| (Some(crate::addr::from_bytes(&s.addr, s.family)), s))
            .collect();
        if peers.is_empty() {
            return peers;
        }
        let strangers = m
            .get(&lb_common::sync::MAX_SYNC_PEERS, 0)
            .unwrap_or_default();
        peers.into_iter().chain([(None, strangers)]).collect()
    }

    /// Check status of backend `id`, if the agent published one (an
    /// all-zero record is an unused slot).
    pub fn health(&self, id: u32) -> Option<BackendHealth> {
        self.health
            .as_ref()?
            .get(&id, 0)
            .ok()
            .filter(|h| *h != BackendHealth::default())
    }

    pub fn backend_stats(&self, id: u32) -> Counter {
        self.backend_stats
            .get(&id, 0)
            .map(|v| sum(v.iter().copied()))
            .unwrap_or_default()
    }
}
