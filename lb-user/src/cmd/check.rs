//! `lb check -c FILE`: validate and print the plan; exit 1 on error.

use std::{fmt::Write as _, path::PathBuf};

use crate::{
    addr,
    config::{Check, Config, Initial, Probe},
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
            Ok(true)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(false)
        }
    }
}

pub fn plan_text(cfg: &Config) -> String {
    let a = &cfg.agent;
    let mut s = String::new();
    let _ = writeln!(s, "{}: OK", cfg.path.display());
    let _ = writeln!(
        s,
        "agent: XDP on {} ({:?} mode), pins in {}, flow table {} entries, Maglev M = {}",
        a.interface,
        a.xdp_mode,
        a.pin_dir.display(),
        a.flow_table_size,
        a.table_size
    );
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
                addr::socket(b.address, svc.port),
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
    s
}

/// One line a person can check against what they meant.
fn check_text(c: &Check) -> String {
    let what = match &c.probe {
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
