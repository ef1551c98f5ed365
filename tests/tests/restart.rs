//! Nothing lost when the agent restarts or is upgraded: one balancer with
//! health-checked backends, 100 held keep-alive connections and a client
//! opening a new connection every 5 ms throughout. After the event every
//! held connection is answered by its backend again, no new connection
//! failed, and the data plane never dropped a VIP packet for want of a
//! backend.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use lb_common::Reason;
use lb_tests::{
    held::Held,
    lab::{self, Lab, LabSpec},
    require,
    traffic::Traffic,
};
use lb_user::maps::{Pinned, loader};

const CHECK: &str = r#"check = { kind = "http", path = "/healthz", interval = "500ms", timeout = "300ms", retries = 2, retry_delay = "200ms" }"#;
const HELD: usize = 100;

/// A balancer serving with checks (and `lines` in each service), every
/// backend up.
fn serving(extra: &[&str], lines: &str) -> Lab {
    let lines = format!("{CHECK}\n{lines}");
    let (lab, _) =
        lab::serving_config(LabSpec::default(), |l| l.services_with(&lines), extra).unwrap();
    for b in ["198.51.100.11", "198.51.100.12", "198.51.100.13"] {
        lab.wait_backend(
            "lb1",
            "203.0.113.10:80/tcp",
            b,
            "up",
            Duration::from_secs(10),
        )
        .unwrap();
    }
    lab
}

/// Run `event` (which restarts the agent as process `name`) under held
/// connections and new-connection traffic; check that nothing was lost.
/// `drops` reads the data plane's drop_no_backend counters, summed over
/// whichever maps count them.
fn nothing_lost(
    lab: &mut Lab,
    what: &str,
    name: &str,
    drops: &dyn Fn() -> u64,
    event: impl FnOnce(&mut Lab),
) {
    let vip = lab::vip();
    let mut held = Held::open(&lab.ns("c"), vip, HELD).unwrap();
    let drops_before = drops();
    let traffic = Traffic::start(
        &lab.ns("c"),
        vip,
        Duration::from_millis(5),
        Duration::from_secs(30),
    );
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    event(lab);
    lab.wait_log(name, "serving", Duration::from_secs(15))
        .unwrap();
    let serving_after = t0.elapsed();
    // Long enough for every check to have run under the new agent.
    std::thread::sleep(Duration::from_millis(1500));
    let samples = traffic.stop();
    let failed: Vec<_> = samples.iter().filter(|s| s.result.is_err()).collect();
    let (held_failed, held_moved, notes) = held.ask();
    let dropped = drops() - drops_before;
    println!(
        "{what}: serving again {serving_after:?} after the event; new connections {} failed of {}; held {}/{HELD} answered by their backend; drop_no_backend {dropped}",
        failed.len(),
        samples.len(),
        HELD - held_failed - held_moved
    );
    assert!(
        failed.is_empty(),
        "{what}: {} new connections failed, first: {:?}\nagent log:\n{}",
        failed.len(),
        failed.first().map(|s| &s.result),
        lab.log(name)
    );
    assert!(
        held_failed == 0 && held_moved == 0,
        "{what}: held connections lost: {notes:?}"
    );
    assert_eq!(
        dropped, 0,
        "{what}: VIP packets dropped for want of a backend"
    );
    assert!(
        samples.len() > 300,
        "{what}: too few samples ({})",
        samples.len()
    );
}

/// drop_no_backend as the balancer's current pins count it.
fn drops_in(dir: &Path) -> u64 {
    Pinned::open(dir)
        .map(|p| p.reason(Reason::DropNoBackend))
        .unwrap_or(0)
}

#[test]
fn a_killed_agent_restarts_without_losing_a_connection() {
    let name = "a_killed_agent_restarts_without_losing_a_connection";
    if !require::lab(name, &[]) {
        return;
    }
    let mut lab = serving(&[], "");
    let pins = lab.pin_dir("lb1");
    nothing_lost(
        &mut lab,
        "SIGKILL + restart",
        "lb1-again",
        &|| drops_in(&pins),
        |l| {
            l.signal("lb1", libc::SIGKILL).unwrap();
            assert!(l.wait_exit("lb1", Duration::from_secs(5)));
            l.restart_agent("lb1", "lb1-again").unwrap();
        },
    );
    let log = lab.log("lb1-again");
    assert!(
        log.contains("carrying on from the previous agent"),
        "the restarted agent did not adopt the health verdicts:\n{log}"
    );
}

