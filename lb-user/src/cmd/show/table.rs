//! `lb show table SERVICE`: how a service's active table slot shares new
//! flows among its backends, next to what their weights ask for.

use anyhow::{Result, bail};
use lb_common::{NO_BACKEND, Scheduler};
use serde::Serialize;

use super::{
    View,
    backends::{effective_milli, state},
    render::{self, Col, Row, left, right},
    services::scheduler_name,
};
use crate::{addr, maps::Pinned, sched};

#[derive(Serialize)]
pub struct TableRow {
    #[serde(skip)]
    port: u16,
    pub address: String,
    pub weight: u32,
    pub entries: u64,
    pub share: f64,
    pub wanted: f64,
}

#[derive(Serialize)]
pub struct Table {
    pub service: String,
    pub scheduler: &'static str,
    pub table_size: u32,
    pub entries: u32,
    pub active_slot: u32,
    pub backends: Vec<TableRow>,
    pub empty_entries: u64,
    /// FNV-1a of the active slot with each backend id replaced by the
    /// backend's address and port: equal on every node that built the
    /// same table, whatever ids each node allocated.
    pub digest: String,
}

impl Table {
    pub fn read(p: &Pinned, name: &str) -> Result<Self> {
        let Some(key) = addr::parse_service_name(name) else {
            bail!(
                "bad service {name:?}: write it as VIP:PORT/PROTO, e.g. 203.0.113.10:80/tcp or [2001:db8:f::10]:80/tcp"
            );
        };
        let Some((_, meta)) = p.services()?.into_iter().find(|(k, _)| *k == key) else {
            bail!("no service {name} in the maps (lb show services lists them)");
        };
        let Some(scheduler) = Scheduler::from_id(meta.scheduler) else {
            bail!(
                "service {name} has scheduler id {}, unknown to this lb",
                meta.scheduler
            );
        };
        let slot = p.table(&meta)?;
        let shares = sched::shares(scheduler, &slot);
        let backends = p.backends(meta.id)?;
        let digest = digest(scheduler, &slot, &backends);
        let total_weight: u64 = backends
            .iter()
            .filter(|(_, b)| state(b) == "up")
            .map(|(id, b)| effective_milli(b, p.health(*id).as_ref()))
            .sum();
        let rows = backends
            .iter()
            .map(|(id, b)| {
                let s = shares.get(id).copied().unwrap_or_default();
                let wanted = if state(b) == "up" && total_weight > 0 {
                    effective_milli(b, p.health(*id).as_ref()) as f64 / total_weight as f64
                } else {
                    0.0
                };
                TableRow {
                    port: key.port,
                    address: addr::from_bytes(&b.addr, b.family).to_string(),
                    weight: b.weight,
                    entries: s.entries,
                    share: s.share,
                    wanted,
                }
            })
            .collect();
        Ok(Table {
            service: addr::service_name(&key),
            scheduler: scheduler_name(meta.scheduler),
            table_size: meta.table_size,
            entries: meta.active_len(),
            active_slot: meta.active_slot,
            backends: rows,
            empty_entries: shares.get(&NO_BACKEND).map_or(0, |s| s.entries),
            digest,
        })
    }
}

/// See `Table::digest`. FNV-1a: stable across builds and machines, which
/// is all a comparison between nodes needs (not a defence).
fn digest(scheduler: Scheduler, slot: &[u32], backends: &[(u32, lb_common::Backend)]) -> String {
    let layout = scheduler.layout();
    let by_id: std::collections::HashMap<u32, &lb_common::Backend> =
        backends.iter().map(|(id, b)| (*id, b)).collect();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
    };
    for (i, &word) in slot.iter().enumerate() {
        let is_id = i as u32 % layout.stride == layout.id_offset;
        match by_id.get(&word).filter(|_| is_id) {
            Some(b) => {
                eat(&b.addr);
                eat(&[b.family]);
                eat(&b.port.to_be_bytes());
            }
            None => eat(&word.to_be_bytes()),
        }
    }
    format!("{h:016x}")
}

impl Row for TableRow {
    const COLS: &'static [Col] = &[
        left("  -> RemoteAddress:Port", 41),
        right("Weight", 6),
        right("Entries", 10),
        right("Share", 8),
        right("Wanted", 8),
    ];
    fn cells(&self) -> Vec<String> {
        let address = self
            .address
            .parse()
            .map_or_else(|_| self.address.clone(), |a| addr::socket(a, self.port));
        vec![
            format!("  -> {address}"),
            self.weight.to_string(),
            self.entries.to_string(),
            format!("{:.2}%", 100.0 * self.share),
            format!("{:.2}%", 100.0 * self.wanted),
        ]
    }
}

impl View for Table {
    fn text(&self) -> String {
        let mut s = format!(
            "{} scheduler={} entries {} of {} active slot {} digest {}\n{}",
            self.service,
            self.scheduler,
            self.entries,
            self.table_size,
            self.active_slot,
            self.digest,
            render::text(&self.backends)
        );
        if self.empty_entries > 0 {
            s.push_str(&format!(
                "  (no backend: {} entries; new flows to them are dropped)\n",
                self.empty_entries
            ));
        }
        s
    }
}
