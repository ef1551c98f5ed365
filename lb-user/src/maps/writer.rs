//! The one writer of the maps. `apply` moves the maps to a desired state by
//! diff: only changed backends are rewritten, and a service's table is
//! rebuilt only when its usable backends or weights change. A new table goes
//! into the inactive slot first; one SERVICES write then flips the active
//! slot, so no packet sees half a table. The status maps (HEALTH, VRRP) are
//! written here too, also by diff: nobody else holds a map handle.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap as StdHashMap, VecDeque},
    net::IpAddr,
};

use aya::maps::{Array, DevMapHash, HashMap, MapData, MapError};
use lb_common::{
    AgentStats, BACKEND_CONFIGURED, BACKEND_HAS_MAC, BACKEND_HEALTHY, Backend, BackendHealth,
    OwnMac, SERVICE_STANDBY, ServiceKey, ServiceMeta, Tunnel, VrrpStatus, names, vrrp::MAX_VRRP,
};
use thiserror::Error;

use super::{Sizes, check_ports::CheckPorts};
use crate::{
    addr,
    health::Key,
    plan::{DesiredBackend, DesiredService},
    sched::{self, Weighted},
};

#[derive(Debug, Error)]
pub enum WriteError {
    #[error("map {0} missing from the object")]
    MissingMap(&'static str),
    #[error("map {0}: {1}")]
    Map(&'static str, MapError),
    #[error("devmap: {0}")]
    Devmap(#[from] aya::maps::xdp::XdpMapError),
    #[error("no free {0} id (raise max_{0}s)")]
    Full(&'static str),
}

type Result<T> = std::result::Result<T, WriteError>;

/// Ids handed out fresh first, so a just-freed id (still named by old flows)
/// is reused as late as possible.
#[derive(Debug)]
struct IdPool {
    next: u32,
    max: u32,
    free: VecDeque<u32>,
}

impl IdPool {
    fn new(max: u32) -> Self {
        Self {
            next: 0,
            max,
            free: VecDeque::new(),
        }
    }
    fn alloc(&mut self, what: &'static str) -> Result<u32> {
        if self.next < self.max {
            self.next += 1;
            return Ok(self.next - 1);
        }
        self.free.pop_front().ok_or(WriteError::Full(what))
    }
    fn release(&mut self, id: u32) {
        self.free.push_back(id);
    }
    /// Mark `ids` (found in live maps) as taken.
    fn adopt(&mut self, ids: &BTreeSet<u32>) {
        self.next = ids.last().map_or(0, |m| m + 1);
        self.free = (0..self.next).filter(|i| !ids.contains(i)).collect();
    }
}

#[derive(Debug)]
struct SvcState {
    meta: ServiceMeta,
    /// What each table slot holds, when known (unknown after a restart).
    slots: [Option<Vec<u32>>; 2],
    /// Each slot's fingerprint (slot_sum), when known: written with the
    /// slot, adopted after a restart.
    sums: [Option<u64>; 2],
    backends: BTreeMap<IpAddr, (u32, Backend)>,
}

pub struct Writer {
    services_map: HashMap<MapData, ServiceKey, ServiceMeta>,
    tables: Array<MapData, u32>,
    backends_map: Array<MapData, Backend>,
    devmap: DevMapHash<MapData>,
    health_map: Array<MapData, BackendHealth>,
    vrrp_map: Array<MapData, VrrpStatus>,
    agent_stats: Array<MapData, AgentStats>,
    own_mac: Array<MapData, OwnMac>,
    slot_sums: Array<MapData, u64>,
    tunnel: Array<MapData, Tunnel>,
    nat_config: Array<MapData, lb_common::nat::NatConfig>,
    config: Array<MapData, lb_common::DataplaneConfig>,
    /// What CONFIG holds.
    dataplane: lb_common::DataplaneConfig,
    sync_stats: Array<MapData, lb_common::sync::SyncPeerStats>,
    /// Backend id -> (service key, service id, address).
    names: StdHashMap<u32, (ServiceKey, u32, IpAddr)>,
    checks: CheckPorts,
    sizes: Sizes,
    services: BTreeMap<ServiceKey, SvcState>,
    service_ids: IdPool,
    backend_ids: IdPool,
    devmap_ifaces: BTreeSet<u32>,
    /// What HEALTH holds, by backend id; retiring a backend clears both.
    health_written: StdHashMap<u32, BackendHealth>,
    vrrp_written: [VrrpStatus; MAX_VRRP as usize],
    /// Map writes so far, as AGENT_STATS holds them for `lb show stats`.
    pub writes: AgentStats,
}

fn take<T: TryFrom<aya::maps::Map, Error = MapError>>(
    ebpf: &mut aya::Ebpf,
    name: &'static str,
) -> Result<T> {
    let map = ebpf.take_map(name).ok_or(WriteError::MissingMap(name))?;
    T::try_from(map).map_err(|e| WriteError::Map(name, e))
}

impl Writer {
    /// Take the writable maps out of a loaded object and adopt whatever
    /// services and backends a previous agent left in them.
    pub fn new(ebpf: &mut aya::Ebpf, sizes: Sizes) -> Result<Self> {
        let mut dp = Self {
            services_map: take(ebpf, names::SERVICES)?,
            tables: take(ebpf, names::TABLES)?,
            backends_map: take(ebpf, names::BACKENDS)?,
            devmap: take(ebpf, names::DEVMAP)?,
            health_map: take(ebpf, names::HEALTH)?,
            vrrp_map: take(ebpf, names::VRRP)?,
            agent_stats: take(ebpf, names::AGENT_STATS)?,
            own_mac: take(ebpf, names::OWN_MAC)?,
            slot_sums: take(ebpf, names::SLOT_SUMS)?,
            tunnel: take(ebpf, names::TUNNEL)?,
            nat_config: take(ebpf, names::NAT_CONFIG)?,
            config: take(ebpf, names::CONFIG)?,
            dataplane: lb_common::DataplaneConfig::default(),
            sync_stats: take(ebpf, names::SYNC_STATS)?,
            names: StdHashMap::new(),
            checks: CheckPorts::new(
                take(ebpf, names::CHECK_PORTS)?,
                take(ebpf, names::CHECK_PATH)?,
            ),
            sizes,
            services: BTreeMap::new(),
            service_ids: IdPool::new(sizes.max_services),
            backend_ids: IdPool::new(sizes.max_backends),
            devmap_ifaces: BTreeSet::new(),
            health_written: StdHashMap::new(),
            vrrp_written: [VrrpStatus::default(); MAX_VRRP as usize],
            writes: AgentStats::default(),
        };
        dp.dataplane = dp
            .config
            .get(&0, 0)
            .map_err(|e| WriteError::Map(names::CONFIG, e))?;
        dp.adopt()?;
        dp.rebuild_names();
        // A previous agent's instances would read as live ones.
        for slot in 0..MAX_VRRP {
            dp.vrrp_map
                .set(slot, VrrpStatus::default(), 0)
                .map_err(|e| WriteError::Map(names::VRRP, e))?;
        }
        Ok(dp)
    }

    /// Every backend id with its service (key, id) and address: how a
    /// flow event (ids) is named to a sync peer (whose ids differ). Kept
    /// up to date by `apply`, not rebuilt per event.
    pub fn backend_names(&self) -> &StdHashMap<u32, (ServiceKey, u32, IpAddr)> {
        &self.names
    }

    fn rebuild_names(&mut self) {
        self.names = self
            .services
            .iter()
            .flat_map(|(k, s)| {
                s.backends
                    .iter()
                    .map(move |(a, (id, _))| (*id, (*k, s.meta.id, *a)))
            })
            .collect();
    }

    /// Sync counters for `lb show sync`: the peers' in the first slots,
    /// batches from no peer in the last (MAX_SYNC_PEERS).
    pub fn write_sync_stats(
        &mut self,
        peers: &[lb_common::sync::SyncPeerStats],
        strangers: &lb_common::sync::SyncPeerStats,
    ) -> Result<()> {
        let slots = peers
            .iter()
            .enumerate()
            .map(|(i, s)| (i as u32, s))
            .chain([(lb_common::sync::MAX_SYNC_PEERS, strangers)]);
        for (i, s) in slots {
            self.sync_stats
                .set(i, s, 0)
                .map_err(|e| WriteError::Map(names::SYNC_STATS, e))?;
        }
        Ok(())
    }

    /// The id of `backend` in `service`, if configured.
    pub fn backend_id(&self, service: &ServiceKey, backend: IpAddr) -> Option<u32> {
        self.services
            .get(service)?
            .backends
            .get(&backend)
            .map(|(id, _)| *id)
    }

    /// What a previous agent left for each backend: its entry (flags, MAC)
    /// and its health record, so a restart carries on from there.
    /// (An all-zero health record is an unused slot: None.)
    pub fn adopted(&self) -> Vec<(Key, Backend, Option<BackendHealth>)> {
        self.services
            .iter()
            .flat_map(|(k, s)| {
                s.backends.iter().map(move |(a, (id, b))| {
                    let h = self
                        .health_map
                        .get(id, 0)
                        .ok()
                        .filter(|h| *h != BackendHealth::default());
                    ((*k, *a), *b, h)
                })
            })
            .collect()
    }

    /// The id of `service`, if configured.
    pub fn service_id(&self, service: &ServiceKey) -> Option<u32> {
        self.services.get(service).map(|s| s.meta.id)
    }

    /// A service's meta and one of its backends' (id, entry), as written.
    pub fn service_backend(
        &self,
        service: &ServiceKey,
        backend: IpAddr,
    ) -> Option<(ServiceMeta, u32, Backend)> {
        let s = self.services.get(service)?;
        let (id, b) = s.backends.get(&backend)?;
        Some((s.meta, *id, *b))
    }

    fn adopt(&mut self) -> Result<()> {
        let mut by_id: BTreeMap<u32, ServiceKey> = BTreeMap::new();
        for item in self.services_map.iter() {
            let (key, meta) = item.map_err(|e| WriteError::Map(names::SERVICES, e))?;
            by_id.insert(meta.id, key);
            let sum = |slot: u32| {
                self.slot_sums
                    .get(&(meta.id * 2 + slot), 0)
                    .ok()
                    .filter(|&s| s != 0)
            };
            let sums = [sum(0), sum(1)];
            self.services.insert(
                key,
                SvcState {
                    meta,
                    slots: [None, None],
                    sums,
                    backends: BTreeMap::new(),
                },
            );
        }
        let mut backend_ids = BTreeSet::new();
        for id in 0..self.sizes.max_backends {
            let b = self
                .backends_map
                .get(&id, 0)
                .map_err(|e| WriteError::Map(names::BACKENDS, e))?;
            if b.flags & BACKEND_CONFIGURED == 0 {
                continue;
            }
            match by_id.get(&b.service).and_then(|k| self.services.get_mut(k)) {
                Some(s) => {
                    s.backends
                        .insert(addr::from_bytes(&b.addr, b.family), (id, b));
                    backend_ids.insert(id);
                }
                // Orphan of a service that is gone: clear it.
                None => self.retire_backend(id)?,
            }
        }
        self.service_ids.adopt(&by_id.keys().copied().collect());
        self.backend_ids.adopt(&backend_ids);
        if !self.services.is_empty() {
            tracing::info!(
                services = self.services.len(),
                backends = backend_ids.len(),
                "adopted live maps from a previous agent"
            );
        }
        Ok(())
    }

    pub fn apply(&mut self, desired: &[DesiredService]) -> Result<()> {
        // What the program looks up only when CONFIG says some service
        // needs it (an all-ports service; NAT's replies and ICMP errors):
        // said before such a service is added, unsaid after it is removed.
        let derived = lb_common::CFG_ALL_PORTS | lb_common::CFG_NAT;
        let mut wanted_flags = 0;
        if desired.iter().any(|d| d.key.port == 0) {
            wanted_flags |= lb_common::CFG_ALL_PORTS;
        }
        if desired.iter().any(|d| d.forward.nat()) {
            wanted_flags |= lb_common::CFG_NAT;
        }
        self.set_dataplane_flags(self.dataplane.flags | wanted_flags)?;
        let wanted: BTreeSet<ServiceKey> = desired.iter().map(|d| d.key).collect();
        let gone: Vec<ServiceKey> = self
            .services
            .keys()
            .filter(|k| !wanted.contains(k))
            .copied()
            .collect();
        for key in gone {
            self.remove_service(&key)?;
        }
        let before = self.writes;
        for d in desired {
            self.apply_service(d)?;
        }
        let services = &self.services;
        self.checks.sync(desired, |d, addr| {
            services.get(&d.key)?.backends.get(&addr).map(|(id, _)| *id)
        })?;
        self.set_dataplane_flags(self.dataplane.flags & !derived | wanted_flags)?;
        // Only called when the desired state changed: cheap enough.
        self.rebuild_names();
        if self.writes != before {
            self.agent_stats
                .set(0, self.writes, 0)
                .map_err(|e| WriteError::Map(names::AGENT_STATS, e))?;
        }
        Ok(())
    }

    fn remove_service(&mut self, key: &ServiceKey) -> Result<()> {
        let Some(s) = self.services.remove(key) else {
            return Ok(());
        };
        // Unhook the VIP first, so no packet looks up a half-cleared service.
        match self.services_map.remove(key) {
            Ok(()) | Err(MapError::KeyNotFound) => {}
            Err(e) => return Err(WriteError::Map(names::SERVICES, e)),
        }
        self.writes.services += 1;
        for (id, _) in s.backends.values() {
            self.retire_backend(*id)?;
        }
        for slot in 0..2 {
            self.slot_sums
                .set(s.meta.id * 2 + slot, 0, 0)
                .map_err(|e| WriteError::Map(names::SLOT_SUMS, e))?;
        }
        self.service_ids.release(s.meta.id);
        tracing::info!(service = %addr::service_name(key), "service removed");
        Ok(())
    }

    fn apply_service(&mut self, d: &DesiredService) -> Result<()> {
        if !self.services.contains_key(&d.key) {
            let id = self.service_ids.alloc("service")?;
            let meta = ServiceMeta {
                id,
                table_base: id * 2 * self.sizes.table_size,
                table_size: self.sizes.table_size,
                active_slot: 0,
                ..Default::default()
            };
            self.services.insert(
                d.key,
                SvcState {
                    meta,
                    slots: [None, None],
                    sums: [None, None],
                    backends: BTreeMap::new(),
                },
            );
            tracing::info!(service = %addr::service_name(&d.key), id, "service added");
        }
        // Backends: add and update first, so the table never names a missing one.
        let mut ids = Vec::with_capacity(d.backends.len());
        for b in &d.backends {
            ids.push(self.upsert_backend(&d.key, b)?);
        }
        let s = &self.services[&d.key];
        let stale: Vec<(IpAddr, u32)> = s
            .backends
            .iter()
            .filter(|(a, _)| !d.backends.iter().any(|b| b.addr == **a))
            .map(|(a, (id, _))| (*a, *id))
            .collect();

        let table = self.build_table(d, &ids);
        let s = self.services.get_mut(&d.key).expect("inserted above");
        let mut meta = s.meta;
        meta.scheduler = d.scheduler.id();
        meta.forward = d.forward as u8;
        meta.hash_fields = d.hash as u8;
        meta.flags = if d.standby { SERVICE_STANDBY } else { 0 };
        let active = (s.meta.active_slot & 1) as usize;
        let sum = slot_sum(&table);
        let table_changed = match (&s.slots[active], s.sums[active]) {
            (Some(t), _) => *t != table,
            // After a restart: the same table is still in the active slot.
            (None, Some(known)) => known != sum,
            (None, None) => true,
        };
        if table_changed {
            let inactive = 1 - active;
            let base = meta.table_base + inactive as u32 * meta.table_size;
            let old = s.slots[inactive].take();
            let mut written = 0u64;
            for (i, &e) in table.iter().enumerate() {
                if old.as_ref().is_some_and(|o| o.get(i) == Some(&e)) {
                    continue;
                }
                self.tables
                    .set(base + i as u32, e, 0)
                    .map_err(|e| WriteError::Map(names::TABLES, e))?;
                written += 1;
            }
            meta.len[inactive] = table.len() as u32;
            s.slots[inactive] = Some(table);
            s.sums[inactive] = Some(sum);
            self.slot_sums
                .set(meta.id * 2 + inactive as u32, sum, 0)
                .map_err(|e| WriteError::Map(names::SLOT_SUMS, e))?;
            meta.active_slot = inactive as u32;
            self.writes.tables += 1;
            self.writes.table_entries += written;
        }
        if table_changed || meta != s.meta || self.services_map.get(&d.key, 0).is_err() {
            self.services_map
                .insert(d.key, meta, 0)
                .map_err(|e| WriteError::Map(names::SERVICES, e))?;
            s.meta = meta;
            self.writes.services += 1;
        }
        // Only now that the table no longer names them, retire removed backends.
        for (a, id) in stale {
            self.services
                .get_mut(&d.key)
                .expect("present")
                .backends
                .remove(&a);
            self.retire_backend(id)?;
            tracing::info!(service = %addr::service_name(&d.key), backend = %a, "backend removed");
        }
        Ok(())
    }

    /// The table slot for `d`, with backend ids.
    fn build_table(&self, d: &DesiredService, ids: &[u32]) -> Vec<u32> {
        let keys: Vec<[u8; 16]> = d.backends.iter().map(|b| addr::to_bytes(b.addr)).collect();
        let entries: Vec<Weighted<'_>> = d
            .backends
            .iter()
            .zip(&keys)
            .map(|(b, k)| Weighted {
                key: k,
                weight: if b.usable() { b.effective } else { 0 },
            })
            .collect();
        let rtts: Vec<u32> = d.backends.iter().map(|b| b.rtt_ms).collect();
        let mut t = sched::build(
            d.scheduler,
            &entries,
            self.sizes.table_size,
            d.virtual_nodes,
            &rtts,
        );
        sched::map_ids(d.scheduler, &mut t, |i| ids[i as usize]);
        t
    }

    fn upsert_backend(&mut self, key: &ServiceKey, b: &DesiredBackend) -> Result<u32> {
        let service_id = self.services[key].meta.id;
        let existing = self.services[key].backends.get(&b.addr).map(|(id, _)| *id);
        let id = match existing {
            Some(id) => id,
            None => {
                let id = self.backend_ids.alloc("backend")?;
                tracing::info!(service = %addr::service_name(key), backend = %b.addr, id, "backend added");
                id
            }
        };
        let mut flags = BACKEND_CONFIGURED;
        if b.mac.is_some() {
            flags |= BACKEND_HAS_MAC;
        }
        if b.healthy {
            flags |= BACKEND_HEALTHY;
        }
        let entry = Backend {
            addr: addr::to_bytes(b.addr),
            mac: b.mac.unwrap_or_default(),
            src_mac: b.src_mac,
            ifindex: b.ifindex,
            flags,
            service: service_id,
            weight: b.weight,
            family: addr::family(b.addr),
            _pad: 0,
            port: b.port,
            via: b.via.map(addr::to_bytes).unwrap_or_default(),
        };
        let s = self
            .services
            .get_mut(key)
            .expect("caller inserted the service");
        if s.backends.get(&b.addr).map(|(_, e)| e) != Some(&entry) {
            s.backends.insert(b.addr, (id, entry));
            self.write_backend(id, &entry)?;
        }
        if b.ifindex != 0 && self.devmap_ifaces.insert(b.ifindex) {
            self.devmap.insert(b.ifindex, b.ifindex, None, 0)?;
        }
        Ok(id)
    }

    /// Clear a backend's entries and free its id.
    fn retire_backend(&mut self, id: u32) -> Result<()> {
        self.write_backend(id, &Backend::default())?;
        self.health_map
            .set(id, BackendHealth::default(), 0)
            .map_err(|e| WriteError::Map(names::HEALTH, e))?;
        self.health_written.remove(&id);
        self.backend_ids.release(id);
        Ok(())
    }

    /// Publish check status for `lb show` (never read by XDP): each record
    /// of a configured backend that differs from what the map holds.
    pub fn write_health<'a>(
        &mut self,
        records: impl IntoIterator<Item = (&'a Key, &'a BackendHealth)>,
    ) -> Result<()> {
        for (key, rec) in records {
            let Some(id) = self.backend_id(&key.0, key.1) else {
                continue;
            };
            if self.health_written.get(&id) == Some(rec) {
                continue;
            }
            self.health_map
                .set(id, rec, 0)
                .map_err(|e| WriteError::Map(names::HEALTH, e))?;
            self.health_written.insert(id, *rec);
        }
        Ok(())
    }

    /// The interfaces the program runs on, the clients' first: their MACs
    /// (it balances only frames sent to them, and none before this is
    /// written; one not known yet ends the list there), and each in the
    /// devmap (a NAT reply leaves by the clients' side).
    pub fn write_interfaces(
        &mut self,
        links: &[Option<crate::agent::neigh::LinkInfo>],
    ) -> Result<()> {
        let map_err = |e| WriteError::Map(names::OWN_MAC, e);
        let mut ended = false;
        for l in links.iter().flatten().filter(|l| l.ifindex != 0) {
            if self.devmap_ifaces.insert(l.ifindex) {
                self.devmap.insert(l.ifindex, l.ifindex, None, 0)?;
            }
        }
        for i in 0..lb_common::MAX_INTERFACES {
            let want = match links.get(i as usize).copied().flatten() {
                Some(l) if !ended => OwnMac {
                    mac: l.mac,
                    set: 1,
                    _pad: 0,
                },
                _ => {
                    ended = true;
                    OwnMac::default()
                }
            };
            if self.own_mac.get(&i, 0).map_err(map_err)? != want {
                self.own_mac.set(i, want, 0).map_err(map_err)?;
            }
        }
        Ok(())
    }

    /// The new-flow limit per CPU (0: none) and whether flows are synced
    /// (reported to the agent at all).
    pub fn write_limits(&mut self, new_flows_per_cpu: u32, sync: bool) -> Result<()> {
        let mut c = self.dataplane;
        c.new_flows_per_cpu = new_flows_per_cpu;
        c.flags = if sync {
            c.flags | lb_common::CFG_SYNC
        } else {
            c.flags & !lb_common::CFG_SYNC
        };
        self.write_dataplane(c)
    }

    fn set_dataplane_flags(&mut self, flags: u32) -> Result<()> {
        let mut c = self.dataplane;
        c.flags = flags;
        self.write_dataplane(c)
    }

    fn write_dataplane(&mut self, c: lb_common::DataplaneConfig) -> Result<()> {
        if c != self.dataplane {
            self.config
                .set(0, c, 0)
                .map_err(|e| WriteError::Map(names::CONFIG, e))?;
            self.dataplane = c;
        }
        Ok(())
    }

    /// Full-NAT's sources and ports.
    pub fn write_nat(&mut self, c: &lb_common::nat::NatConfig) -> Result<()> {
        let map_err = |e| WriteError::Map(names::NAT_CONFIG, e);
        if self.nat_config.get(&0, 0).map_err(map_err)? != *c {
            self.nat_config.set(0, c, 0).map_err(map_err)?;
        }
        Ok(())
    }

    /// The check namespace's veth, for checks through the data path; its
    /// ifindex goes into the devmap (answers are redirected there).
    pub fn write_check_path(&mut self, p: &lb_common::check::CheckPath) -> Result<()> {
        if self.devmap_ifaces.insert(p.ifindex) {
            self.devmap.insert(p.ifindex, p.ifindex, None, 0)?;
        }
        self.checks.write_path(p)
    }

    /// Outer sources and GUE port of tunnel services.
    pub fn write_tunnel(&mut self, t: &Tunnel) -> Result<()> {
        let map_err = |e| WriteError::Map(names::TUNNEL, e);
        if self.tunnel.get(&0, 0).map_err(map_err)? != *t {
            self.tunnel.set(0, t, 0).map_err(map_err)?;
        }
        Ok(())
    }

    /// Publish a VRRP instance's status for `lb show vrrp`.
    pub fn write_vrrp(&mut self, slot: u32, status: &VrrpStatus) -> Result<()> {
        let Some(written) = self.vrrp_written.get_mut(slot as usize) else {
            return Ok(());
        };
        if written != status {
            self.vrrp_map
                .set(slot, status, 0)
                .map_err(|e| WriteError::Map(names::VRRP, e))?;
            *written = *status;
        }
        Ok(())
    }

    fn write_backend(&mut self, id: u32, b: &Backend) -> Result<()> {
        self.writes.backends += 1;
        self.backends_map
            .set(id, b, 0)
            .map_err(|e| WriteError::Map(names::BACKENDS, e))
    }
}

/// A slot's fingerprint: its length and entries (never 0, which means
/// unknown in SLOT_SUMS).
fn slot_sum(table: &[u32]) -> u64 {
    let h = lb_common::hash::bytes_hash(bytemuck::cast_slice(table), table.len() as u64);
    h.max(1)
}
