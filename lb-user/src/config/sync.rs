//! `[sync]`: flow-state sync with the other balancers (see the sync module).

use std::{net::IpAddr, time::Duration};

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Validator};

/// LVS's sync daemon port.
pub const DEFAULT_SYNC_PORT: u16 = 8848;
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_millis(20);
/// A shorter key is refused: HMAC-SHA256 wants at least 128 bits.
const MIN_KEY_LEN: usize = 16;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSync {
    pub peers: Option<Spanned<Vec<Spanned<String>>>>,
    pub port: Option<Spanned<i64>>,
    pub key: Option<Spanned<String>>,
    pub key_file: Option<Spanned<String>>,
    pub interval: Option<Spanned<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncCfg {
    /// The other balancers: flows go to each, and only theirs are taken.
    pub peers: Vec<IpAddr>,
    pub port: u16,
    /// Batches carry an HMAC-SHA256 under this key, and must.
    pub key: Option<Vec<u8>>,
    /// How long new flows wait to share a batch.
    pub interval: Duration,
}

impl Validator<'_> {
    pub(super) fn sync(&self, r: &Spanned<RawSync>) -> Result<SyncCfg, ConfigError> {
        let raw = r.get_ref();
        let Some(list) = &raw.peers else {
            return Err(self.err(
                r.span(),
                "[sync] has no peers".into(),
                "add peers = [\"198.51.100.6\"]: the other balancers' addresses",
            ));
        };
        let mut peers: Vec<IpAddr> = Vec::new();
        for p in list.get_ref() {
            let a = self.ip(p, "sync peer")?;
            if peers.contains(&a) {
                return Err(self.err(
                    p.span(),
                    format!("sync peer {a} is listed twice"),
                    "list each peer once",
                ));
            }
            peers.push(a);
        }
        let max = lb_common::sync::MAX_SYNC_PEERS as usize;
        if peers.is_empty() || peers.len() > max {
            return Err(self.err(
                list.span(),
                format!("{} sync peers", peers.len()),
                &format!("list 1 to {max} peers"),
            ));
        }
        let port = self.int(&raw.port, DEFAULT_SYNC_PORT as u32, 1, 65535, "port")? as u16;
        let key = match (&raw.key, &raw.key_file) {
            (Some(_), Some(f)) => {
                return Err(self.err(
                    f.span(),
                    "both key and key_file".into(),
                    "give the key one way",
                ));
            }
            (Some(k), None) => Some((k.span(), k.get_ref().as_bytes().to_vec())),
            (None, Some(f)) => {
                let bytes = std::fs::read(f.get_ref()).map_err(|e| {
                    self.err(
                        f.span(),
                        format!("cannot read key_file {:?}: {e}", f.get_ref()),
                        "a file readable by the agent holding the shared key",
                    )
                })?;
                let trimmed = bytes.trim_ascii().to_vec();
                Some((f.span(), trimmed))
            }
            (None, None) => None,
        };
        if let Some((span, k)) = &key
            && k.len() < MIN_KEY_LEN
        {
            return Err(self.err(
                span.clone(),
                format!("sync key of {} bytes", k.len()),
                &format!("use at least {MIN_KEY_LEN} random bytes, the same on every peer"),
            ));
        }
        let interval = self.duration(&raw.interval, DEFAULT_SYNC_INTERVAL, "interval")?;
        if interval.is_zero() || interval > Duration::from_secs(1) {
            return Err(self.err(
                raw.interval.as_ref().map(Spanned::span).unwrap_or_default(),
                "sync interval out of range".into(),
                "use 1ms to 1s; 20ms (the default) keeps a failover's window small",
            ));
        }
        Ok(SyncCfg {
            peers,
            port,
            key: key.map(|(_, k)| k),
            interval,
        })
    }
}
