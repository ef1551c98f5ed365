//! `[bgp]`: announce the VIPs through the operator's BIRD (see bgp/).

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Validator};

/// The agent-owned TUN device BIRD's `protocol direct` exports.
pub const DEFAULT_BGP_DEVICE: &str = "lb-bgp";
pub const DEFAULT_GRACE: Duration = Duration::from_secs(2);
pub const DEFAULT_DRAIN_IDLE: Duration = Duration::from_secs(5);
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBgp {
    pub device: Option<Spanned<String>>,
    pub min_backends: Option<Spanned<i64>>,
    pub grace: Option<Spanned<String>>,
    pub drain_idle: Option<Spanned<String>>,
    pub drain_timeout: Option<Spanned<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BgpCfg {
    /// The TUN device holding announced VIPs (BIRD exports its addresses).
    pub device: String,
    /// A service counts as up with at least this many healthy backends.
    pub min_backends: u32,
    /// On SIGTERM: routes withdrawn, still forwarding this long, then stop.
    pub grace: Duration,
    /// `lb drain`: stop once no VIP packet has arrived for this long...
    pub drain_idle: Duration,
    /// ...or after this long at most.
    pub drain_timeout: Duration,
}

impl Validator<'_> {
    pub(super) fn bgp(&self, r: &Spanned<RawBgp>) -> Result<BgpCfg, ConfigError> {
        let raw = r.get_ref();
        let device = match &raw.device {
            Some(d) if d.get_ref().is_empty() || d.get_ref().len() > 15 => {
                return Err(self.err(
                    d.span(),
                    format!("bad device name {:?}", d.get_ref()),
                    "a name of 1 to 15 characters that no other interface has; BIRD's protocol direct names it",
                ));
            }
            Some(d) => d.get_ref().clone(),
            None => DEFAULT_BGP_DEVICE.to_string(),
        };
        let min_backends = self.int(&raw.min_backends, 1, 1, 65_535, "min_backends")?;
        let grace = self.duration(&raw.grace, DEFAULT_GRACE, "grace")?;
        let drain_idle = self.duration(&raw.drain_idle, DEFAULT_DRAIN_IDLE, "drain_idle")?;
        let drain_timeout =
            self.duration(&raw.drain_timeout, DEFAULT_DRAIN_TIMEOUT, "drain_timeout")?;
        if drain_idle.is_zero() || drain_idle > drain_timeout {
            return Err(self.err(
                raw.drain_idle
                    .as_ref()
                    .map(Spanned::span)
                    .unwrap_or_else(|| r.span()),
                format!("drain_idle {drain_idle:?} with drain_timeout {drain_timeout:?}"),
                "drain_idle must be above zero and at most drain_timeout",
            ));
        }
        Ok(BgpCfg {
            device,
            min_backends,
            grace,
            drain_idle,
            drain_timeout,
        })
    }
}
