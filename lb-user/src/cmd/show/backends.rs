//! `lb show backends`: every backend under its service, with health.

use anyhow::Result;
use lb_common::{
    BACKEND_HAS_MAC, BACKEND_HEALTHY, Backend, BackendHealth, ServiceKey,
    health::{CHECK_NONE, HEALTH_DOWN, HEALTH_UNKNOWN, check_kind_name, health_state_name},
};
use serde::Serialize;

use super::{
    View,
    render::{self, Col, Row, ago, left, now_ms, right},
    services::{prot_and_vip, scheduler_name},
};
use crate::{addr, maps::Pinned};

/// A backend's state in one word: up, drain (weight 0), no-mac, down.
pub fn state(b: &Backend) -> &'static str {
    if b.flags & BACKEND_HAS_MAC == 0 {
        "no-mac"
    } else if b.flags & BACKEND_HEALTHY == 0 {
        "down"
    } else if b.weight == 0 {
        "drain"
    } else {
        "up"
    }
}

/// A backend in one word, health included: up, warming, drain, starting
/// (not checked yet), down, no-mac.
pub fn backend_state(b: &Backend, h: Option<&BackendHealth>) -> &'static str {
    match (state(b), h) {
        ("up", Some(h)) if h.warming != 0 => "warming",
        ("down", Some(h)) if h.state == HEALTH_UNKNOWN => "starting",
        (s, _) => s,
    }
}

/// What the agent published about a backend's checks.
#[derive(Serialize)]
pub struct HealthRow {
    pub check: &'static str,
    pub state: &'static str,
    pub warming: bool,
    pub last_check_unix_ms: u64,
    pub last_change_unix_ms: u64,
    pub rtt_us: u32,
    pub consecutive_ok: u32,
    pub consecutive_fail: u32,
    pub checks: u32,
    pub transitions: u32,
    pub last_error: Option<String>,
}

impl From<&BackendHealth> for HealthRow {
    fn from(h: &BackendHealth) -> Self {
        HealthRow {
            check: check_kind_name(h.kind),
            state: health_state_name(h.state),
            warming: h.warming != 0,
            last_check_unix_ms: h.last_check_ms,
            last_change_unix_ms: h.last_change_ms,
            rtt_us: h.rtt_us,
            consecutive_ok: h.consecutive_ok,
            consecutive_fail: h.consecutive_fail,
            checks: h.checks,
            transitions: h.transitions,
            last_error: Some(h.error().to_string()).filter(|e| !e.is_empty()),
        }
    }
}

#[derive(Serialize)]
pub struct BackendRow {
    #[serde(skip)]
    pub key: ServiceKey,
    #[serde(skip)]
    pub scheduler: &'static str,
    #[serde(skip)]
    pub down: bool,
    pub service: String,
    pub id: u32,
    pub address: String,
    pub weight: u32,
    pub effective_weight: f64,
    pub state: &'static str,
    pub mac: Option<String>,
    /// Where frames go first: the backend itself (DR) or the router the
    /// FIB chose (tunnels); `mac` is that hop's.
    pub next_hop: Option<String>,
    pub ifindex: u32,
    pub packets: u64,
    pub bytes: u64,
    pub active_flows: u64,
    pub health: Option<HealthRow>,
}

#[derive(Serialize)]
pub struct Backends {
    pub backends: Vec<BackendRow>,
}

/// The weight a backend's table share was built from (warmup), in
/// thousandths: the published effective weight, else the configured one.
pub fn effective_milli(b: &Backend, h: Option<&BackendHealth>) -> u64 {
    h.map_or(b.weight as u64 * 1000, |h| h.effective_milli as u64)
}

impl Backends {
    pub fn read(p: &Pinned) -> Result<Self> {
        let mut backends = Vec::new();
        for (key, m) in p.services()? {
            for (id, b) in p.backends(m.id)? {
                let a = addr::from_bytes(&b.addr, b.family);
                let st = p.backend_stats(id);
                let h = p.health(id);
                let state = backend_state(&b, h.as_ref());
                backends.push(BackendRow {
                    key,
                    scheduler: scheduler_name(m.scheduler),
                    down: h.is_some_and(|h| h.state == HEALTH_DOWN),
                    service: addr::service_name(&key),
                    id,
                    address: a.to_string(),
                    weight: b.weight,
                    effective_weight: effective_milli(&b, h.as_ref()) as f64 / 1000.0,
                    state,
                    mac: (state != "no-mac").then(|| addr::mac(&b.mac)),
                    next_hop: (b.via != [0; 16])
                        .then(|| addr::from_bytes(&b.via, b.family).to_string()),
                    ifindex: b.ifindex,
                    packets: st.packets,
                    bytes: st.bytes,
                    active_flows: p.active(id),
                    health: h.as_ref().map(HealthRow::from),
                });
            }
        }
        Ok(Backends { backends })
    }
}

/// An effective weight as a person reads it.
fn weight_text(w: f64) -> String {
    if w.fract() == 0.0 {
        format!("{w}")
    } else {
        format!("{w:.2}")
    }
}

impl Row for BackendRow {
    const GROUP_COLS: Option<&'static [Col]> = Some(&[
        left("Prot", 5),
        left("LocalAddress:Port", 28),
        left("Scheduler", 9),
    ]);
    const COLS: &'static [Col] = &[
        left("RemoteAddress:Port", 30),
        right("Weight", 6),
        right("EffWght", 8),
        left("State", 8),
        left("Check", 6),
        right("LastCheck", 10),
        right("RTT", 8),
        right("Ok/Fail", 7),
        left("NextHop", 18),
        left("MAC", 17),
        right("Active", 7),
        right("Packets", 10),
        right("Bytes", 12),
        left(" LastError", 0),
    ];
    fn group(&self) -> Vec<String> {
        let [prot, vip] = prot_and_vip(&self.key);
        vec![prot, vip, self.scheduler.into()]
    }
    fn cells(&self) -> Vec<String> {
        let address = self
            .address
            .parse()
            .map_or_else(|_| self.address.clone(), |a| addr::socket(a, self.key.port));
        let h = self
            .health
            .as_ref()
            .filter(|h| h.check != check_kind_name(CHECK_NONE));
        let dash = || "-".to_string();
        // The last error matters while it is current.
        let error = self
            .health
            .as_ref()
            .filter(|h| h.consecutive_fail > 0 || self.down)
            .and_then(|h| h.last_error.clone())
            .unwrap_or_default();
        vec![
            address,
            self.weight.to_string(),
            weight_text(self.effective_weight),
            self.state.into(),
            self.health.as_ref().map_or("none", |h| h.check).into(),
            h.map_or_else(dash, |h| ago(h.last_check_unix_ms, now_ms())),
            h.filter(|h| h.checks > 0)
                .map_or_else(dash, |h| format!("{:.1}ms", h.rtt_us as f64 / 1000.0)),
            h.map_or_else(dash, |h| {
                format!("{}/{}", h.consecutive_ok, h.consecutive_fail)
            }),
            match &self.next_hop {
                Some(h) if *h == self.address => "direct".into(),
                Some(h) => h.clone(),
                None => dash(),
            },
            self.mac.clone().unwrap_or_else(dash),
            self.active_flows.to_string(),
            self.packets.to_string(),
            self.bytes.to_string(),
            format!(" {error}"),
        ]
    }
}

impl View for Backends {
    fn text(&self) -> String {
        render::text(&self.backends)
    }
}
