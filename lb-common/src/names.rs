//! Map names and pin locations: the only place they are spelled.

/// (vip, port, proto) -> ServiceMeta.
pub const SERVICES: &str = "SERVICES";
/// Flow 5-tuple -> FlowValue (LRU, shared by all CPUs).
pub const FLOWS: &str = "FLOWS";
/// Lookup tables, two slots of `table_size` entries per service.
pub const TABLES: &str = "TABLES";
/// Backend id -> Backend.
pub const BACKENDS: &str = "BACKENDS";
/// Egress ifindex -> ifindex, for XDP_REDIRECT to another interface.
pub const DEVMAP: &str = "DEVMAP";
/// Per-CPU counters per Reason.
pub const REASON_STATS: &str = "REASON_STATS";
/// Per-CPU packets/bytes per service id.
pub const SERVICE_STATS: &str = "SERVICE_STATS";
/// Per-CPU packets/bytes per backend id.
pub const BACKEND_STATS: &str = "BACKEND_STATS";

/// Per-CPU position in each service's wrr sequence, by service id.
pub const RR_STATE: &str = "RR_STATE";

/// Backend id -> active flows (opened and not yet closed by the client).
pub const ACTIVE: &str = "ACTIVE";

/// One AgentStats: the agent's map writes.
pub const AGENT_STATS: &str = "AGENT_STATS";

/// Backend id -> BackendHealth: check results for `lb show` (agent-only).
pub const HEALTH: &str = "HEALTH";

/// Instance slot -> VrrpStatus, for `lb show vrrp` (agent-only).
pub const VRRP: &str = "VRRP";

/// The Ethernet address of the interface the program runs on (one OwnMac):
/// only frames sent to it are balanced.
pub const OWN_MAC: &str = "OWN_MAC";

/// A fingerprint of each table slot's content, by service id x 2 + slot
/// (agent-only): a restarted agent skips rewriting a table it would build
/// the same.
pub const SLOT_SUMS: &str = "SLOT_SUMS";

/// One Tunnel: outer sources and the GUE port for tunnel services.
pub const TUNNEL: &str = "TUNNEL";

/// Per-CPU IcmpBudget: the ICMP too-big rate limit.
pub const ICMP_BUDGET: &str = "ICMP_BUDGET";

/// Check source port - CHECK_PORT_BASE -> CheckPort (dataplane checks).
pub const CHECK_PORTS: &str = "CHECK_PORTS";
/// One CheckPath: the check namespace's veth.
pub const CHECK_PATH: &str = "CHECK_PATH";

/// Ring buffer of FlowEvents: flows to sync to the peers.
pub const FLOW_EVENTS: &str = "FLOW_EVENTS";
/// Peer slot -> SyncPeerStats, for `lb show sync` (agent-only).
pub const SYNC_STATS: &str = "SYNC_STATS";

/// Reply 5-tuple -> NatEntry (LRU): NAT connections' way back.
pub const NAT: &str = "NAT";
/// One NatConfig: full-NAT's sources and ports.
pub const NAT_CONFIG: &str = "NAT_CONFIG";

/// One DataplaneConfig.
pub const CONFIG: &str = "CONFIG";
/// Per-CPU RateWindow: new flows remembered this second.
pub const NEW_FLOWS: &str = "NEW_FLOWS";

/// The forwarding-path benchmark's generator state (per CPU) and sink
/// counter (per CPU); never used by the balancer.
pub const GEN: &str = "GEN";
pub const SINK_COUNT: &str = "SINK_COUNT";

/// Every map, in the order `lb show` and cleanup walk them.
pub const ALL_MAPS: [&str; 27] = [
    SERVICES,
    FLOWS,
    TABLES,
    BACKENDS,
    DEVMAP,
    REASON_STATS,
    SERVICE_STATS,
    BACKEND_STATS,
    HEALTH,
    VRRP,
    RR_STATE,
    AGENT_STATS,
    ACTIVE,
    OWN_MAC,
    SLOT_SUMS,
    TUNNEL,
    ICMP_BUDGET,
    CHECK_PORTS,
    CHECK_PATH,
    FLOW_EVENTS,
    SYNC_STATS,
    NAT,
    NAT_CONFIG,
    CONFIG,
    NEW_FLOWS,
    GEN,
    SINK_COUNT,
];

