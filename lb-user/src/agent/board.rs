//! The health board: what `lb show backends` reads about health, one
//! `BackendHealth` record per backend, kept from check reports and the
//! plan's effective weights. Pure: records in, records out; the map writer
//! stores them (by diff) in the HEALTH map.

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
}

impl Board {
    /// Start (or restart) a record, e.g. when a check task starts.
    pub fn reset(&mut self, key: Key, status: Status, probe: &Probe) {
        let r = self.records.entry(key).or_default();
        r.state = state(status);
        r.kind = kind(probe);
    }

    /// Keep showing what a previous agent published for `key`.
    pub fn adopt(&mut self, key: Key, record: BackendHealth) {
        self.records.insert(key, record);
    }

    /// Forget backends no longer configured.
    pub fn retain(&mut self, cfg: &Config) {
        let keys = super::backend_keys(cfg);
        self.records.retain(|k, _| keys.contains(k));
    }

    /// Every record, for the map writer.
    pub fn records(&self) -> impl Iterator<Item = (&Key, &BackendHealth)> {
        self.records.iter()
    }

    /// One backend's record.
    pub fn record(&self, key: &Key) -> Option<(&Key, &BackendHealth)> {
        self.records.get_key_value(key)
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

    /// Bring weights in from the plan.
    pub fn weigh(&mut self, cfg: &Config, desired: &[DesiredService]) {
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
    }
}
