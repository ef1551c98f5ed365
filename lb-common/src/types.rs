//! Map keys and values. Addresses are 16 bytes; IPv4 uses the first 4 and
//! leaves the rest zero. Ports are in host byte order.

use bytemuck::{Pod, Zeroable};

pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// `FlowValue::flags`: the client sent FIN or RST; no longer active.
pub const FLOW_CLOSING: u32 = 1;

/// `ServiceMeta::flags`: the VIP belongs to a VRRP instance that is not
/// master here; its packets pass untouched.
pub const SERVICE_STANDBY: u32 = 1;

/// A table entry that names no backend.
pub const NO_BACKEND: u32 = u32::MAX;

/// `Backend::flags`.
pub const BACKEND_CONFIGURED: u32 = 1;
/// The backend's MAC (DR) or its next hop's (tunnels) is known.
pub const BACKEND_HAS_MAC: u32 = 1 << 1;
/// The backend passes its health check (or has none).
pub const BACKEND_HEALTHY: u32 = 1 << 2;
/// All three: the backend may receive packets, of old flows and new.
pub const BACKEND_USABLE: u32 = BACKEND_CONFIGURED | BACKEND_HAS_MAC | BACKEND_HEALTHY;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Pod, Zeroable)]
pub struct ServiceKey {
    pub addr: [u8; 16],
    /// 0 = every port of this VIP.
    pub port: u16,
    pub proto: u8,
    pub family: u8,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct ServiceMeta {
    pub id: u32,
    /// Index in TABLES of this service's slot 0; slot 1 follows it.
    pub table_base: u32,
    /// Entries per slot (M, prime).
    pub table_size: u32,
    /// 0 or 1: the slot new flows are looked up in.
    pub active_slot: u32,
    pub flags: u32,
    /// Entries in use in each slot: M for Maglev, twice the points for the
    /// ring, the sequence length for wrr and random.
    pub len: [u32; 2],
    pub scheduler: u8,
    pub forward: u8,
    pub hash_fields: u8,
    pub _pad: u8,
}

impl ServiceMeta {
    /// TABLES index of the active slot's first entry.
    #[inline(always)]
    pub const fn active_base(&self) -> u32 {
        self.table_base + (self.active_slot & 1) * self.table_size
    }

