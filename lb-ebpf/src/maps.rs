//! The maps, sized for defaults; the agent resizes them at load time.

use aya_ebpf::{
    macros::map,
    maps::{Array, DevMapHash, HashMap, LruHashMap, PerCpuArray},
};
use lb_common::{
    AgentStats, Backend, BackendHealth, Counter, FlowKey, FlowValue, IcmpBudget, OwnMac,
    ServiceKey, ServiceMeta, Tunnel, VrrpStatus,
    names::{DEFAULT_FLOWS, DEFAULT_MAX_BACKENDS, DEFAULT_MAX_SERVICES, DEFAULT_TABLE_SIZE},
    stats::REASON_COUNT,
    vrrp::MAX_VRRP,
};

#[map]
pub static SERVICES: HashMap<ServiceKey, ServiceMeta> = HashMap::pinned(DEFAULT_MAX_SERVICES, 0);

// One table for all CPUs: a flow's packets may arrive on different CPUs.
#[map]
pub static FLOWS: LruHashMap<FlowKey, FlowValue> = LruHashMap::pinned(DEFAULT_FLOWS, 0);

#[map]
pub static TABLES: Array<u32> = Array::pinned(DEFAULT_MAX_SERVICES * 2 * DEFAULT_TABLE_SIZE, 0);

#[map]
pub static BACKENDS: Array<Backend> = Array::pinned(DEFAULT_MAX_BACKENDS, 0);

#[map]
pub static DEVMAP: DevMapHash = DevMapHash::pinned(64, 0);

#[map]
pub static REASON_STATS: PerCpuArray<u64> = PerCpuArray::pinned(REASON_COUNT, 0);

#[map]
pub static SERVICE_STATS: PerCpuArray<Counter> = PerCpuArray::pinned(DEFAULT_MAX_SERVICES, 0);

#[map]
pub static BACKEND_STATS: PerCpuArray<Counter> = PerCpuArray::pinned(DEFAULT_MAX_BACKENDS, 0);

// Written and read only by user space (check results for `lb show`); it lives
// in the object so it is created, sized and pinned with the others.
#[map]
pub static HEALTH: Array<BackendHealth> = Array::pinned(DEFAULT_MAX_BACKENDS, 0);

// User space only as well: VRRP instance status for `lb show vrrp`.
#[map]
pub static VRRP: Array<VrrpStatus> = Array::pinned(MAX_VRRP, 0);

// Where each service's wrr walk is, per CPU (no atomics on the fast path).
#[map]
pub static RR_STATE: PerCpuArray<u32> = PerCpuArray::pinned(DEFAULT_MAX_SERVICES, 0);

// User space only: the agent's map-write counters.
#[map]
pub static AGENT_STATS: Array<AgentStats> = Array::pinned(1, 0);

// User space only: table slot fingerprints.
#[map]
pub static SLOT_SUMS: Array<u64> = Array::pinned(DEFAULT_MAX_SERVICES * 2, 0);

// The interface's own MAC: only frames sent to it are balanced.
#[map]
pub static OWN_MAC: Array<OwnMac> = Array::pinned(lb_common::MAX_INTERFACES, 0);

// Active flows per backend id, shared by all CPUs (atomic adds): what
// least-conn and shortest-response compare.
#[map]
pub static ACTIVE: Array<u64> = Array::pinned(DEFAULT_MAX_BACKENDS, 0);

// Outer sources and the GUE port of tunnel services.
#[map]
pub static TUNNEL: Array<Tunnel> = Array::pinned(1, 0);

// ICMP too-big answers sent this second, per CPU.
#[map]
pub static ICMP_BUDGET: PerCpuArray<IcmpBudget> = PerCpuArray::pinned(1, 0);

// The FIB request of a tunnelled packet: 64 bytes the stack cannot spare.
#[map]
pub static FIB_SCRATCH: PerCpuArray<aya_ebpf::bindings::bpf_fib_lookup> =
    PerCpuArray::with_max_entries(1, 0);

// Dataplane checks: which backend each check source port is for.
#[map]
pub static CHECK_PORTS: Array<lb_common::check::CheckPort> =
    Array::pinned(lb_common::check::CHECK_PORTS_LEN, 0);

// Dataplane checks: the check namespace's veth.
#[map]
pub static CHECK_PATH: Array<lb_common::check::CheckPath> = Array::pinned(1, 0);

// New and closed flows for the agent to sync to its peers.
#[map]
pub static FLOW_EVENTS: aya_ebpf::maps::RingBuf =
    aya_ebpf::maps::RingBuf::pinned(lb_common::sync::FLOW_EVENTS_BYTES, 0);

// User space only: per-peer sync counters for `lb show sync`.
#[map]
pub static SYNC_STATS: Array<lb_common::sync::SyncPeerStats> =
    Array::pinned(lb_common::sync::MAX_SYNC_PEERS + 1, 0);

// NAT connections' way back: reply 5-tuple -> original addresses.
#[map]
pub static NAT: LruHashMap<FlowKey, lb_common::nat::NatEntry> =
    LruHashMap::pinned(DEFAULT_FLOWS, 0);

// Full-NAT's sources and ports; whether any service translates.
#[map]
pub static NAT_CONFIG: Array<lb_common::nat::NatConfig> = Array::pinned(1, 0);

// A NAT job's keys and rewrites, off the stack.
#[map]
pub static NAT_SCRATCH: PerCpuArray<crate::nat::Work> = PerCpuArray::with_max_entries(1, 0);

// What the data plane needs of the whole config.
#[map]
pub static CONFIG: Array<lb_common::DataplaneConfig> = Array::pinned(1, 0);

// New flows remembered this second, per CPU (the flood limit).
#[map]
pub static NEW_FLOWS: PerCpuArray<lb_common::RateWindow> = PerCpuArray::pinned(1, 0);

// The forwarding-path benchmark's generator state and sink counter.
#[map]
pub static GEN: PerCpuArray<lb_common::bench::GenState> = PerCpuArray::pinned(1, 0);

#[map]
pub static SINK_COUNT: PerCpuArray<u64> = PerCpuArray::pinned(1, 0);
