//! `/metrics`: what the pinned maps say, read at scrape time (no counter is
//! kept twice), plus the check durations and outcomes the agent observes.
//! Label sets are bounded by the config: service and backend, never a flow.

use std::{fmt, sync::OnceLock, time::Duration};

use lb_common::{
    BACKEND_USABLE, Reason,
    health::HEALTH_UP,
    vrrp::{VRRP_BACKUP, VRRP_FAULT, VRRP_INIT, VRRP_MASTER, vrrp_state_name},
};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{
        MetricType,
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::{ConstGauge, Gauge},
        histogram::Histogram,
    },
    registry::Registry,
};

use crate::{addr, cmd::show::effective_milli, maps::Pinned, vrrp::codec::drops_by_name};

type Labels = Vec<(&'static str, String)>;

/// Check durations, seconds: 1 ms to 10 s.
const CHECK_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

fn check_histogram() -> Histogram {
    Histogram::new(CHECK_BUCKETS)
}

/// What the agent observes of health checks, and what it announces
/// through BGP (not in any map).
#[derive(Clone)]
pub struct Checks {
    durations: Family<Labels, Histogram, fn() -> Histogram>,
    results: Family<Labels, Counter>,
    announced: Family<Labels, Gauge>,
}

impl Checks {
    /// One finished check of `backend` in `service`.
    pub fn observe(&self, service: &str, backend: &str, took: Duration, ok: bool) {
        let l = vec![
            ("service", service.to_string()),
            ("backend", backend.to_string()),
        ];
        self.durations.get_or_create(&l).observe(took.as_secs_f64());
        let mut r = l;
        r.push(("outcome", if ok { "ok" } else { "fail" }.to_string()));
        self.results.get_or_create(&r).inc();
    }

    /// Whether `vip` is announced through BGP now (1) or withdrawn (0).
    pub fn announced(&self, vip: &str, on: bool) {
        self.announced
            .get_or_create(&vec![("vip", vip.to_string())])
            .set(on as i64);
    }

    /// Forget a backend no longer configured: its series end, so the
    /// label sets stay those of the config.
    pub fn forget(&self, service: &str, backend: &str) {
        let l = vec![
            ("service", service.to_string()),
            ("backend", backend.to_string()),
        ];
        self.durations.remove(&l);
        for outcome in ["ok", "fail"] {
            let mut r = l.clone();
            r.push(("outcome", outcome.to_string()));
            self.results.remove(&r);
        }
    }
}

/// The maps, once the agent has loaded them.
pub struct FromMaps {
    pub pins: OnceLock<Pinned>,
    pub flow_capacity: u32,
}

impl fmt::Debug for FromMaps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FromMaps")
    }
}

/// The registry: map-backed metrics and the agent's check observations.
pub fn registry(maps: std::sync::Arc<FromMaps>) -> (Registry, Checks) {
    let mut r = Registry::default();
    let checks = Checks {
        durations: Family::new_with_constructor(check_histogram),
        results: Family::default(),
        announced: Family::default(),
    };
    r.register(
        "lb_backend_check_duration_seconds",
        "Duration of each health check of a backend",
        checks.durations.clone(),
    );
    r.register(
        "lb_backend_checks",
        "Health checks of a backend by outcome (ok, fail)",
        checks.results.clone(),
    );
    r.register(
        "lb_bgp_announced",
        "1 while the VIP is on the BGP device (BIRD announces it), 0 while withdrawn",
        checks.announced.clone(),
    );
    r.register_collector(Box::new(maps));
    (r, checks)
}

/// One metric family of constant values.
fn family(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    rows: &[(Labels, f64)],
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, kind)?;
    for (labels, v) in rows {
        let f = m.encode_family(labels)?;
        match kind {
            MetricType::Counter => ConstCounter::new(*v as u64).encode(f)?,
            _ => ConstGauge::new(*v).encode(f)?,
        }
    }
    Ok(())
}

