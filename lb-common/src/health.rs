//! Health-check status per backend id, written by the agent and read by
//! `lb show`. The XDP program never reads it: the data plane only sees the
//! HEALTHY flag and the tables built from effective weights.

use bytemuck::{Pod, Zeroable};

/// `BackendHealth::state`.
pub const HEALTH_UNKNOWN: u8 = 0;
pub const HEALTH_UP: u8 = 1;
pub const HEALTH_DOWN: u8 = 2;

/// `BackendHealth::kind`.
pub const CHECK_NONE: u8 = 0;
pub const CHECK_HTTP: u8 = 1;
pub const CHECK_TCP: u8 = 2;
pub const CHECK_SCRIPT: u8 = 3;

/// `BackendHealth::state` as `lb show` and the API name it.
pub const fn health_state_name(state: u8) -> &'static str {
    match state {
        HEALTH_UP => "up",
        HEALTH_DOWN => "down",
        _ => "unknown",
    }
}

/// `BackendHealth::kind` as the config names it.
pub const fn check_kind_name(kind: u8) -> &'static str {
    match kind {
        CHECK_HTTP => "http",
        CHECK_TCP => "tcp",
        CHECK_SCRIPT => "script",
        _ => "none",
    }
}

/// Bytes kept of the last error's text.
pub const HEALTH_ERROR_LEN: usize = 64;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct BackendHealth {
    pub state: u8,
    pub kind: u8,
    /// 1 while the effective weight is still ramping up (warmup).
    pub warming: u8,
    pub _pad: u8,
    /// Configured weight.
    pub weight: u32,
    /// Weight the tables are built from, in thousandths (warmup ramps it).
    pub effective_milli: u32,
    pub consecutive_ok: u32,
    pub consecutive_fail: u32,
    /// Duration of the last check, in microseconds.
    pub rtt_us: u32,
    /// Up/down transitions since the agent started checking it.
    pub transitions: u32,
    pub checks: u32,
    /// Wall-clock time of the last completed check, ms since the Unix epoch.
    pub last_check_ms: u64,
    /// Wall-clock time of the last up/down transition, ms since the Unix epoch.
    pub last_change_ms: u64,
    /// Last failure, UTF-8, NUL-padded.
    pub last_error: [u8; HEALTH_ERROR_LEN],
}

impl Default for BackendHealth {
    fn default() -> Self {
        Zeroable::zeroed()
    }
}

impl BackendHealth {
    /// The last error as text.
    pub fn error(&self) -> &str {
        let end = self
            .last_error
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(HEALTH_ERROR_LEN);
        core::str::from_utf8(&self.last_error[..end]).unwrap_or("")
    }

    /// Store `msg`, cut at a character boundary to fit.
    pub fn set_error(&mut self, msg: &str) {
        self.last_error = [0; HEALTH_ERROR_LEN];
        let mut end = msg.len().min(HEALTH_ERROR_LEN);
        while !msg.is_char_boundary(end) {
            end -= 1;
        }
        self.last_error[..end].copy_from_slice(&msg.as_bytes()[..end]);
    }
}

#[cfg(feature = "user")]
// SAFETY: repr(C) plain data, no implicit padding (checked by Pod derive).
unsafe impl aya::Pod for BackendHealth {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_error_text() {
        assert_eq!(core::mem::size_of::<BackendHealth>(), 112);
        let mut h = BackendHealth::default();
        h.set_error("status 503");
        assert_eq!(h.error(), "status 503");
        // A long message is cut, never split inside a character.
        let long = "é".repeat(40);
        h.set_error(&long);
        assert_eq!(h.error().len(), 64);
        assert!(h.error().chars().all(|c| c == 'é'));
    }
}
