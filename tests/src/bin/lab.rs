//! `lab`: the namespace lab behind `cargo xtask lab` and `cargo xtask run`.
//!
//!   lab run  LB_BIN HTTP_BIN     up, start lb1 and lb2 (VRRP), print how to use it, wait for Ctrl-C, tear down
//!   lab up   LB_BIN HTTP_BIN     the same, but leave it running (detached) and exit
//!   lab up   LB_BIN HTTP_BIN --bgp N   N balancers announcing over BGP to a router (ECMP), detached
//!   lab down [PREFIX]            tear down one lab, or every lab
//!   lab status                   list running labs and their balancers' state
//!   lab sweep                    remove labs whose processes are all gone (a killed run's leftovers)

use std::{
    path::PathBuf,
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use anyhow::{Result, bail};
use lb_tests::lab::{self, Lab, LabSpec, VIP4, VIP6};

static STOP: AtomicBool = AtomicBool::new(false);

/// println! that never panics: once the terminal is gone (a dropped SSH
/// session, a closed pane) stdout fails, and clean-up must go on.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some(cmd @ ("run" | "up")) => {
            let (Some(lb), Some(http)) = (args.get(1), args.get(2)) else {
                bail!("usage: lab {cmd} LB_BIN HTTP_BIN");
            };
            let bgp = match (args.get(3).map(String::as_str), args.get(4)) {
                (Some("--bgp"), Some(n)) => Some(n.parse::<u8>()?),
                (None, _) => None,
                _ => bail!("usage: lab {cmd} LB_BIN HTTP_BIN [--bgp N]"),
            };
            match bgp {
                Some(n) => up_bgp(PathBuf::from(lb), PathBuf::from(http), n, cmd == "up"),
                None => up(PathBuf::from(lb), PathBuf::from(http), cmd == "up"),
            }
        }
        Some("down") => {
            let which = match args.get(1) {
                Some(p) => vec![p.clone()],
                None => lab::running(),
            };
            for p in &which {
                say!("lab: removing {p}");
                lab::remove(p);
            }
            if which.is_empty() {
                say!("lab: no lab is running");
            }
            Ok(())
        }
        Some("status") => status(),
        Some("sweep") => {
            for p in lab::sweep() {
                say!("lab: removed {p}: every process it started is gone");
            }
            Ok(())
        }
        _ => bail!("usage: lab run|up LB_BIN HTTP_BIN | down [PREFIX] | status | sweep"),
    }
}

fn up(lb: PathBuf, http: PathBuf, detach: bool) -> Result<()> {
    say!("lab: building namespaces (client, lb1, lb2, b1-b3 on a bridge)");
    let spec = LabSpec {
        balancers: 2,
        vrrp: true,
        ..LabSpec::default()
    };
    trap(detach);
    let mut l = Lab::up(spec, &http, detach)?;
    say!("lab: lab {} is being set up", l.prefix);
    let check = r#"check = { kind = "http", path = "/healthz", interval = "1s", timeout = "500ms", retries = 2, retry_delay = "500ms" }"#;
    let mut cfg = PathBuf::new();
    for (role, prio) in [("lb1", 150), ("lb2", 100)] {
        let c = l.write_config(
            role,
            &format!(
                "{}{}",
                l.services_with(check),
                Lab::vrrp_section(prio, "200ms", "")
            ),
        )?;
        say!(
            "lab: starting `lb run -c {}` in {} (VRRP priority {prio})",
            c.display(),
            l.ns(role)
        );
        l.start_agent(role, &lb, &c)?;
        if role == "lb1" {
            cfg = c;
        }
    }
    if let Err(e) = wait_serving(&l) {
        eprintln!("{}", l.log("lb1"));
        return Err(e);
    }
    let c = l.ns("c");
    say!();
    say!("The VIP is served. From the client namespace:");
    say!("  ip netns exec {c} curl -s http://{VIP4}/        # answers b1, b2 or b3");
    say!("  ip netns exec {c} curl -s http://[{VIP6}]/");
    say!(
        "  for i in $(seq 20); do ip netns exec {c} curl -s http://{VIP4}/; done | sort | uniq -c"
    );
    say!("Inspect a balancer (reads its pinned maps):");
    say!("  {} show backends -c {}", lb.display(), cfg.display());
    say!(
        "  {} show vrrp -c {}     # lb1 is MASTER, lb2 BACKUP",
        lb.display(),
        cfg.display()
    );
    say!(
        "Fail over: kill lb1's agent and watch lb2 take the VIP:\n  kill $(cat {}) ; {} show vrrp -c {}",
        l.dir.join("lb1.pid").display(),
        lb.display(),
        l.dir.join("lb2.toml").display()
    );
    say!(
        "Agent logs: {} {}",
        l.dir.join("lb1.log").display(),
        l.dir.join("lb2.log").display()
    );
    say!();
    let out = Command::new(&lb)
        .args(["show", "backends", "-c"])
        .arg(&cfg)
        .output()?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    hold(l, detach)
}

