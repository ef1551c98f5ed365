//! The backend's decapsulation program (`lb realserver`): its config and
//! why each frame got its verdict.

use bytemuck::{Pod, Zeroable};

/// `DECAP_CONFIG`'s value.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct DecapConfig {
    /// UDP port of GUE; 0 = GUE is not decapsulated.
    pub gue_port: u16,
    pub _pad: [u8; 6],
}

#[cfg(feature = "user")]
// SAFETY: repr(C) plain data with explicit padding.
unsafe impl aya::Pod for DecapConfig {}

#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecapReason {
    /// The outer header was stripped; the inner packet goes up the stack.
    Decapsulated = 0,
    /// Not IPIP, IP6IP6, 4in6 or GUE on the configured port.
    PassNotTunnel = 1,
    /// A tunnel packet whose inner destination is no configured VIP.
    PassNotVip = 2,
    /// A header that does not fit or contradicts itself, outer or inner.
    PassMalformed = 3,
}

pub const DECAP_REASON_COUNT: u32 = 4;

impl DecapReason {
    pub const ALL: [DecapReason; DECAP_REASON_COUNT as usize] = [
        DecapReason::Decapsulated,
        DecapReason::PassNotTunnel,
        DecapReason::PassNotVip,
        DecapReason::PassMalformed,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            DecapReason::Decapsulated => "decapsulated",
            DecapReason::PassNotTunnel => "pass_not_tunnel",
            DecapReason::PassNotVip => "pass_not_vip",
            DecapReason::PassMalformed => "pass_malformed",
        }
    }
}
