//! `lb check -c FILE`: validate and print the plan; exit 1 on error.

use std::{fmt::Write as _, path::Path};

use crate::{addr, config::Config};

pub fn run(path: &Path) -> anyhow::Result<bool> {
    match Config::load(path) {
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
            svc.scheduler,
            svc.forward
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
                "  -> {:<40} weight {:>5} ({share:5.1}%){via}{drain}",
                addr::socket(b.address, svc.port),
                b.weight
            );
        }
    }
    s
}