#[test]
fn an_agent_stopped_with_keep_pinned_restarts_without_losing_a_connection() {
    let name = "an_agent_stopped_with_keep_pinned_restarts_without_losing_a_connection";
    if !require::lab(name, &[]) {
        return;
    }
    let mut lab = serving(&["--keep-pinned"], "");
    let pins = lab.pin_dir("lb1");
    nothing_lost(
        &mut lab,
        "SIGTERM --keep-pinned + restart",
        "lb1-again",
        &|| drops_in(&pins),
        |l| {
            l.signal("lb1", libc::SIGTERM).unwrap();
            assert!(l.wait_exit("lb1", Duration::from_secs(5)));
            l.restart_agent("lb1", "lb1-again").unwrap();
        },
    );
}

/// drop_no_backend as counted in the layout directory under `base` that is
/// not `old` (the upgraded agent's, whose flow table this build cannot
/// read as its own).
fn other_layout_drops(base: &Path, old: &Path) -> u64 {
    use aya::maps::{Map, MapData, PerCpuArray};
    let Some(dir) = loader::layout_dirs(base).into_iter().find(|d| d != old) else {
        return 0;
    };
    let Ok(data) = MapData::from_pin(dir.join(lb_common::names::REASON_STATS)) else {
        return 0;
    };
    let Ok(map) = PerCpuArray::<_, u64>::try_from(Map::PerCpuArray(data)) else {
        return 0;
    };
    map.get(&(Reason::DropNoBackend as u32), 0)
        .map_or(0, |v| v.iter().sum())
}

/// The agent built with a changed map layout (`--features layout-test`:
/// FlowValue grows, another LAYOUT_VERSION), which `cargo xtask test`
/// builds into target/layout-test.
fn layout_test_bin(test: &str) -> Option<std::path::PathBuf> {
    match std::env::var_os("LB_LAYOUT_BIN") {
        Some(p) => Some(p.into()),
        None if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{test}: LB_LAYOUT_BIN is not set; run it through `cargo xtask test`")
        }
        None => {
            eprintln!("SKIP {test}: LB_LAYOUT_BIN is not set (cargo xtask test builds it)");
            None
        }
    }
}

#[test]
fn an_upgrade_across_a_layout_change_loses_no_connection() {
    let name = "an_upgrade_across_a_layout_change_loses_no_connection";
    if !require::lab(name, &[]) {
        return;
    }
    let Some(upgraded) = layout_test_bin(name) else {
        return;
    };
    // wrr places new flows by rotation, not by hash: a connection whose
    // flow entry were lost would move to another backend, so only a
    // migrated flow table keeps the held connections where they are.
    let mut lab = serving(&[], r#"scheduler = "wrr""#);
    let base = lab.pin_dir("lb1");
    let old_dir = loader::layout_dir(&base);
    // Held open: the old layout's counters stay readable after its pins go.
    let old = Pinned::open(&old_dir).unwrap();
    let drops = || old.reason(Reason::DropNoBackend) + other_layout_drops(&base, &old_dir);
    let cfg = lab.dir.join("lb1.toml");
    nothing_lost(
        &mut lab,
        "upgrade to a changed layout",
        "lb1-new",
        &drops,
        |l| {
            // Stopped with its program and maps left in place, as a package
            // upgrade would; the new binary takes over the pinned link.
            l.signal("lb1", libc::SIGKILL).unwrap();
            assert!(l.wait_exit("lb1", Duration::from_secs(5)));
            l.start_agent_as("lb1", "lb1-new", &upgraded, &cfg, &[])
                .unwrap();
        },
    );
    let log = lab.log("lb1-new");
    assert!(
        log.contains("migrated the previous layout's maps"),
        "no migration logged:\n{log}"
    );
    let dirs = loader::layout_dirs(&base);
    assert_eq!(dirs.len(), 1, "old layout's pins left: {dirs:?}");
    assert_ne!(
        dirs[0], old_dir,
        "the upgraded agent pinned into the old layout"
    );
    // The upgraded agent keeps serving new connections too.
    let served = lb_tests::netns::in_ns(&lab.ns("c"), || {
        lb_tests::http::get(lab::vip()).map_err(|e| e.to_string())
    })
    .unwrap();
    assert!(served.is_ok(), "{served:?}");
}