    /// Entries in use in the active slot.
    #[inline(always)]
    pub const fn active_len(&self) -> u32 {
        if self.active_slot & 1 == 0 {
            self.len[0]
        } else {
            self.len[1]
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct FlowKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub family: u8,
    pub _pad: [u8; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct FlowValue {
    pub backend: u32,
    pub service: u32,
    pub flags: u32,
    /// Full-NAT: the flow's source address index and port
    /// (`nat::snat_pack`); 0 otherwise.
    pub nat: u32,
    /// The layout change the upgrade test migrates across.
    #[cfg(feature = "layout-test")]
    pub _layout_test: u64,
}

/// Interfaces the program runs on: the clients' and, for NAT, the
/// backends' (OWN_MAC has one entry each).
pub const MAX_INTERFACES: u32 = 4;

/// `OWN_MAC`'s value: the MAC frames must be sent to, to be balanced.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct OwnMac {
    pub mac: [u8; 6],
    /// 1 once the agent has written it.
    pub set: u8,
    pub _pad: u8,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Backend {
    pub addr: [u8; 16],
    /// Destination MAC written into forwarded frames.
    pub mac: [u8; 6],
    /// Source MAC: the egress interface's own.
    pub src_mac: [u8; 6],
    /// Egress interface; XDP_TX when it is the ingress one.
    pub ifindex: u32,
    pub flags: u32,
    pub service: u32,
    pub weight: u32,
    pub family: u8,
    pub _pad: u8,
    /// NAT: the port the backend listens on (0: the VIP's port).
    pub port: u16,
    /// Where frames go first, for `lb show`: the backend itself (DR) or
    /// the router the FIB chose (tunnels). `mac` is this hop's MAC.
    pub via: [u8; 16],
}

impl Backend {
    #[inline(always)]
    pub const fn usable(&self) -> bool {
        self.flags & BACKEND_USABLE == BACKEND_USABLE
    }
}

/// `TUNNEL`'s value: how tunnel services build the outer header.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Tunnel {
    /// Outer IPv4 source (`[agent] tunnel_source`).
    pub src4: [u8; 4],
    /// Bits of src4 (as a big-endian u32) replaced by the flow hash, so a
    /// backend's NIC spreads flows over its queues (0 = a fixed source).
    pub hash_mask4: u32,
    /// Outer IPv6 source.
    pub src6: [u8; 16],
    /// The same for the last 32 bits of src6.
    pub hash_mask6: u32,
    /// GUE's UDP destination port.
    pub gue_port: u16,
    /// TUNNEL_V4 | TUNNEL_V6: which sources are configured.
    pub flags: u8,
    pub _pad: u8,
}

/// `Tunnel::flags`.
pub const TUNNEL_V4: u8 = 1;
pub const TUNNEL_V6: u8 = 1 << 1;

/// `ICMP_BUDGET`'s per-CPU value: ICMP too-big answers sent in the current
/// one-second window.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct IcmpBudget {
    pub window_start_ns: u64,
    pub sent: u64,
}

/// ICMP too-big answers per CPU per second; more are dropped and counted.
pub const ICMP_TOO_BIG_PER_SEC: u64 = 100;

/// CONFIG's one value: what the data plane needs to know of the whole
/// config, so that work nobody asked for is skipped per packet.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct DataplaneConfig {
    /// New flows each CPU remembers per second; above it (a SYN flood,
    /// say) new flows are placed by their hash and not inserted into the
    /// flow table, so a flood cannot evict established flows (Katran's
    /// rule). 0: no limit.
    pub new_flows_per_cpu: u32,
    /// CFG_ALL_PORTS | CFG_SYNC | CFG_NAT.
    pub flags: u32,
}

/// `DataplaneConfig::flags`: some service takes every port of its VIP (the
/// port-0 lookup is only worth it then).
pub const CFG_ALL_PORTS: u32 = 1;
/// Flows are synced: report each one opened and closed.
pub const CFG_SYNC: u32 = 1 << 1;
/// Some service translates (NAT, full-NAT): backends' replies and ICMP
/// errors are looked up (other traffic pays nothing).
pub const CFG_NAT: u32 = 1 << 2;

/// The default `new_flows_per_cpu`.
pub const DEFAULT_NEW_FLOWS_PER_CPU: u32 = 50_000;

/// NEW_FLOWS's per-CPU value: flows remembered in the current second.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct RateWindow {
    pub window_start_ns: u64,
    pub count: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

/// Map writes the agent has made, for `lb show stats` (agent-only map):
/// unchanged config must mean no writes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct AgentStats {
    /// Table slots rewritten (one per rebuild) and entries written in them.
    pub tables: u64,
    pub table_entries: u64,
    pub backends: u64,
    pub services: u64,
}

#[cfg(feature = "user")]
mod user {
    use super::*;
    // SAFETY: all of these are repr(C) plain data with explicit padding.
    unsafe impl aya::Pod for ServiceKey {}
    unsafe impl aya::Pod for ServiceMeta {}
    unsafe impl aya::Pod for FlowKey {}
    unsafe impl aya::Pod for FlowValue {}
    unsafe impl aya::Pod for Backend {}
    unsafe impl aya::Pod for Counter {}
    unsafe impl aya::Pod for AgentStats {}
    unsafe impl aya::Pod for OwnMac {}
    unsafe impl aya::Pod for Tunnel {}
    unsafe impl aya::Pod for IcmpBudget {}
    unsafe impl aya::Pod for DataplaneConfig {}
    unsafe impl aya::Pod for RateWindow {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn layouts_have_no_implicit_padding() {
        // Pod derive already refuses padding; these pin the sizes the kernel sees.
        assert_eq!(size_of::<ServiceKey>(), 20);
        assert_eq!(size_of::<ServiceMeta>(), 32);
        assert_eq!(size_of::<FlowKey>(), 40);
        #[cfg(not(feature = "layout-test"))]
        assert_eq!(size_of::<FlowValue>(), 16);
        assert_eq!(size_of::<OwnMac>(), 8);
        assert_eq!(size_of::<Backend>(), 64);
        assert_eq!(size_of::<Counter>(), 16);
        assert_eq!(size_of::<Tunnel>(), 32);
        assert_eq!(size_of::<IcmpBudget>(), 16);
    }
}
