//! `lb show services|backends|flows|stats|table SERVICE`: the pinned maps as
//! a person (ipvsadm -Ln style) or a script (--json) wants them.

use std::{collections::BTreeMap, fmt::Write as _};

use anyhow::{Result, bail};
use lb_common::{
    Backend, BackendHealth, NO_BACKEND, Reason, ServiceKey, ServiceMeta,
    health::{
        CHECK_HTTP, CHECK_NONE, CHECK_SCRIPT, CHECK_TCP, HEALTH_DOWN, HEALTH_UNKNOWN, HEALTH_UP,
    },
};
use serde_json::{Value, json};

use crate::{addr, pinned::Pinned};

#[derive(Debug, Clone)]
pub enum View {
    Services,
    Backends,
    Flows { limit: usize },
    Stats,
    Table { service: String },
    Vrrp,
}

pub fn run(p: &Pinned, view: &View, as_json: bool) -> Result<String> {
    let (text, value) = match view {
        View::Services => services(p)?,
        View::Backends => backends(p)?,
        View::Flows { limit } => flows(p, *limit)?,
        View::Stats => stats(p)?,
        View::Table { service } => table(p, service)?,
        View::Vrrp => vrrp(p),
    };
    Ok(if as_json {
        format!("{:#}\n", value)
    } else {
        text
    })
}

fn sched_name(m: &ServiceMeta) -> &'static str {
    crate::sched::name(m.scheduler).unwrap_or("?")
}

fn forward_name(m: &ServiceMeta) -> &'static str {
    match m.forward {
        lb_common::FORWARD_DR => "dr",
        _ => "?",
    }
}

/// A backend's state in one word: up, drain (weight 0), no-mac, down.
pub fn state(b: &Backend) -> &'static str {
    if b.flags & lb_common::BACKEND_HAS_MAC == 0 {
        "no-mac"
    } else if b.flags & lb_common::BACKEND_HEALTHY == 0 {
        "down"
    } else if b.weight == 0 {
        "drain"
    } else {
        "up"
    }
}

fn vip(k: &ServiceKey) -> String {
    addr::socket(addr::from_bytes(&k.addr, k.family), k.port)
}

