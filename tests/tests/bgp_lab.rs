//! Scale-out: three balancers announce the VIPs over BGP (each its own
//! BIRD) to a router namespace that spreads flows over them with ECMP.
//! Every node builds the same Maglev table, so a flow may move between
//! balancers (a node dies, drains, the router rehashes) and keep its
//! backend.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::PathBuf,
    process::{Command, Output},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use lb_tests::{
    held::Held,
    lab::{self, Lab, LabSpec, VIP4, VIP6, client_flows, lb_show},
    netns, require,
    traffic::{Traffic, longest_silence},
};

/// Fails over within ~2 s, with room for a loaded machine: a check that
/// times out on one node only (at 150 ms one was seen to) makes that node's
/// table differ from the others', and a flow that moves there then lands
/// on another backend: what the tests measure is BGP, not that.
const CHECK: &str = r#"check = { kind = "http", path = "/healthz", interval = "500ms", timeout = "400ms", retries = 2, retry_delay = "100ms", rise = 1 }"#;
const NODES: u8 = 3;
/// Each balancer's API, on its own namespace's loopback.
const API: &str = "127.0.0.1:9100";
const PREFIX4: &str = "203.0.113.10/32";
const PREFIX6: &str = "2001:db8:f::10/128";
/// BGP sessions come up within seconds (connect delay 1 s); the agents
/// announce once their checks pass.
const CONVERGE: Duration = Duration::from_secs(30);

fn vip6() -> SocketAddr {
    SocketAddr::new(VIP6.parse().expect("VIP6"), 80)
}

/// Both VIPs on port 80 over the lab's backends, listed in node `n`'s own
/// order (rotated by n): the tables must not depend on it.
fn services(lab: &Lab, n: u8) -> String {
    let mut backends = lab.spec.backends.clone();
    let len = backends.len();
    backends.rotate_left(n as usize % len);
    if n == 2 {
        backends.reverse();
    }
    lab.services_over(&backends, CHECK)
}

/// The lab: three balancers with `lb run` and BIRD, routes converged.
fn scale_out(test: &str, bgp: &str) -> Result<Option<Lab>> {
    if !require::lab(test, &["bird", "birdc", "bridge"]) {
        return Ok(None);
    }
    let spec = LabSpec {
        balancers: NODES,
        bgp: true,
        ..LabSpec::default()
    };
    let mut lab = Lab::up(spec, &lab::bin("LAB_HTTP_BIN", "lab-http")?, false)?;
    lab.start_birds()?;
    let lb = lab::bin("LB_BIN", "lb")?;
    for n in 1..=NODES {
        let role = format!("lb{n}");
        let body = format!("{}{}", services(&lab, n), Lab::bgp_section(bgp));
        let cfg = lab.write_config_with(&role, &format!("api = \"{API}\""), &body)?;
        lab.start_agent(&role, &lb, &cfg)?;
    }
    for prefix in [PREFIX4, PREFIX6] {
        let took = lab
            .wait_paths(prefix, NODES as usize, CONVERGE)
            .map_err(|e| {
                anyhow::anyhow!(
                    "{e:#}\nlb1's log:\n{}\nlb1's BIRD:\n{}",
                    lab.log("lb1"),
                    lab.log("bird-lb1")
                )
            })?;
        eprintln!("{test}: the router reaches {prefix} through {NODES} balancers after {took:?}");
    }
    // A VIP is announced with one backend up: wait for all of them on
    // every node, so that every node has built its full tables.
    for n in 1..=NODES {
        for b in &lab.spec.backends {
            for (service, addr) in [
                ("203.0.113.10:80/tcp", lab.backend_addr(b)),
                ("[2001:db8:f::10]:80/tcp", lab.backend_addr6(b)),
            ] {
                lab.wait_backend(&format!("lb{n}"), service, &addr, "up", CONVERGE)?;
            }
        }
    }
    Ok(Some(lab))
}

fn config(lab: &Lab, role: &str) -> PathBuf {
    lab.dir.join(format!("{role}.toml"))
}