/// The XDP entry point.
pub const PROG_LB: &str = "lb_xdp";
/// Passes every frame: the benchmark's empty baseline, and what the lab
/// attaches to a veth peer so frames sent there with XDP_TX are received.
pub const PROG_XDP_PASS: &str = "xdp_pass";
/// Benchmark floor: parse to L4 and XDP_TX.
pub const PROG_BENCH_FLOOR: &str = "bench_floor";
/// The forwarding-path benchmark's frame generator (live frames) and sink.
pub const PROG_BENCH_GEN: &str = "bench_gen";
pub const PROG_BENCH_SINK: &str = "bench_sink";

/// On the check namespace's veth: forwards dataplane checks to their backend.
pub const PROG_CHECK_OUT: &str = "lb_check_out";

/// The backend side (`lb realserver`): its own object, `lb-decap`.
pub const PROG_DECAP: &str = "lb_decap";
/// ServiceKey (VIP, port 0, proto 0) -> 1: inner destinations to decapsulate.
pub const DECAP_VIPS: &str = "DECAP_VIPS";
/// One DecapConfig.
pub const DECAP_CONFIG: &str = "DECAP_CONFIG";
/// Per-CPU counters per DecapReason.
pub const DECAP_STATS: &str = "DECAP_STATS";
/// `lb realserver`'s pins, one directory per interface below it.
pub const DEFAULT_REALSERVER_PIN_DIR: &str = "/sys/fs/bpf/lb-realserver";

/// Default pin directory. The maps live in its subdirectory
/// `v{LAYOUT_VERSION}`; an agent that finds another version's pins there
/// migrates their state (see the agent's maps/migrate.rs).
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/lb";

/// The map layout's version: bump it when any map's key, value or size
/// changes, since a reused pin with another layout fails to load
/// ("parameter mismatch"). Layouts change by appending fields, so a newer
/// agent migrates an older one's entries by their common prefix.
/// v2: REASON_STATS grew pass_standby; ServiceMeta grew per-slot lengths.
/// v3: REASON_STATS grew pass_not_ours; OWN_MAC, SLOT_SUMS.
/// v4: REASON_STATS grew the tunnel and check reasons; TUNNEL, ICMP_BUDGET,
/// CHECK_PORTS, CHECK_PATH, FLOW_EVENTS, SYNC_STATS; Backend grew `via`.
/// v5: REASON_STATS grew the NAT reasons and `unremembered`; NAT,
/// NAT_CONFIG, CONFIG, NEW_FLOWS; OWN_MAC has an entry per interface;
/// Backend grew `port`, FlowValue `nat`.
#[cfg(not(feature = "layout-test"))]
pub const LAYOUT_VERSION: u32 = 5;
/// A build whose FlowValue has one more field, for the upgrade test.
#[cfg(feature = "layout-test")]
pub const LAYOUT_VERSION: u32 = 1003;
/// The pinned XDP link, inside the pin directory.
pub const LINK_PIN: &str = "link";

/// Compile-time sizes; the agent overrides the sizes of FLOWS, TABLES,
/// BACKENDS and the stats maps from its config at load time.
pub const DEFAULT_FLOWS: u32 = 1_048_576;
pub const DEFAULT_MAX_SERVICES: u32 = 64;
pub const DEFAULT_MAX_BACKENDS: u32 = 4096;
/// The most `max_backends` may be (a tunnel job packs an id in 24 bits).
pub const MAX_BACKENDS: u32 = 1 << 20;
/// Maglev table size M: prime, about 65 x 1000 backends.
pub const DEFAULT_TABLE_SIZE: u32 = 65_537;
