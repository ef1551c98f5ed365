//! What the forwarding-path benchmark's generator program reads.

use bytemuck::{Pod, Zeroable};

/// `GenState::mode`: established flows, cycling through `flows` ports.
pub const GEN_FLOWS: u32 = 0;
/// A new source address and port for every frame (a SYN flood).
pub const GEN_NEW_SOURCES: u32 = 1;

/// Bytes of a generated frame's headers (Ethernet, IPv4, TCP).
pub const GEN_HEADER: usize = 54;

/// GEN's per-CPU value: frames generated so far, how to vary them, and
/// the headers each frame starts from (live frames are recycled pages that
/// the balancer rewrote: every header byte is written again).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct GenState {
    pub sent: u64,
    pub mode: u32,
    pub flows: u32,
    pub template: [u8; 64],
}

impl Default for GenState {
    fn default() -> Self {
        Zeroable::zeroed()
    }
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: repr(C) plain data without padding.
    unsafe impl aya::Pod for super::GenState {}
}
