//! What `lb show backends` reads about health: one `BackendHealth` record
//! per checked backend, kept from check reports and the plan's effective
//! weights, written to the HEALTH map only when it changed.

use std::{
    collections::HashMap,
    time::{SystemTime, UNIX_EPOCH},
};

use lb_common::{
    BackendHealth,
    health::{
        CHECK_HTTP, CHECK_NONE, CHECK_SCRIPT, CHECK_TCP, HEALTH_DOWN, HEALTH_UNKNOWN, HEALTH_UP,
    },
};

use crate::{
    config::{Config, Probe},
    dataplane::Dataplane,
    health::{Key, Report, Status},
    plan::DesiredService,
};

fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn state(s: Status) -> u8 {
    match s {
        Status::Unknown => HEALTH_UNKNOWN,
        Status::Up => HEALTH_UP,
        Status::Down => HEALTH_DOWN,
    }
}

pub fn kind(p: &Probe) -> u8 {
    match p {
        Probe::None => CHECK_NONE,
        Probe::Http(_) => CHECK_HTTP,
        Probe::Tcp { .. } => CHECK_TCP,
        Probe::Script { .. } => CHECK_SCRIPT,
    }
}

#[derive(Default)]
pub struct Board {
    records: HashMap<Key, BackendHealth>,
    /// What the map holds, by backend id (and for which backend).
    written: HashMap<u32, (Key, BackendHealth)>,
}

impl Board {
    /// Start (or restart) a record, e.g. when a check task starts.
    pub fn reset(&mut self, key: Key, status: Status, probe: &Probe) {
        let r = self.records.entry(key).or_default();
        r.state = state(status);
        r.kind = kind(probe);
    }

    /// Forget backends no longer configured.
    pub fn retain(&mut self, cfg: &Config) {
        let keys: std::collections::HashSet<Key> = cfg
            .services
            .iter()
            .flat_map(|s| s.backends.iter().map(move |b| (s.key(), b.address)))
            .collect();
        self.records.retain(|k, _| keys.contains(k));
        // A removed backend's slot was cleared; never trust the cache for it.
        self.written.retain(|_, (k, _)| keys.contains(k));
    }

    pub fn on_report(&mut self, r: &Report) {
        let h = self.records.entry(r.key).or_default();
        h.state = state(r.status);
        h.consecutive_ok = r.ok;
        h.consecutive_fail = r.fail;
        h.rtt_us = r.rtt.as_micros().min(u32::MAX as u128) as u32;
        h.checks = h.checks.wrapping_add(1);
        h.last_check_ms = ms(r.at);
        if r.changed {
            h.transitions = h.transitions.wrapping_add(1);
            h.last_change_ms = ms(r.at);
        }
        if let Some(e) = &r.error {
            h.set_error(&e.to_string());
        }
    }

    /// Bring weights in from the plan and write every changed record.
    pub fn publish(&mut self, dp: &mut Dataplane, cfg: &Config, desired: &[DesiredService]) {
        for (s, d) in cfg.services.iter().zip(desired) {
            for (b, db) in s.backends.iter().zip(&d.backends) {
                let key = (d.key, b.address);
                let rec = self.records.entry(key).or_insert_with(|| BackendHealth {
                    // No check: up for as long as it is configured.
                    state: if b.check.probe == Probe::None {
                        HEALTH_UP
                    } else {
                        HEALTH_UNKNOWN
                    },
                    kind: kind(&b.check.probe),
                    ..Default::default()
                });
                rec.weight = db.weight;
                rec.effective_milli = db.effective;
                rec.warming = db.warming as u8;
            }
        }
        let keys: Vec<Key> = self.records.keys().copied().collect();
        for k in keys {
            self.publish_one(dp, k);
        }
    }

    /// Write one backend's record if it changed.
    pub fn publish_one(&mut self, dp: &mut Dataplane, key: Key) {
        let (Some(rec), Some(id)) = (self.records.get(&key), dp.backend_id(&key.0, key.1)) else {
            return;
        };
        if self.written.get(&id) == Some(&(key, *rec)) {
            return;
        }
        match dp.write_health(id, rec) {
            Ok(()) => {
                self.written.insert(id, (key, *rec));
            }
            Err(e) => tracing::warn!(error = %e, "writing the health map failed"),
        }
    }
}