fn services(p: &Pinned) -> Result<(String, Value)> {
    let mut s = format!(
        "{:<5} {:<28} {:<9} {:<7} {:>8} {:>12} {:>14}\n",
        "Prot", "LocalAddress:Port", "Scheduler", "Forward", "Backends", "Packets", "Bytes"
    );
    let mut out = Vec::new();
    for (k, m) in p.services()? {
        let bs = p.backends(m.id)?;
        let up = bs.iter().filter(|(_, b)| state(b) == "up").count();
        let st = p.service_stats(m.id);
        let _ = writeln!(
            s,
            "{:<5} {:<28} {:<9} {:<7} {:>8} {:>12} {:>14}",
            addr::proto_name(k.proto).to_uppercase(),
            vip(&k),
            sched_name(&m),
            forward_name(&m),
            format!("{up}/{}", bs.len()),
            st.packets,
            st.bytes
        );
        out.push(json!({
            "service": addr::service_name(&k), "id": m.id, "scheduler": sched_name(&m),
            "forward": forward_name(&m), "backends": bs.len(), "backends_up": up,
            "packets": st.packets, "bytes": st.bytes, "active_slot": m.active_slot,
        }));
    }
    Ok((s, json!({ "services": out })))
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

fn check_name(kind: u8) -> &'static str {
    match kind {
        CHECK_HTTP => "http",
        CHECK_TCP => "tcp",
        CHECK_SCRIPT => "script",
        _ => "none",
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// "1.5s ago", or "-" for never.
fn ago(ms: u64, now: u64) -> String {
    if ms == 0 {
        return "-".into();
    }
    let d = now.saturating_sub(ms);
    if d < 10_000 {
        format!("{:.1}s ago", d as f64 / 1000.0)
    } else {
        format!("{}s ago", d / 1000)
    }
}

/// An effective weight in thousandths, as a person reads it.
fn milli(w: u32) -> String {
    if w.is_multiple_of(1000) {
        (w / 1000).to_string()
    } else {
        format!("{:.2}", w as f64 / 1000.0)
    }
}

fn backends(p: &Pinned) -> Result<(String, Value)> {
    let now = now_ms();
    let mut s = format!(
        "{:<5} {:<28} {:<9}\n",
        "Prot", "LocalAddress:Port", "Scheduler"
    );
    let _ = writeln!(
        s,
        "  -> {:<30} {:>6} {:>8} {:<8} {:<6} {:>10} {:>8} {:>7} {:<17} {:>7} {:>10} {:>12}  LastError",
        "RemoteAddress:Port",
        "Weight",
        "EffWght",
        "State",
        "Check",
        "LastCheck",
        "RTT",
        "Ok/Fail",
        "MAC",
        "Active",
        "Packets",
        "Bytes",
    );
    let mut out = Vec::new();
    for (k, m) in p.services()? {
        let _ = writeln!(
            s,
            "{:<5} {:<28} {:<9}",
            addr::proto_name(k.proto).to_uppercase(),
            vip(&k),
            sched_name(&m)
        );
        for (id, b) in p.backends(m.id)? {
            let a = addr::from_bytes(&b.addr, b.family);
            let st = p.backend_stats(id);
            let h = p.health(id).filter(|h| *h != BackendHealth::default());
            let state = backend_state(&b, h.as_ref());
            let mac = if state == "no-mac" {
                "-".to_string()
            } else {
                addr::mac(&b.mac)
            };
            let hh = h.unwrap_or_default();
            let effective = if h.is_some() {
                hh.effective_milli
            } else {
                b.weight * 1000
            };
            let checked = hh.kind != CHECK_NONE;
            // The last error matters while it is current.
            let error = if hh.consecutive_fail > 0 || hh.state == HEALTH_DOWN {
                hh.error()
            } else {
                ""
            };
            let _ = writeln!(
                s,
                "  -> {:<30} {:>6} {:>8} {:<8} {:<6} {:>10} {:>8} {:>7} {:<17} {:>7} {:>10} {:>12}  {}",
                addr::socket(a, k.port),
                b.weight,
                milli(effective),
                state,
                check_name(hh.kind),
                if checked {
                    ago(hh.last_check_ms, now)
                } else {
                    "-".into()
                },
                if checked && hh.checks > 0 {
                    format!("{:.1}ms", hh.rtt_us as f64 / 1000.0)
                } else {
                    "-".into()
                },
                if checked {
                    format!("{}/{}", hh.consecutive_ok, hh.consecutive_fail)
                } else {
                    "-".into()
                },
                mac,
                p.active(id),
                st.packets,
                st.bytes,
                error
            );
            let health = h.map(|h| json!({
                "check": check_name(h.kind),
                "state": match h.state { HEALTH_UP => "up", HEALTH_DOWN => "down", _ => "unknown" },
                "warming": h.warming != 0,
                "last_check_unix_ms": h.last_check_ms,
                "last_change_unix_ms": h.last_change_ms,
                "rtt_us": h.rtt_us,
                "consecutive_ok": h.consecutive_ok,
                "consecutive_fail": h.consecutive_fail,
                "checks": h.checks,
                "transitions": h.transitions,
                "last_error": if h.error().is_empty() { Value::Null } else { json!(h.error()) },
            }));
            out.push(json!({
                "service": addr::service_name(&k), "id": id, "address": a.to_string(), "weight": b.weight,
                "effective_weight": effective as f64 / 1000.0,
                "state": state, "mac": if state == "no-mac" { Value::Null } else { json!(mac) },
                "ifindex": b.ifindex, "packets": st.packets, "bytes": st.bytes,
                "active_flows": p.active(id),
                "health": health.unwrap_or(Value::Null),
            }));
        }
    }
    Ok((s, json!({ "backends": out })))
}

fn flows(p: &Pinned, limit: usize) -> Result<(String, Value)> {
    let mut s = format!(
        "{:<5} {:<44} {:<28} {}\n",
        "Prot", "Client", "LocalAddress:Port", "Backend"
    );
    let mut out = Vec::new();
    let mut list = p.flows(limit)?;
    list.sort_by_key(|(k, _)| (k.dst, k.dport, k.src, k.sport));
    for (k, v) in &list {
        let client = addr::socket(addr::from_bytes(&k.src, k.family), k.sport);
        let service = addr::socket(addr::from_bytes(&k.dst, k.family), k.dport);
        let backend = p
            .backend(v.backend)
            .map(|b| addr::from_bytes(&b.addr, b.family).to_string())
            .unwrap_or_else(|| "?".into());
        let _ = writeln!(
            s,
            "{:<5} {:<44} {:<28} {}",
            addr::proto_name(k.proto).to_uppercase(),
            client,
            service,
            backend
        );
        out.push(json!({ "proto": addr::proto_name(k.proto), "client": client, "service": service, "backend": backend, "backend_id": v.backend }));
    }
    if list.len() == limit {
        let _ = writeln!(s, "(first {limit} flows; --limit N for more)");
    }
    Ok((s, json!({ "flows": out })))
}

fn stats(p: &Pinned) -> Result<(String, Value)> {
    let mut s = String::from("Verdict reasons (packets, all CPUs):\n");
    let mut reasons = serde_json::Map::new();
    for r in Reason::ALL {
        let n = p.reason(r);
        let _ = writeln!(s, "  {:<22} {n:>14}", r.name());
        reasons.insert(r.name().into(), json!(n));
    }
    let w = p.agent_stats();
    let _ = writeln!(
        s,
        "\nMap writes by the agent (an unchanged config writes none):\n  tables rebuilt {:>8}   entries {:>10}   backends {:>8}   services {:>8}",
        w.tables, w.table_entries, w.backends, w.services
    );
    let (svc_text, svc_json) = services(p)?;
    s.push_str("\nPer service:\n");
    s.push_str(&svc_text);
    Ok((
        s,
        json!({ "reasons": reasons, "services": svc_json["services"],
                "writes": { "tables": w.tables, "table_entries": w.table_entries, "backends": w.backends, "services": w.services } }),
    ))
}

fn table(p: &Pinned, name: &str) -> Result<(String, Value)> {
    let Some(key) = addr::parse_service_name(name) else {
        bail!(
            "bad service {name:?}: write it as VIP:PORT/PROTO, e.g. 203.0.113.10:80/tcp or [2001:db8:f::10]:80/tcp"
        );
    };
    let Some((_, meta)) = p.services()?.into_iter().find(|(k, _)| *k == key) else {
        bail!("no service {name} in the maps (lb show services lists them)");
    };
    let entries = p.table(&meta)?;
    // Share of new flows per backend id: entries of a Maglev table or a
    // sequence; arcs of the hash space for a ring.
    let mut count: BTreeMap<u32, u64> = BTreeMap::new();
    let mut share: BTreeMap<u32, f64> = BTreeMap::new();
    if matches!(
        meta.scheduler,
        lb_common::SCHED_LEAST_CONN | lb_common::SCHED_SHORTEST_RESPONSE
    ) {
        // Candidates and weights: the share weights ask for; active counts
        // (and response times) decide each new flow.
        let stride = if meta.scheduler == lb_common::SCHED_LEAST_CONN {
            2
        } else {
            3
        };
        let total: u64 = entries.chunks_exact(stride).map(|c| c[1] as u64).sum();
        for c in entries.chunks_exact(stride) {
            count.insert(c[0], 1);
            share.insert(c[0], c[1] as f64 / total.max(1) as f64);
        }
    } else if meta.scheduler == lb_common::SCHED_RING {
        let ring: Vec<(u32, u32)> = entries.chunks_exact(2).map(|c| (c[0], c[1])).collect();
        for (i, &(p, b)) in ring.iter().enumerate() {
            let prev = if i == 0 {
                ring[ring.len() - 1].0
            } else {
                ring[i - 1].0
            };
            let arc = if ring.len() == 1 {
                4_294_967_296.0
            } else {
                p.wrapping_sub(prev) as f64
            };
            *share.entry(b).or_default() += arc / 4_294_967_296.0;
            *count.entry(b).or_default() += 1;
        }
    } else {
        for e in &entries {
            *count.entry(*e).or_default() += 1;
        }
        for (b, n) in &count {
            share.insert(*b, *n as f64 / entries.len().max(1) as f64);
        }
    }
    let backends = p.backends(meta.id)?;
    // What the table was built from: effective weights (warmup), in thousandths.
    let eff = |id: u32, b: &Backend| -> u64 {
        match p.health(id).filter(|h| *h != BackendHealth::default()) {
            Some(h) => h.effective_milli as u64,
            None => b.weight as u64 * 1000,
        }
    };
    let total_weight: u64 = backends
        .iter()
        .filter(|(_, b)| state(b) == "up")
        .map(|(id, b)| eff(*id, b))
        .sum();
    let mut s = format!(
        "{} scheduler={} entries {} of {} active slot {}\n  -> {:<36} {:>6} {:>10} {:>8} {:>8}\n",
        addr::service_name(&key),
        sched_name(&meta),
        meta.active_len(),
        meta.table_size,
        meta.active_slot,
        "RemoteAddress:Port",
        "Weight",
        "Entries",
        "Share",
        "Wanted"
    );
    let mut out = Vec::new();
    for (id, b) in &backends {
        let n = count.get(id).copied().unwrap_or(0);
        let wanted = if state(b) == "up" && total_weight > 0 {
            100.0 * eff(*id, b) as f64 / total_weight as f64
        } else {
            0.0
        };
        let a = addr::from_bytes(&b.addr, b.family);
        let _ = writeln!(
            s,
            "  -> {:<36} {:>6} {:>10} {:>7.2}% {:>7.2}%",
            addr::socket(a, key.port),
            b.weight,
            n,
            100.0 * share.get(id).copied().unwrap_or(0.0),
            wanted
        );
        out.push(json!({ "address": a.to_string(), "weight": b.weight, "entries": n, "share": share.get(id).copied().unwrap_or(0.0), "wanted": wanted / 100.0 }));
    }
    if let Some(n) = count.get(&NO_BACKEND) {
        let _ = writeln!(
            s,
            "  (no backend: {n} entries; new flows to them are dropped)"
        );
    }
    Ok((
        s,
        json!({ "service": addr::service_name(&key), "scheduler": sched_name(&meta), "table_size": meta.table_size, "entries": meta.active_len(), "active_slot": meta.active_slot, "backends": out, "empty_entries": count.get(&NO_BACKEND).copied().unwrap_or(0) }),
    ))
}

fn vrrp(p: &Pinned) -> (String, Value) {
    use lb_common::vrrp::{VRRP_BACKUP, VRRP_FAULT, VRRP_MASTER};
    let now = now_ms();
    let mut s = format!(
        "{:<12} {:<7} {:>4} {:>4} {:>4} {:>3} {:>8} {:<26} {:>11} {:>6} {:>6} {:>6}  Dropped\n",
        "Instance",
        "State",
        "Prio",
        "Eff",
        "VRID",
        "Ver",
        "Interval",
        "Master",
        "LastAdvert",
        "Trans",
        "Sent",
        "Recv"
    );
    let mut out = Vec::new();
    for v in p.vrrp() {
        let state = match v.state {
            VRRP_MASTER => "MASTER",
            VRRP_BACKUP => "BACKUP",
            VRRP_FAULT => "FAULT",
            _ => "INIT",
        };
        let master = if v.family == 0 {
            "-".to_string()
        } else {
            addr::from_bytes(&v.master, v.family).to_string()
        };
        let drops = crate::vrrp::instance::drops_by_name(&v);
        let dropped: Vec<String> = drops
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| format!("{k}={n}"))
            .collect();
        let _ = writeln!(
            s,
            "{:<12} {:<7} {:>4} {:>4} {:>4} {:>3} {:>7.2}s {:<26} {:>11} {:>6} {:>6} {:>6}  {}",
            v.name(),
            state,
            v.priority,
            v.effective_priority,
            v.vrid,
            v.version,
            v.interval_cs as f64 / 100.0,
            master,
            ago(v.last_advert_ms, now),
            v.transitions,
            v.adverts_sent,
            v.adverts_received,
            if dropped.is_empty() {
                "-".to_string()
            } else {
                dropped.join(" ")
            }
        );
        out.push(json!({
            "instance": v.name(), "state": state, "priority": v.priority,
            "effective_priority": v.effective_priority, "vrid": v.vrid, "version": v.version,
            "advert_interval_cs": v.interval_cs,
            "master": if v.family == 0 { Value::Null } else { json!(master) },
            "last_advert_unix_ms": v.last_advert_ms, "last_change_unix_ms": v.last_change_ms,
            "transitions": v.transitions, "adverts_sent": v.adverts_sent,
            "adverts_received": v.adverts_received, "dropped": drops,
        }));
    }
    if out.is_empty() {
        s.push_str("(no VRRP instances)\n");
    }
    (s, json!({ "vrrp": out }))
}