/// `lb ARGS` run inside balancer `role`'s namespace.
fn lb_in(lab: &Lab, role: &str, args: &[&str]) -> Result<Output> {
    let mut cmd = Command::new(lab::bin("LB_BIN", "lb")?);
    cmd.args(args);
    netns::enter(&mut cmd, &lab.ns(role))?;
    let out = cmd.output()?;
    if !out.status.success() {
        bail!(
            "lb {args:?} in {role}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// `lb show bgp --json` of balancer `role`: VIP -> (announced, why).
fn show_bgp(lab: &Lab, role: &str) -> Result<BTreeMap<String, (bool, String)>> {
    let cfg = config(lab, role);
    let out = lb_in(
        lab,
        role,
        &["show", "bgp", "--json", "-c", cfg.to_str().context("path")?],
    )?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok(v["vips"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            (
                r["vip"].as_str().unwrap_or_default().to_string(),
                (
                    r["announced"].as_bool().unwrap_or(false),
                    r["why"].as_str().unwrap_or_default().to_string(),
                ),
            )
        })
        .collect())
}

/// Which balancer carries each of the client's flows (by client address).
fn carriers(lab: &Lab) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for n in 1..=NODES {
        let role = format!("lb{n}");
        for c in client_flows(lab, &role)? {
            out.insert(c, role.clone());
        }
    }
    Ok(out)
}

#[test]
fn three_balancers_share_new_flows_with_identical_tables_v4_and_v6() -> Result<()> {
    let test = "three_balancers_share_new_flows_with_identical_tables_v4_and_v6";
    let Some(lab) = scale_out(test, "")? else {
        return Ok(());
    };
    // Identical tables although each node lists the backends in its own order.
    for service in ["203.0.113.10:80/tcp", "[2001:db8:f::10]:80/tcp"] {
        let mut digests = BTreeMap::new();
        for n in 1..=NODES {
            let dir = lab.pin_dir(&format!("lb{n}"));
            let t = lb_show(&["table", service, "--pin-dir", dir.to_str().context("dir")?])?;
            digests.insert(
                format!("lb{n}"),
                t["digest"].as_str().unwrap_or("").to_string(),
            );
        }
        eprintln!("{test}: {service} table digests {digests:?}");
        let first = digests.values().next().cloned().unwrap_or_default();
        assert!(
            !first.is_empty() && digests.values().all(|d| *d == first),
            "{digests:?}"
        );
    }
    for n in 1..=NODES {
        let bgp = show_bgp(&lab, &format!("lb{n}"))?;
        for vip in [VIP4, VIP6] {
            let (announced, why) = &bgp[vip];
            assert!(announced, "lb{n} does not announce {vip}: {why}");
        }
    }

    // 600 new connections from fixed source ports: by weight over the
    // backends (1:1:2), and spread over the three balancers.
    let counts = lab.spread(lab::vip(), 600, 20_000);
    eprintln!("{test}: backends {counts:?}");
    let total: u32 = counts.values().sum();
    assert_eq!(total, 600);
    for (name, want) in [("b1", 25.0), ("b2", 25.0), ("b3", 50.0)] {
        let got = 100.0 * *counts.get(name).unwrap_or(&0) as f64 / 600.0;
        assert!(
            (got - want).abs() <= 5.0,
            "{name}: {got:.1}% of flows, want {want}% +-5: {counts:?}"
        );
    }
    let by_node = tally(&carriers(&lab)?, lab::BGP_CLIENT4);
    eprintln!("{test}: IPv4 flows per balancer {by_node:?}");
    for n in 1..=NODES {
        let share = 100.0 * *by_node.get(&format!("lb{n}")).unwrap_or(&0) as f64 / 600.0;
        assert!(
            (20.0..=47.0).contains(&share),
            "lb{n} carried {share:.1}%: {by_node:?}"
        );
    }

    // IPv6: the /128 through every node, served the same way.
    let counts6 = lab.spread(vip6(), 150, 40_000);
    eprintln!("{test}: IPv6 backends {counts6:?}");
    assert!(
        counts6.keys().all(|k| !k.starts_with("error")),
        "{counts6:?}"
    );
    let by_node6 = tally(&carriers(&lab)?, &format!("[{}]", lab::BGP_CLIENT6));
    eprintln!("{test}: IPv6 flows per balancer {by_node6:?}");
    assert_eq!(by_node6.len(), NODES as usize, "{by_node6:?}");
    Ok(())
}

/// Flows per balancer among those from `client`.
fn tally(carriers: &BTreeMap<String, String>, client: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for (c, node) in carriers {
        if c.starts_with(client) {
            *out.entry(node.clone()).or_insert(0) += 1;
        }
    }
    out
}

#[test]
fn a_dead_balancer_is_withdrawn_and_every_held_connection_continues() -> Result<()> {
    let test = "a_dead_balancer_is_withdrawn_and_every_held_connection_continues";
    let Some(lab) = scale_out(test, "")? else {
        return Ok(());
    };
    let mut held = Held::open(&lab.ns("c"), lab::vip(), 120)?;
    let per_node = tally(&carriers(&lab)?, lab::BGP_CLIENT4);
    eprintln!("{test}: held connections per balancer {per_node:?}");
    assert!(
        per_node.len() >= 2,
        "held connections on one balancer only: {per_node:?}"
    );
    let traffic = Traffic::start(
        &lab.ns("c"),
        lab::vip(),
        Duration::from_millis(10),
        Duration::from_secs(20),
    );
    std::thread::sleep(Duration::from_millis(500));
    // lb2 dies: its link goes down first, so neither its agent's device
    // nor its BIRD can tell the router; then its agent is killed. Only
    // BFD (30 ms x 3) tells the router.
    let down = Instant::now();
    netns::ip(&lab.ns("lb2"), "link set eth0 down")?;
    lab.signal("lb2", libc::SIGKILL)?;
    lab.wait_exactly(PREFIX4, &[1, 3], Duration::from_secs(10))?;
    eprintln!(
        "{test}: the router withdrew lb2 {:?} after its link went down",
        down.elapsed()
    );
    std::thread::sleep(Duration::from_millis(500));
    nothing_lost(test, &mut held, traffic);
    Ok(())
}

/// Every held connection answered by its first backend, and no new
/// connection of `traffic` failed.
fn nothing_lost(test: &str, held: &mut Held, traffic: Traffic) {
    let (failed, moved, notes) = held.ask();
    let samples = traffic.stop();
    let errors: Vec<_> = samples.iter().filter(|s| s.result.is_err()).collect();
    eprintln!(
        "{test}: held: {failed} failed, {moved} moved of {}; new connections: {} of {} failed, longest gap {:?}",
        held.first.len(),
        errors.len(),
        samples.len(),
        longest_silence(&samples)
    );
    assert_eq!((failed, moved), (0, 0), "{notes:#?}");
    assert!(errors.is_empty(), "{:#?}", &errors[..errors.len().min(5)]);
}

#[test]
fn a_balancer_without_healthy_backends_withdraws_and_announces_again() -> Result<()> {
    let test = "a_balancer_without_healthy_backends_withdraws_and_announces_again";
    let Some(lab) = scale_out(test, "")? else {
        return Ok(());
    };
    // lb1's checks fail (its own packets to the backends dropped); the
    // data path (XDP) does not go through nftables and the others see
    // healthy backends.
    let ns = lab.ns("lb1");
    nft(&ns, "add table inet lbtest")?;
    nft(
        &ns,
        "add chain inet lbtest out { type filter hook output priority 0 ; }",
    )?;
    nft(&ns, "add rule inet lbtest out tcp dport 80 drop")?;
    let took = lab.wait_exactly(PREFIX4, &[2, 3], Duration::from_secs(10))?;
    eprintln!("{test}: lb1 withdrawn {took:?} after its checks started failing");
    lab.wait_exactly(PREFIX6, &[2, 3], Duration::from_secs(5))?;
    let (announced, why) = show_bgp(&lab, "lb1")?.remove(VIP4).context("VIP4 row")?;
    eprintln!("{test}: lb1 says: {why}");
    assert!(!announced && why.contains("0 of 3 backends up"), "{why}");
    assert_eq!(announced_metric(&lab, "lb1", VIP4)?, "0");
    assert_eq!(announced_metric(&lab, "lb2", VIP4)?, "1");
    let counts = lab.spread(lab::vip(), 60, 21_000);
    assert!(counts.keys().all(|k| !k.starts_with("error")), "{counts:?}");
    let lb1 = tally(&carriers(&lab)?, lab::BGP_CLIENT4);
    assert!(!lb1.contains_key("lb1"), "new flows reached lb1: {lb1:?}");
    nft(&ns, "delete table inet lbtest")?;
    let took = lab.wait_paths(PREFIX4, 3, Duration::from_secs(10))?;
    eprintln!("{test}: lb1 announced again {took:?} after its checks recovered");
    assert!(show_bgp(&lab, "lb1")?[VIP4].0);
    // Set once the device's addresses are in place, as the route left.
    let deadline = Instant::now() + Duration::from_secs(2);
    while announced_metric(&lab, "lb1", VIP4)? != "1" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(announced_metric(&lab, "lb1", VIP4)?, "1");
    Ok(())
}

/// `lb_bgp_announced` for `vip` on `role`'s /metrics.
fn announced_metric(lab: &Lab, role: &str, vip: &str) -> Result<String> {
    let addr: SocketAddr = API.parse()?;
    let (_, _, body) = netns::in_ns(&lab.ns(role), move || {
        lb_tests::http::fetch(addr, "/metrics", None)
    })??;
    let prefix = format!("lb_bgp_announced{{vip=\"{vip}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&prefix).map(str::to_string))
        .with_context(|| format!("no {prefix} in /metrics:\n{body}"))
}

fn nft(ns: &str, rule: &str) -> Result<()> {
    let mut args = vec!["nft"];
    args.extend(rule.split_whitespace());
    netns::exec(ns, &args).map(|_| ())
}

#[test]
fn drain_and_sigterm_reset_nothing() -> Result<()> {
    let test = "drain_and_sigterm_reset_nothing";
    let bgp = "grace = \"1s\"\ndrain_idle = \"1s\"\ndrain_timeout = \"15s\"";
    let Some(mut lab) = scale_out(test, bgp)? else {
        return Ok(());
    };
    let mut held = Held::open(&lab.ns("c"), lab::vip(), 100)?;
    let traffic = Traffic::start(
        &lab.ns("c"),
        lab::vip(),
        Duration::from_millis(10),
        Duration::from_secs(40),
    );
    std::thread::sleep(Duration::from_millis(500));
    // lb drain on lb1: withdraw, forward until idle, stop.
    let cfg = config(&lab, "lb1");
    let started = Instant::now();
    let out = lb_in(&lab, "lb1", &["drain", "-c", cfg.to_str().context("path")?])
        .map_err(|e| anyhow::anyhow!("{e:#}\nlb1's log:\n{}", lab.log("lb1")))?;
    eprintln!(
        "{test}: lb drain took {:?}:\n{}",
        started.elapsed(),
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        lab.wait_exit("lb1", Duration::from_secs(5)),
        "lb1 did not stop"
    );
    // (A wait, not a look: on a loaded machine a BFD session at 30 ms may
    // flap for a moment, and the router then briefly has one path fewer.)
    lab.wait_exactly(PREFIX4, &[2, 3], Duration::from_secs(5))?;
    let (failed, moved, notes) = held.ask();
    assert_eq!((failed, moved), (0, 0), "after drain: {notes:#?}");
    // SIGTERM on lb2: withdraw, the grace time, stop.
    lab.signal("lb2", libc::SIGTERM)?;
    assert!(
        lab.wait_exit("lb2", Duration::from_secs(10)),
        "lb2 did not stop"
    );
    assert!(
        lab.log("lb2").contains("grace"),
        "lb2 did not withdraw first:\n{}",
        lab.log("lb2")
    );
    lab.wait_exactly(PREFIX4, &[3], Duration::from_secs(5))?;
    assert_eq!(lab.router_paths(PREFIX4)?, [lab::Lab::balancer_addr(3)]);
    std::thread::sleep(Duration::from_millis(300));
    nothing_lost(test, &mut held, traffic);
    Ok(())
}

#[test]
fn the_shipped_bird_config_parses() -> Result<()> {
    if !require::command("the_shipped_bird_config_parses", "bird") {
        return Ok(());
    }
    let conf = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/bird-lb.conf");
    // -p: parse the file and exit.
    let out = Command::new("bird")
        .arg("-p")
        .arg("-c")
        .arg(&conf)
        .output()?;
    assert!(
        out.status.success(),
        "{}: {}",
        conf.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
