//! VRRP instance status, written by the agent for `lb show vrrp`; the XDP
//! program never reads it.

use bytemuck::{Pod, Zeroable};

/// `VrrpStatus::state`.
pub const VRRP_INIT: u8 = 0;
pub const VRRP_BACKUP: u8 = 1;
pub const VRRP_MASTER: u8 = 2;
pub const VRRP_FAULT: u8 = 3;

/// `VrrpStatus::state` as `lb show vrrp` prints it (keepalived's words).
pub const fn vrrp_state_name(state: u8) -> &'static str {
    match state {
        VRRP_MASTER => "MASTER",
        VRRP_BACKUP => "BACKUP",
        VRRP_FAULT => "FAULT",
        _ => "INIT",
    }
}

/// Bytes of `VrrpStatus::name`; the config allows one less (NUL-padded).
pub const VRRP_NAME_LEN: usize = 32;

/// Instances an agent can run.
pub const MAX_VRRP: u32 = 16;
/// Counters of dropped adverts, one per drop reason.
pub const VRRP_DROP_REASONS: usize = 12;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct VrrpStatus {
    /// Instance name, UTF-8, NUL-padded.
    pub name: [u8; VRRP_NAME_LEN],
    /// 1 while the slot holds an instance.
    pub configured: u8,
    pub state: u8,
    pub version: u8,
    pub vrid: u8,
    pub priority: u8,
    pub effective_priority: u8,
    /// 4 or 6: the family of `master`.
    pub family: u8,
    pub _pad: u8,
    /// Current master's address, when known (all zero otherwise).
    pub master: [u8; 16],
    pub transitions: u32,
    pub adverts_sent: u32,
    pub adverts_received: u32,
    /// Advertisement interval in centiseconds.
    pub interval_cs: u32,
    /// Wall clock, ms since the Unix epoch; 0 = never.
    pub last_advert_ms: u64,
    pub last_change_ms: u64,
    pub drops: [u32; VRRP_DROP_REASONS],
}

impl Default for VrrpStatus {
    fn default() -> Self {
        Zeroable::zeroed()
    }
}

impl VrrpStatus {
    pub fn name(&self) -> &str {
        let end = self
            .name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(VRRP_NAME_LEN);
        core::str::from_utf8(&self.name[..end]).unwrap_or("")
    }

    pub fn set_name(&mut self, n: &str) {
        self.name = [0; VRRP_NAME_LEN];
        let k = n.len().min(VRRP_NAME_LEN - 1);
        self.name[..k].copy_from_slice(&n.as_bytes()[..k]);
    }
}

#[cfg(feature = "user")]
// SAFETY: repr(C) plain data, no implicit padding (checked by Pod derive).
unsafe impl aya::Pod for VrrpStatus {}

#[cfg(test)]
mod tests {
    #[test]
    fn layout() {
        assert_eq!(core::mem::size_of::<super::VrrpStatus>(), 136);
    }
}
