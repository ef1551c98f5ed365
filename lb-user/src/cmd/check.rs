//! `lb check -c FILE`: validate and print the plan; exit 1 on error.

use std::{fmt::Write as _, path::PathBuf};

use crate::{
    addr,
    config::{Check, Config, Initial, Probe, Vrrp},
};

/// Validate a config and print what it would do; exit 1 on error.
#[derive(clap::Args)]
#[command(after_help = "Example:\n  lb check -c /etc/lb/lb.toml")]
pub struct Args {
    #[arg(short, long)]
    config: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<bool> {
    match Config::load(&args.config) {
        Ok(cfg) => {
            print!("{}", plan_text(&cfg));
            for w in nat_reach(&cfg) {
                eprintln!("warning: {w}");
            }
            Ok(true)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(false)
        }
    }
}

/// NAT backends whose route leaves by an interface the program does not
/// run on (their replies would not be translated), or that have no route:
/// warnings, since routes may be set up after the config is written.
fn nat_reach(cfg: &Config) -> Vec<String> {
    let backends: Vec<std::net::IpAddr> = cfg
        .services
        .iter()
        .filter(|s| s.forward.nat())
        .flat_map(|s| s.backends.iter().map(|b| b.address))
        .collect();
    if backends.is_empty() {
        return Vec::new();
    }
    let ours: Vec<&str> = cfg.agent.interfaces().collect();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return vec![format!("cannot check the NAT backends' routes: {e}")],
    };
    rt.block_on(async {
        let net = match crate::agent::neigh::Net::new() {
            Ok(n) => n,
            Err(e) => return vec![format!("cannot check the NAT backends' routes: {e}")],
        };
        let mut out = Vec::new();
        for b in backends {
            match net.route(b).await {
                Err(_) => out.push(format!("no route to NAT backend {b} on this host")),
                Ok(r) => match net.link_by_index(r.ifindex).await {
                    Ok((name, _)) if !ours.contains(&name.as_str()) => out.push(format!(
                        "NAT backend {b} is reached via {name}, where the program does not run: its replies would not be translated (set [agent] backend_interface = \"{name}\")"
                    )),
                    _ => {}
                },
            }
        }
        out
    })
}

pub fn plan_text(cfg: &Config) -> String {
    let a = &cfg.agent;
    let mut s = String::new();
    let _ = writeln!(s, "{}: OK", cfg.path.display());
    if cfg.services.is_empty() {
        let _ = writeln!(
            s,
            "agent: VRRP only (no [[service]]): no XDP program is attached; status pinned in {}",
            a.pin_dir.display()
        );
    } else {
        let _ = writeln!(
            s,
            "agent: XDP on {} ({:?} mode), pins in {}, flow table {} entries, Maglev M = {}",
            a.interface,
            a.xdp_mode,
            a.pin_dir.display(),
            a.flow_table_size,
            a.table_size
        );
    }
    if let Some(api) = a.api {
        let _ = writeln!(s, "api: http://{api}/metrics, /status, /healthz");
    }
    if cfg.services.iter().any(|s| s.forward.tunnel()) {
        let src: Vec<String> = [a.tunnel.v4, a.tunnel.v6]
            .into_iter()
            .flatten()
            .map(|x| format!("{}/{}", x.addr, x.prefix_len))
            .collect();
        let _ = writeln!(
            s,
            "tunnels: outer source {}{}, GUE port {}; forwarding turned on on {} (the FIB answers XDP only then)",
            src.join(", "),
            if a.tunnel.hash {
                " (host bits from the flow hash)"
            } else {
                ""
            },
            a.tunnel.gue_port,
            a.interface
        );
    }
    if cfg.services.iter().any(|s| s.forward.nat()) {
        let n = &a.nat;
        let d = |t| humantime::format_duration(t);
        let src: Vec<String> = n.snat.iter().map(ToString::to_string).collect();
        let _ = writeln!(
            s,
            "nat: the program on {}; full-NAT from {} ports {}-{}; idle timeouts TCP {}, closing {}, UDP {}; forwarding and accept_local turned on",
            a.interfaces().collect::<Vec<_>>().join(" and "),
            if src.is_empty() {
                "(no snat_addresses)".to_string()
            } else {
                src.join(", ")
            },
            n.ports.0,
            n.ports.1,
            d(n.tcp),
            d(n.tcp_fin),
            d(n.udp)
        );
    }
    if let Some(y) = &cfg.sync {
        let peers: Vec<String> = y.peers.iter().map(ToString::to_string).collect();
        let _ = writeln!(
            s,
            "sync: flows to and from {} on UDP port {}, batched every {}, {}",
            peers.join(", "),
            y.port,
            humantime::format_duration(y.interval),
            if y.key.is_some() {
                "HMAC-SHA256 signed"
            } else {
                "unsigned (no key)"
            }
        );
    }
    if let Some(b) = &cfg.bgp {
        let d = |t| humantime::format_duration(t);
        let _ = writeln!(
            s,
            "bgp: each VIP on TUN device {} (BIRD's protocol direct exports it) while every service on it has {} healthy backend(s); SIGTERM withdraws and forwards {} more; lb drain stops after {} without VIP packets (at most {})",
            b.device,
            b.min_backends,
            d(b.grace),
            d(b.drain_idle),
            d(b.drain_timeout)
        );
        if !cfg.vrrp.is_empty() {
            let _ = writeln!(
                s,
                "bgp: a VIP a [[vrrp]] instance holds is announced only while this node is its master"
            );
        }
    }
    for svc in &cfg.services {
        let total: u32 = svc.backends.iter().map(|b| b.weight).sum();
        let _ = writeln!(
            s,
            "service {} scheduler={} forward={}",
            svc.name(),
            svc.scheduler.name(),
            svc.forward.name()
        );
        if svc.backends.is_empty() {
            let _ = writeln!(s, "  (no backends: packets to it are dropped)");
        }
        for b in &svc.backends {
            let share = if total == 0 {
                0.0
            } else {
                100.0 * b.weight as f64 / total as f64
            };
            let via = b
                .interface
                .as_deref()
                .map(|i| format!(" via {i}"))
                .unwrap_or_default();
            let drain = if b.weight == 0 {
                " (drained: no new flows)"
            } else {
                ""
            };
            let _ = writeln!(
                s,
                "  -> {:<40} weight {:>5} ({share:5.1}%){via}{drain}; check {}",
                addr::socket(b.address, b.port.unwrap_or(svc.port)),
                b.weight,
                check_text(&b.check)
            );
        }
        if !svc.warmup.is_zero() {
            let _ = writeln!(
                s,
                "  warmup {} in steps of {}: a backend that comes up ramps from 0 to its weight",
                humantime::format_duration(svc.warmup),
                humantime::format_duration(svc.warmup_step)
            );
        }
    }
    for v in &cfg.vrrp {
        vrrp_text(&mut s, v);
    }
    s
}

