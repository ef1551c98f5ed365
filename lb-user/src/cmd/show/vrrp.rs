//! `lb show vrrp`: the agent's VRRP instances.

use std::collections::BTreeMap;

use lb_common::vrrp::vrrp_state_name;
use serde::Serialize;

use super::{
    View,
    render::{self, Col, Row, ago, left, now_ms, right},
};
use crate::{addr, maps::Pinned, vrrp::codec::drops_by_name};

#[derive(Serialize)]
pub struct VrrpRow {
    pub instance: String,
    pub state: &'static str,
    pub priority: u8,
    pub effective_priority: u8,
    pub vrid: u8,
    pub version: u8,
    pub advert_interval_cs: u32,
    pub master: Option<String>,
    pub last_advert_unix_ms: u64,
    pub last_change_unix_ms: u64,
    pub transitions: u32,
    pub adverts_sent: u32,
    pub adverts_received: u32,
    pub dropped: BTreeMap<&'static str, u32>,
}

#[derive(Serialize)]
pub struct Vrrp {
    pub vrrp: Vec<VrrpRow>,
}

impl Vrrp {
    pub fn read(p: &Pinned) -> Self {
        let vrrp = p
            .vrrp()
            .iter()
            .map(|v| VrrpRow {
                instance: v.name().to_string(),
                state: vrrp_state_name(v.state),
                priority: v.priority,
                effective_priority: v.effective_priority,
                vrid: v.vrid,
                version: v.version,
                advert_interval_cs: v.interval_cs,
                master: (v.family != 0).then(|| addr::from_bytes(&v.master, v.family).to_string()),
                last_advert_unix_ms: v.last_advert_ms,
                last_change_unix_ms: v.last_change_ms,
                transitions: v.transitions,
                adverts_sent: v.adverts_sent,
                adverts_received: v.adverts_received,
                dropped: drops_by_name(v),
            })
            .collect();
        Vrrp { vrrp }
    }
}

impl Row for VrrpRow {
    const COLS: &'static [Col] = &[
        left("Instance", 12),
        left("State", 7),
        right("Prio", 4),
        right("Eff", 4),
        right("VRID", 4),
        right("Ver", 3),
        right("Interval", 8),
        left("Master", 26),
        right("LastAdvert", 11),
        right("Trans", 6),
        right("Sent", 6),
        right("Recv", 6),
        left(" Dropped", 0),
    ];
    fn cells(&self) -> Vec<String> {
        let dropped: Vec<String> = self
            .dropped
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| format!("{k}={n}"))
            .collect();
        vec![
            self.instance.clone(),
            self.state.into(),
            self.priority.to_string(),
            self.effective_priority.to_string(),
            self.vrid.to_string(),
            self.version.to_string(),
            format!("{:.2}s", self.advert_interval_cs as f64 / 100.0),
            self.master.clone().unwrap_or_else(|| "-".into()),
            ago(self.last_advert_unix_ms, now_ms()),
            self.transitions.to_string(),
            self.adverts_sent.to_string(),
            self.adverts_received.to_string(),
            if dropped.is_empty() {
                " -".into()
            } else {
                format!(" {}", dropped.join(" "))
            },
        ]
    }
}

impl View for Vrrp {
    fn text(&self) -> String {
        let mut s = render::text(&self.vrrp);
        if self.vrrp.is_empty() {
            s.push_str("(no VRRP instances)\n");
        }
        s
    }
}
