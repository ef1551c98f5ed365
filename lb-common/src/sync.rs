//! Flow-state sync between balancers: what the XDP program reports of each
//! flow it opens or sees closed (through the FLOW_EVENTS ring buffer), for
//! the agent to send to its peers.

use bytemuck::{Pod, Zeroable};

use crate::types::FlowKey;

/// `FlowEvent::kind`.
pub const FLOW_OPENED: u8 = 1;
pub const FLOW_CLOSED: u8 = 2;

/// FLOW_EVENTS's size in bytes (a power of two, a multiple of the page):
/// about 18,000 events, 1.8 s of 10,000 new flows/s if the agent stalled.
pub const FLOW_EVENTS_BYTES: u32 = 1 << 20;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct FlowEvent {
    pub key: FlowKey,
    /// This node's ids; the agent sends (service, backend address) instead.
    pub backend: u32,
    pub service: u32,
    pub kind: u8,
    pub _pad: [u8; 3],
    /// Full-NAT's source index and port (`FlowValue::nat`).
    pub nat: u32,
}

/// Peers an agent syncs with; SYNC_STATS has one more slot, for batches
/// from no configured peer.
pub const MAX_SYNC_PEERS: u32 = 16;

/// SYNC_STATS's value: one peer's sync counters (agent-only).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct SyncPeerStats {
    pub addr: [u8; 16],
    pub family: u8,
    /// 1 for a configured peer's slot.
    pub set: u8,
    pub _pad: [u8; 6],
    pub batches_sent: u64,
    pub flows_sent: u64,
    pub batches_received: u64,
    pub flows_received: u64,
    /// Received flows of a service or backend this node does not have.
    pub flows_skipped: u64,
    /// Batches dropped: bad or missing HMAC, malformed, from no peer.
    pub bad_auth: u64,
    pub malformed: u64,
    pub last_received_ms: u64,
    /// The last batch's age on arrival: sent time to received time, plus
    /// the time its oldest flow waited to be sent (same clock assumed).
    pub lag_us: u64,
    /// Full dumps this node asked the peer for, and served to it.
    pub dumps_asked: u64,
    pub dumps_served: u64,
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: repr(C) plain data with explicit padding.
    unsafe impl aya::Pod for super::FlowEvent {}
    unsafe impl aya::Pod for super::SyncPeerStats {}
}

#[cfg(test)]
mod tests {
    #[test]
    fn size() {
        assert_eq!(core::mem::size_of::<super::FlowEvent>(), 56);
        assert_eq!(core::mem::size_of::<super::SyncPeerStats>(), 112);
    }
}