/// A VRRP instance as a person reads it: who, where, what moves, who
/// listens, what lowers it.
fn vrrp_text(s: &mut String, v: &Vrrp) {
    let d = |t| humantime::format_duration(t);
    let vips: Vec<String> = v
        .vips
        .iter()
        .map(|x| format!("{}/{}", x.addr, x.prefix))
        .collect();
    let _ = writeln!(
        s,
        "vrrp {} on {}: VRID {}, priority {}{}, VRRPv{} adverts every {}, {}",
        v.name,
        v.interface,
        v.vrid,
        v.priority,
        if v.priority == 255 {
            " (address owner)"
        } else {
            ""
        },
        v.version.number(),
        d(v.advert_interval),
        if v.preempt {
            format!("preempt after {}", d(v.preempt_delay))
        } else {
            "nopreempt".into()
        }
    );
    let _ = writeln!(s, "  VIPs {}", vips.join(" "));
    if !v.vips_excluded.is_empty() {
        let excluded: Vec<String> = v
            .vips_excluded
            .iter()
            .map(|x| format!("{}/{}", x.addr, x.prefix))
            .collect();
        let _ = writeln!(s, "  moved but not advertised {}", excluded.join(" "));
    }
    let peers = |p: &[std::net::IpAddr]| {
        if p.is_empty() {
            "multicast".to_string()
        } else {
            format!(
                "unicast to {}",
                p.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        }
    };
    let _ = writeln!(s, "  adverts: {}", peers(&v.unicast_peers));
    for h in &v.heartbeat_paths {
        let _ = writeln!(
            s,
            "  heartbeat path {}: {}",
            h.interface,
            peers(&h.unicast_peers)
        );
    }
    for i in &v.track_interfaces {
        let _ = writeln!(s, "  track interface {i}: FAULT while it is down");
    }
    for t in &v.track_scripts {
        let _ = writeln!(
            s,
            "  track script {:?} every {}: priority -{} while it fails",
            t.command,
            d(t.interval),
            t.weight
        );
    }
    for t in &v.track_services {
        let _ = writeln!(
            s,
            "  track service {}: priority -{} while it has no usable backend",
            t.service, t.weight
        );
    }
    if let Some(n) = &v.notify {
        let _ = writeln!(s, "  notify {n:?} NAME FROM TO on every transition");
    }
}

/// One line a person can check against what they meant.
fn check_text(c: &Check) -> String {
    let mut what = match &c.probe {
        Probe::None => return "none (always up)".into(),
        Probe::Http(h) => {
            let mut w = format!("{} GET {}", if h.tls { "https" } else { "http" }, h.path);
            if let Some(p) = h.port {
                let _ = write!(w, " port {p}");
            }
            if let Some(host) = &h.host {
                let _ = write!(w, " Host {host}");
            }
            let _ = write!(w, " expect {:?}", h.expect_status);
            if let Some(b) = &h.expect_body {
                let _ = write!(w, " body contains {b:?}");
            }
            if h.tls && !h.tls_verify {
                w.push_str(" (certificate not verified)");
            }
            w
        }
        Probe::Tcp { port } => match port {
            Some(p) => format!("tcp connect port {p}"),
            None => "tcp connect".into(),
        },
        Probe::Script { command } => format!("script {command:?}"),
    };
    if c.via == crate::config::Via::Dataplane {
        what.push_str(" to the VIP through the data path");
    }
    format!(
        "{what}, every {}, timeout {}, down after {} failures {} apart, up after {} passes, starts {}",
        humantime::format_duration(c.interval),
        humantime::format_duration(c.timeout),
        c.retries,
        humantime::format_duration(c.retry_delay),
        c.rise,
        match c.initial {
            Initial::Up => "up",
            Initial::Down => "down",
        }
    )
}