fn one(labels: &[(&'static str, &str)]) -> Labels {
    labels.iter().map(|(k, v)| (*k, v.to_string())).collect()
}

impl Collector for FromMaps {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        use MetricType::{Counter as C, Gauge as G};
        family(
            &mut enc,
            "lb_build_info",
            "The running lb's version",
            G,
            &[(one(&[("version", env!("CARGO_PKG_VERSION"))]), 1.0)],
        )?;
        let Some(p) = self.pins.get() else {
            return Ok(());
        };
        let reasons: Vec<(Labels, f64)> = Reason::ALL
            .iter()
            .map(|r| (one(&[("reason", r.name())]), p.reason(*r) as f64))
            .collect();
        family(
            &mut enc,
            "lb_verdicts",
            "Packets by the data plane's verdict reason",
            C,
            &reasons,
        )?;
        let services = p.services().unwrap_or_default();
        let (mut sp, mut sb) = (Vec::new(), Vec::new());
        let mut b: [Vec<(Labels, f64)>; 7] = Default::default();
        for (key, meta) in &services {
            let name = addr::service_name(key);
            let st = p.service_stats(meta.id);
            sp.push((one(&[("service", &name)]), st.packets as f64));
            sb.push((one(&[("service", &name)]), st.bytes as f64));
            for (id, be) in p.backends(meta.id).unwrap_or_default() {
                let a = addr::from_bytes(&be.addr, be.family).to_string();
                let l = one(&[("service", &name), ("backend", &a)]);
                let st = p.backend_stats(id);
                let published = p.health(id);
                let effective = effective_milli(&be, published.as_ref()) as f64 / 1000.0;
                let h = published.unwrap_or_default();
                let checked = h.kind != lb_common::health::CHECK_NONE;
                let up = be.flags & BACKEND_USABLE == BACKEND_USABLE
                    && (!checked || h.state == HEALTH_UP);
                b[0].push((l.clone(), st.packets as f64));
                b[1].push((l.clone(), st.bytes as f64));
                b[2].push((l.clone(), p.active(id) as f64));
                b[3].push((l.clone(), be.weight as f64));
                b[4].push((l.clone(), effective));
                b[5].push((l.clone(), up as u8 as f64));
                b[6].push((l, h.transitions as f64));
            }
        }
        family(
            &mut enc,
            "lb_service_packets",
            "Packets forwarded for a service",
            C,
            &sp,
        )?;
        family(
            &mut enc,
            "lb_service_bytes",
            "Bytes forwarded for a service",
            C,
            &sb,
        )?;
        let specs: [(&str, &str, MetricType); 7] = [
            ("lb_backend_packets", "Packets forwarded to a backend", C),
            ("lb_backend_bytes", "Bytes forwarded to a backend", C),
            (
                "lb_backend_active_flows",
                "Flows placed on a backend that the client has not ended",
                G,
            ),
            ("lb_backend_weight", "A backend's configured weight", G),
            (
                "lb_backend_effective_weight",
                "The weight a backend's table share is built from (warmup, health)",
                G,
            ),
            ("lb_backend_up", "1 while a backend may receive packets", G),
            (
                "lb_backend_health_transitions",
                "Up/down transitions of a backend's health check",
                C,
            ),
        ];
        for (i, (name, help, kind)) in specs.iter().enumerate() {
            family(&mut enc, name, help, *kind, &b[i])?;
        }
        family(
            &mut enc,
            "lb_flow_table_entries",
            "Flows in the flow table",
            G,
            &[(Vec::new(), p.flow_count() as f64)],
        )?;
        family(
            &mut enc,
            "lb_flow_table_capacity",
            "Flows the flow table holds before evicting the oldest",
            G,
            &[(Vec::new(), self.flow_capacity as f64)],
        )?;
        let w = p.agent_stats();
        family(
            &mut enc,
            "lb_table_rebuilds",
            "Lookup-table slots the agent rebuilt",
            C,
            &[(Vec::new(), w.tables as f64)],
        )?;
        family(
            &mut enc,
            "lb_map_writes",
            "Map entries the agent wrote, by map",
            C,
            &[
                (one(&[("map", "tables")]), w.table_entries as f64),
                (one(&[("map", "backends")]), w.backends as f64),
                (one(&[("map", "services")]), w.services as f64),
            ],
        )?;
        let vrrp = p.vrrp();
        let mut v: [Vec<(Labels, f64)>; 7] = Default::default();
        for s in &vrrp {
            let i = one(&[("instance", s.name())]);
            for st in [VRRP_INIT, VRRP_BACKUP, VRRP_MASTER, VRRP_FAULT] {
                let mut l = i.clone();
                l.push(("state", vrrp_state_name(st).to_lowercase()));
                v[0].push((l, (s.state == st) as u8 as f64));
            }
            v[1].push((i.clone(), s.priority as f64));
            v[2].push((i.clone(), s.effective_priority as f64));
            v[3].push((i.clone(), s.transitions as f64));
            v[4].push((i.clone(), s.adverts_sent as f64));
            v[5].push((i.clone(), s.adverts_received as f64));
            for (reason, n) in drops_by_name(s) {
                let mut l = i.clone();
                l.push(("reason", reason.to_string()));
                v[6].push((l, n as f64));
            }
        }
        let specs: [(&str, &str, MetricType); 7] = [
            ("lb_vrrp_state", "1 for a VRRP instance's current state", G),
            (
                "lb_vrrp_priority",
                "A VRRP instance's configured priority",
                G,
            ),
            (
                "lb_vrrp_effective_priority",
                "A VRRP instance's priority after tracking",
                G,
            ),
            ("lb_vrrp_transitions", "VRRP state transitions", C),
            ("lb_vrrp_adverts_sent", "VRRP advertisements sent", C),
            (
                "lb_vrrp_adverts_received",
                "VRRP advertisements accepted",
                C,
            ),
            (
                "lb_vrrp_adverts_dropped",
                "VRRP packets dropped, by reason",
                C,
            ),
        ];
        for (i, (name, help, kind)) in specs.iter().enumerate() {
            family(&mut enc, name, help, *kind, &v[i])?;
        }
        sync_families(&mut enc, p)
    }
}

/// Flow sync, per peer (`peer="none"`: batches from no configured peer).
fn sync_families(enc: &mut DescriptorEncoder, p: &Pinned) -> fmt::Result {
    type Field = fn(&lb_common::sync::SyncPeerStats) -> u64;
    let specs: [(&str, &str, Field); 8] = [
        ("lb_sync_batches_sent", "Sync batches sent to a peer", |s| {
            s.batches_sent
        }),
        ("lb_sync_flows_sent", "Flows sent to a peer", |s| {
            s.flows_sent
        }),
        (
            "lb_sync_batches_received",
            "Sync batches accepted from a peer",
            |s| s.batches_received,
        ),
        (
            "lb_sync_flows_received",
            "Flows received from a peer",
            |s| s.flows_received,
        ),
        (
            "lb_sync_flows_skipped",
            "Received flows of a service or backend this node lacks",
            |s| s.flows_skipped,
        ),
        (
            "lb_sync_bad_auth",
            "Sync batches dropped: wrong or missing key, or from no peer",
            |s| s.bad_auth,
        ),
        (
            "lb_sync_malformed",
            "Sync batches dropped: malformed",
            |s| s.malformed,
        ),
        (
            "lb_sync_dumps_served",
            "Full flow dumps sent to a peer",
            |s| s.dumps_served,
        ),
    ];
    let peers = p.sync();
    for (name, help, field) in specs {
        let rows: Vec<(Labels, f64)> = peers
            .iter()
            .map(|(a, s)| {
                let peer = a.map_or_else(|| "none".to_string(), |a| a.to_string());
                (vec![("peer", peer)], field(s) as f64)
            })
            .collect();
        family(enc, name, help, MetricType::Counter, &rows)?;
    }
    let lag: Vec<(Labels, f64)> = peers
        .iter()
        .filter_map(|(a, s)| a.map(|a| (vec![("peer", a.to_string())], s.lag_us as f64 / 1e6)))
        .collect();
    family(
        enc,
        "lb_sync_lag_seconds",
        "Age of the last sync batch from a peer on arrival",
        MetricType::Gauge,
        &lag,
    )
}
