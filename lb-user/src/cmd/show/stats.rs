//! `lb show stats`: verdict reasons, the agent's map writes, per service.

use std::collections::BTreeMap;

use anyhow::Result;
use lb_common::{AgentStats, Reason};
use serde::Serialize;

use super::{
    View,
    render::{self, Col, Row, left, right},
    services::{ServiceRow, Services},
};
use crate::maps::Pinned;

#[derive(Serialize)]
pub struct Writes {
    pub tables: u64,
    pub table_entries: u64,
    pub backends: u64,
    pub services: u64,
}

impl From<AgentStats> for Writes {
    fn from(w: AgentStats) -> Self {
        Writes {
            tables: w.tables,
            table_entries: w.table_entries,
            backends: w.backends,
            services: w.services,
        }
    }
}

#[derive(Serialize)]
pub struct Stats {
    pub reasons: BTreeMap<&'static str, u64>,
    pub services: Vec<ServiceRow>,
    pub writes: Writes,
}

/// One verdict reason's count, for the table.
#[derive(Serialize)]
struct ReasonRow(&'static str, u64);

impl Row for ReasonRow {
    const COLS: &'static [Col] = &[left("  Reason", 22), right("Packets", 14)];
    fn cells(&self) -> Vec<String> {
        vec![format!("  {}", self.0), self.1.to_string()]
    }
}

impl Stats {
    pub fn read(p: &Pinned) -> Result<Self> {
        Ok(Stats {
            reasons: Reason::ALL
                .iter()
                .map(|r| (r.name(), p.reason(*r)))
                .collect(),
            services: Services::read(p)?.services,
            writes: p.agent_stats().into(),
        })
    }
}

impl View for Stats {
    fn text(&self) -> String {
        // In the data plane's order, not the JSON map's.
        let reasons: Vec<ReasonRow> = Reason::ALL
            .iter()
            .map(|r| ReasonRow(r.name(), self.reasons[r.name()]))
            .collect();
        let w = &self.writes;
        format!(
            "Verdict reasons (packets, all CPUs):\n{}\nMap writes by the agent (an unchanged config writes none):\n  tables rebuilt {:>8}   entries {:>10}   backends {:>8}   services {:>8}\n\nPer service:\n{}",
            render::text(&reasons),
            w.tables,
            w.table_entries,
            w.backends,
            w.services,
            render::text(&self.services)
        )
    }
}