/// The scale-out lab: `n` balancers, each `lb run` with [bgp] and its own
/// BIRD, a router spreading flows over them (ECMP, BFD), the client
/// behind the router.
fn up_bgp(lb: PathBuf, http: PathBuf, n: u8, detach: bool) -> Result<()> {
    say!(
        "lab: building namespaces (router r with BIRD, client c behind it, lb1-lb{n} with BIRD, b1-b3)"
    );
    let spec = LabSpec {
        balancers: n,
        bgp: true,
        ..LabSpec::default()
    };
    trap(detach);
    let mut l = Lab::up(spec, &http, detach)?;
    l.start_birds()?;
    let check = r#"check = { kind = "http", path = "/healthz", interval = "1s", timeout = "500ms", retries = 2, retry_delay = "500ms" }"#;
    for i in 1..=n {
        let role = format!("lb{i}");
        let c = l.write_config(
            &role,
            &format!("{}{}", l.services_with(check), Lab::bgp_section("")),
        )?;
        say!(
            "lab: starting `lb run -c {}` in {}",
            c.display(),
            l.ns(&role)
        );
        l.start_agent(&role, &lb, &c)?;
    }
    for prefix in [format!("{VIP4}/32"), format!("{VIP6}/128")] {
        let took = l.wait_paths(&prefix, n as usize, Duration::from_secs(30))?;
        say!("lab: the router reaches {prefix} through {n} balancers ({took:?})");
    }
    if let Err(e) = wait_serving(&l) {
        eprintln!("{}", l.log("lb1"));
        return Err(e);
    }
    let (c, r) = (l.ns("c"), l.ns("r"));
    let lb1 = l.dir.join("lb1.toml");
    say!();
    say!("The VIP is announced by {n} balancers. Try:");
    say!("  ip -n {r} route show {VIP4}          # one route, a nexthop per balancer");
    say!("  birdc -s {} show route", l.bird_socket("r").display());
    say!(
        "  for i in $(seq 20); do ip netns exec {c} curl -s http://{VIP4}/; done | sort | uniq -c"
    );
    // nsenter enters only the network namespace: `ip netns exec` would
    // remount /sys and hide the pins under /sys/fs/bpf.
    say!(
        "  nsenter --net=/run/netns/{} {} show bgp -c {}",
        l.ns("lb1"),
        lb.display(),
        lb1.display()
    );
    say!(
        "Drain lb1 (routes withdrawn, stops once idle):\n  nsenter --net=/run/netns/{} {} drain -c {}",
        l.ns("lb1"),
        lb.display(),
        lb1.display()
    );
    say!(
        "Configs and logs (bird-*.conf, lb*.toml, *.log): {}",
        l.dir.display()
    );
    hold(l, detach)
}

/// Ctrl-C, a kill, or the terminal going away: each tears an attached lab
/// down, also while it is still being built.
fn trap(detach: bool) {
    if detach {
        return;
    }
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
}

/// Leave a detached lab running, or keep an attached one until a signal.
fn hold(l: Lab, detach: bool) -> Result<()> {
    let mut l = l;
    if detach {
        say!(
            "\nlab {} is up; `cargo xtask lab down` removes it.",
            l.prefix
        );
        l.release();
        return Ok(());
    }
    say!("\nPress Ctrl-C to stop and remove the lab.");
    while !STOP.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(200));
    }
    say!("\nlab: tearing down {}", l.prefix);
    l.down();
    Ok(())
}

/// Wait until the client gets an answer through the VIP.
fn wait_serving(l: &Lab) -> Result<()> {
    let wait: u64 = std::env::var("LAB_SERVE_TIMEOUT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let served =
        lb_tests::http::get_until(&l.ns("c"), lab::vip(), Duration::from_secs(wait), |_| true);
    let name = served.map_err(|e| {
        anyhow::anyhow!("the VIP did not answer within {wait} s: {e} (agent log above)")
    })?;
    say!(
        "lab: client {} -> {VIP4}:80 answered by {name}",
        l.client_addr(false)
    );
    Ok(())
}

fn status() -> Result<()> {
    let labs = lab::running();
    if labs.is_empty() {
        say!("no lab is running");
    }
    for p in labs {
        let dir = std::path::Path::new(lab::RUN_DIR).join(&p);
        say!(
            "lab {p}: namespaces {}",
            lb_tests::netns::list(&format!("{p}-")).join(" ")
        );
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = e.path();
            if path.extension().is_some_and(|x| x == "toml") {
                say!("  config {}", path.display());
            }
        }
    }
    Ok(())
}
