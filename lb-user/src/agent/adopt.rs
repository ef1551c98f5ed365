//! Carrying on from a previous agent: a restarted (or upgraded) agent finds
//! the maps as the old one left them and starts from what they say, so its
//! first map writes change nothing that serves. A checked backend keeps the
//! old verdict (and its place in a warmup ramp) until its own checks say
//! otherwise; a MAC in use stays until the neighbour table gives another.
//! Backends new in the config start at their check's `initial`.

use std::{
    collections::HashMap,
    net::IpAddr,
    time::{Duration, Instant},
};

use lb_common::{
    BACKEND_HAS_MAC, BACKEND_HEALTHY, Backend, BackendHealth,
    health::{CHECK_NONE, HEALTH_UNKNOWN},
};

use crate::{
    config::{Config, Probe},
    health::{Key, Status},
    plan::{Health, MILLI},
};

/// What the agent starts from.
#[derive(Debug, Default)]
pub struct Seed {
    pub health: HashMap<Key, Health>,
    /// Unchecked backends still ramping up: when their warmup began.
    pub added: HashMap<Key, Instant>,
    pub macs: HashMap<(u32, IpAddr), [u8; 6]>,
    /// Health records to keep showing (counts, last check, last error).
    pub records: Vec<(Key, BackendHealth)>,
}

/// When a ramp that has reached `effective_milli` of `weight` over
/// `warmup` began; None when it is not ramping.
fn ramp_start(h: &BackendHealth, warmup: Duration, now: Instant) -> Option<Instant> {
    let full = h.weight as u64 * MILLI;
    if h.warming == 0 || full == 0 || warmup.is_zero() {
        return None;
    }
    let done = warmup.mul_f64((h.effective_milli as u64).min(full) as f64 / full as f64);
    now.checked_sub(done)
}

/// The state to start from, given what the maps hold for each backend.
pub fn seed(cfg: &Config, adopted: &[(Key, Backend, Option<BackendHealth>)], now: Instant) -> Seed {
    let mut s = Seed::default();
    for (key, b, h) in adopted {
        let Some((svc, bc)) = cfg.services.iter().find_map(|svc| {
            (svc.key() == key.0)
                .then(|| svc.backends.iter().find(|x| x.address == key.1))
                .flatten()
                .map(|bc| (svc, bc))
        }) else {
            continue; // gone from the config: the writer retires it
        };
        if b.flags & BACKEND_HAS_MAC != 0 {
            s.macs.insert((b.ifindex, key.1), b.mac);
        }
        if let Some(h) = h {
            s.records.push((*key, *h));
        }
        let since = h.as_ref().and_then(|h| ramp_start(h, svc.warmup, now));
        if bc.check.probe == Probe::None {
            if let Some(t) = since {
                s.added.insert(*key, t);
            }
            continue;
        }
        // Only a verdict from a check counts; a backend that had none (or
        // none yet) starts as a new one would.
        if !h.is_some_and(|h| h.kind != CHECK_NONE && h.state != HEALTH_UNKNOWN) {
            continue;
        }
        let up = b.flags & BACKEND_HEALTHY != 0;
        s.health.insert(
            *key,
            Health {
                status: if up { Status::Up } else { Status::Down },
                up_since: since.filter(|_| up),
            },
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_common::{
        BACKEND_CONFIGURED,
        health::{CHECK_HTTP, HEALTH_DOWN, HEALTH_UP},
    };

    const CFG: &str = r#"
[agent]
interface = "eth0"

[[service]]
vip = "203.0.113.10"
port = 80
warmup = "10s"
check = { kind = "http", path = "/" }
backends = [
  { address = "198.51.100.11", weight = 2 },
  { address = "198.51.100.12" },
  { address = "198.51.100.13", check = { kind = "none" } },
  { address = "198.51.100.14" },
]
"#;

    fn entry(flags: u32) -> Backend {
        Backend {
            flags: BACKEND_CONFIGURED | flags,
            mac: [2, 0, 0, 0, 0, 1],
            ifindex: 7,
            ..Default::default()
        }
    }

    fn record(
        state: u8,
        kind: u8,
        weight: u32,
        effective: u32,
        warming: bool,
    ) -> Option<BackendHealth> {
        Some(BackendHealth {
            state,
            kind,
            weight,
            effective_milli: effective,
            warming: warming as u8,
            ..Default::default()
        })
    }

    #[test]
    fn a_restart_keeps_verdicts_ramps_and_macs() {
        let cfg = Config::parse(std::path::Path::new("t.toml"), CFG).unwrap();
        let svc = cfg.services[0].key();
        let k = |a: &str| (svc, a.parse::<IpAddr>().unwrap());
        let now = Instant::now() + Duration::from_secs(60);
        let healthy = BACKEND_HAS_MAC | BACKEND_HEALTHY;
        let adopted = vec![
            // Up, 40% through its 10 s ramp.
            (
                k("198.51.100.11"),
                entry(healthy),
                record(HEALTH_UP, CHECK_HTTP, 2, 800, true),
            ),
            // Down by its check.
            (
                k("198.51.100.12"),
                entry(BACKEND_HAS_MAC),
                record(HEALTH_DOWN, CHECK_HTTP, 1, 0, false),
            ),
            // Unchecked, warm.
            (
                k("198.51.100.13"),
                entry(healthy),
                record(HEALTH_UP, CHECK_NONE, 1, 1000, false),
            ),
            // Never checked yet, no MAC.
            (
                k("198.51.100.14"),
                entry(0),
                record(HEALTH_UNKNOWN, CHECK_HTTP, 1, 0, false),
            ),
            // No longer configured.
            (
                k("198.51.100.99"),
                entry(healthy),
                record(HEALTH_UP, CHECK_HTTP, 1, 1000, false),
            ),
        ];
        let s = seed(&cfg, &adopted, now);
        let h = s.health[&k("198.51.100.11")];
        assert_eq!(h.status, Status::Up);
        assert_eq!(h.up_since, Some(now - Duration::from_secs(4)));
        assert_eq!(s.health[&k("198.51.100.12")].status, Status::Down);
        assert!(!s.health.contains_key(&k("198.51.100.13")));
        assert!(!s.added.contains_key(&k("198.51.100.13")));
        assert!(!s.health.contains_key(&k("198.51.100.14")));
        assert!(!s.health.contains_key(&k("198.51.100.99")));
        let mac = |a: &str| s.macs.get(&(7, a.parse().unwrap())).copied();
        assert_eq!(mac("198.51.100.11"), Some([2, 0, 0, 0, 0, 1]));
        assert_eq!(mac("198.51.100.14"), None);
        assert_eq!(mac("198.51.100.99"), None);
        assert_eq!(s.records.len(), 4);
    }
}
