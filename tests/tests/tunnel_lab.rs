//! Tunnels end to end: client, balancer and a router on one LAN, three
//! backends in another subnet behind the router, each set up with
//! `lb realserver up --mode ipip|gue` (the XDP decap program). New
//! connections follow the weights, a held connection keeps its backend
//! across a reload, a backend whose decap is removed is found down by a
//! check through the data path, and a client sending full-size segments
//! learns the tunnel's smaller MTU from the balancer and completes.

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    process::Command,
    time::Duration,
};

use anyhow::{Result, bail};
use lb_tests::{
    held::Held,
    http,
    lab::{self, Lab, LabSpec, VIP4, VIP6, lb_show},
    netns, require,
};

struct Setup {
    lab: Lab,
    cfg: PathBuf,
    vip: SocketAddr,
    mode: &'static str,
}

fn vip(v6: bool) -> SocketAddr {
    let a: IpAddr = if v6 { VIP6 } else { VIP4 }.parse().unwrap();
    SocketAddr::new(a, 80)
}

fn lb_bin() -> PathBuf {
    lab::bin("LB_BIN", "lb").unwrap()
}

/// `lb realserver ACTION ...` on backend `name`, in its namespace.
fn realserver(lab: &Lab, name: &str, args: &[&str]) -> Result<String> {
    let mut cmd = Command::new(lb_bin());
    cmd.arg("realserver")
        .args(args)
        .arg("--state")
        .arg(lab.dir.join(format!("rs-{name}.json")));
    netns::enter(&mut cmd, &lab.ns(name))?;
    let out = cmd.output()?;
    if !out.status.success() {
        bail!(
            "lb realserver {args:?} on {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn realserver_up(lab: &Lab, name: &str, mode: &str) -> Result<String> {
    let pins = lab.pin_dir(&format!("rs-{name}"));
    realserver(
        lab,
        name,
        &[
            "up",
            "--vip",
            VIP4,
            "--vip",
            VIP6,
            "--mode",
            mode,
            "--interface",
            "eth0",
            "--pin-dir",
            pins.to_str().unwrap(),
        ],
    )
}

/// The balancer's services over the routed backends, forwarded by `mode`.
fn services(lab: &Lab, mode: &str, check: &str) -> String {
    lab.services_with(&format!("forward = \"{mode}\"\n{check}"))
}

const AGENT: &str = "tunnel_source = [\"198.51.100.5\", \"2001:db8:1::5\"]";

/// The routed lab, every backend set up with `mode`, the agent serving.
fn setup(mode: &'static str, v6: bool, check: &str) -> Setup {
    let spec = LabSpec {
        routed: true,
        ..LabSpec::default()
    };
    let mut lab = Lab::up(spec, &lab::bin("LAB_HTTP_BIN", "lab-http").unwrap(), false).unwrap();
    for b in lab.spec.backends.clone() {
        realserver_up(&lab, &b.name, mode).unwrap();
    }
    let cfg = lab
        .write_config_with("lb1", AGENT, &services(&lab, mode, check))
        .unwrap();
    lab.start_agent_as("lb1", "lb1", &lb_bin(), &cfg, &[])
        .unwrap();
    let vip = vip(v6);
    if let Err(e) = http::get_until(&lab.ns("c"), vip, Duration::from_secs(20), |_| true) {
        panic!(
            "{vip} not served through {mode} within 20 s: {e}\n{}\nreasons {}",
            lab.log("lb1"),
            reasons(&lab)
        );
    }
    // Every backend checked and up, and (health is published before the
    // table that takes a backend in) the table holding all three at their
    // weights, before shares are counted.
    let svc = lb_user::addr::service_name(
        &lb_user::addr::parse_service_name(&format!("{vip}/tcp")).unwrap(),
    );
    for b in lab.spec.backends.clone() {
        let a = if v6 {
            lab.backend_addr6(&b)
        } else {
            lab.backend_addr(&b)
        };
        lab.wait_backend("lb1", &svc, &a, "up", Duration::from_secs(10))
            .unwrap();
    }
    let dir = lab.pin_dir("lb1");
    let t0 = std::time::Instant::now();
    loop {
        let t = lb_show(&["table", &svc, "--pin-dir", dir.to_str().unwrap()]).unwrap();
        let rows = t["backends"].as_array().cloned().unwrap_or_default();
        let settled = rows.len() == 3
            && rows.iter().all(|b| {
                let share = b["share"].as_f64().unwrap_or(0.0);
                (share - b["wanted"].as_f64().unwrap_or(1.0)).abs() < 0.01
            });
        if settled {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "table not settled: {t:#}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Setup {
        lab,
        cfg,
        vip,
        mode,
    }
}

fn spread(s: &Setup, n: u16, port0: u16) -> BTreeMap<String, u32> {
    s.lab.spread(s.vip, n, port0)
}

fn weights_and_reload(s: &Setup) {
    let counts = spread(s, 300, 10000);
    for (b, want) in [("b1", 25.0), ("b2", 25.0), ("b3", 50.0)] {
        let share = 100.0 * *counts.get(b).unwrap_or(&0) as f64 / 300.0;
        assert!(
            (share - want).abs() <= 5.0,
            "{}: {b} got {share:.1}% of 300 new connections, want {want}% +-5 ({counts:?})\n{}",
            s.mode,
            s.lab.log("lb1")
        );
    }
    println!("{} {}: 300 new connections: {counts:?}", s.mode, s.vip);

    // A held connection, a reload that changes a weight, the same backend.
    let mut held = Held::open(&s.lab.ns("c"), s.vip, 6).unwrap();
    let text = std::fs::read_to_string(&s.cfg).unwrap();
    std::fs::write(&s.cfg, text.replacen("weight = 2", "weight = 3", 2)).unwrap();
    s.lab.signal("lb1", libc::SIGHUP).unwrap();
    s.lab
        .wait_log("lb1", "config reloaded", Duration::from_secs(10))
        .unwrap();
    let (failed, moved, notes) = held.ask();
    assert_eq!(
        (failed, moved),
        (0, 0),
        "{}: held connections across a reload: {notes:?}",
        s.mode
    );
}

/// Upload `bytes` to the VIP with full-size segments; the answer.
fn upload(s: &Setup, bytes: usize) -> Result<String> {
    let vip = s.vip;
    netns::in_ns(&s.lab.ns("c"), move || -> Result<String> {
        let mut c = std::net::TcpStream::connect_timeout(&vip, Duration::from_secs(5))?;
        c.set_read_timeout(Some(Duration::from_secs(20)))?;
        c.set_write_timeout(Some(Duration::from_secs(20)))?;
        let head = format!(
            "POST /upload HTTP/1.1\r\nHost: lab\r\nContent-Length: {bytes}\r\nConnection: close\r\n\r\n"
        );
        c.write_all(head.as_bytes())?;
        c.write_all(&vec![0x5a; bytes])?;
        let mut answer = String::new();
        c.read_to_string(&mut answer)?;
        Ok(answer)
    })?
}

/// The balancer's reason counters.
fn reasons(lab: &Lab) -> serde_json::Value {
    let dir = lab.pin_dir("lb1");
    lb_show(&["stats", "--pin-dir", dir.to_str().unwrap()]).unwrap()["reasons"].clone()
}

fn path_mtu(s: &Setup) {
    // 1500 everywhere: a 1500-byte segment plus the outer header does not
    // fit the balancer's own egress, so it answers with ICMP too-big.
    let before = reasons(&s.lab)["tx_too_big"].as_u64().unwrap_or(0);
    let bytes = 300_000;
    let answer = upload(s, bytes)
        .unwrap_or_else(|e| panic!("{}: upload failed: {e:#}\n{}", s.mode, s.lab.log("lb1")));
    assert!(
        answer.contains(&format!("received {bytes}")),
        "{}: every byte acknowledged and counted by the backend: {answer:?}",
        s.mode
    );
    let after = reasons(&s.lab)["tx_too_big"].as_u64().unwrap_or(0);
    assert!(
        after > before,
        "{}: the client learnt the MTU from the balancer's ICMP",
        s.mode
    );
    let family = if s.vip.is_ipv6() { "-6" } else { "-4" };
    let route = netns::ip(
        &s.lab.ns("c"),
        &format!("{family} route get {}", s.vip.ip()),
    )
    .unwrap();
    let route = String::from_utf8_lossy(&route.stdout).to_string();
    assert!(
        route.contains("mtu"),
        "{}: the client caches a path MTU for the VIP: {route}",
        s.mode
    );
    println!("{}: upload of {bytes} bytes done; {route}", s.mode);
}

/// `lb show` gives each service's mode and each backend's next hop;
/// `lb realserver status` counts decapsulated packets.
fn show_and_realserver_status(s: &Setup) {
    // lb show: the mode, and each backend's next hop (the router) and MAC.
    let dir = s.lab.pin_dir("lb1");
    let services = lb_show(&["services", "--pin-dir", dir.to_str().unwrap()]).unwrap();
    assert!(
        services["services"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["forward"] == s.mode),
        "{services}"
    );
    let router = if s.vip.is_ipv6() {
        "2001:db8:1::1"
    } else {
        "198.51.100.1"
    };
    let svc = lb_user::addr::service_name(
        &lb_user::addr::parse_service_name(&format!("{}/tcp", s.vip)).unwrap(),
    );
    for (addr, b) in s.lab.backends("lb1", &svc).unwrap() {
        assert_eq!(b["next_hop"], router, "{addr}: {b}");
        assert!(b["mac"].is_string(), "{addr}: {b}");
    }
    let st = realserver(&s.lab, "b1", &["status", "--json"]).unwrap();
    let v: serde_json::Value = serde_json::from_str(&st).unwrap();
    let decapsulated = v["decap"]
        .as_array()
        .and_then(|c| c.iter().find(|r| r[0] == "decapsulated"))
        .and_then(|r| r[1].as_u64())
        .unwrap_or(0);
    assert!(decapsulated > 0, "b1 decapsulated nothing: {st}");
}

const DATAPLANE_CHECK: &str = "check = { kind = \"http\", path = \"/\", via = \"dataplane\", interval = \"300ms\", timeout = \"250ms\", retries = 2, retry_delay = \"100ms\" }";

/// A backend that lost its decap program still answers on its own address,
/// but a check through the data path finds it down; back up after `up`.
fn dataplane_check_finds_a_broken_backend(s: &Setup) {
    let svc = lb_user::addr::service_name(
        &lb_user::addr::parse_service_name(&format!("{}/tcp", s.vip)).unwrap(),
    );
    let b2 = s
        .lab
        .spec
        .backends
        .iter()
        .find(|b| b.name == "b2")
        .unwrap()
        .clone();
    let b2_addr = if s.vip.is_ipv6() {
        s.lab.backend_addr6(&b2)
    } else {
        s.lab.backend_addr(&b2)
    };
    s.lab
        .wait_backend("lb1", &svc, &b2_addr, "up", Duration::from_secs(10))
        .unwrap();
    realserver(&s.lab, "b2", &["down"]).unwrap();
    // Its own address still answers: a direct check would pass.
    let own = SocketAddr::new(b2_addr.parse().unwrap(), 80);
    let direct = netns::in_ns(&s.lab.ns("lb1"), move || http::get(own)).unwrap();
    assert_eq!(direct.unwrap(), "b2", "b2 answers on its own address");
    let b = s
        .lab
        .wait_backend("lb1", &svc, &b2_addr, "down", Duration::from_secs(10))
        .unwrap();
    println!(
        "{}: b2 without its decap is {}: {}",
        s.mode, b["state"], b["health"]["last_error"]
    );
    // New connections meanwhile go to the others only.
    let counts = spread(s, 30, 20000);
    assert!(!counts.contains_key("b2"), "{counts:?}");
    assert_eq!(
        counts.values().sum::<u32>(),
        30,
        "every new connection served: {counts:?}"
    );
    realserver_up(&s.lab, "b2", s.mode).unwrap();
    s.lab
        .wait_backend("lb1", &svc, &b2_addr, "up", Duration::from_secs(10))
        .unwrap();
}

fn require(test: &str) -> bool {
    require::lab(test, &[])
}

#[test]
fn ipip_v4_serves_through_a_router() {
    if !require("ipip_v4_serves_through_a_router") {
        return;
    }
    let s = setup("ipip", false, DATAPLANE_CHECK);
    weights_and_reload(&s);
    path_mtu(&s);
    show_and_realserver_status(&s);
    dataplane_check_finds_a_broken_backend(&s);
}

#[test]
fn gue_v4_serves_through_a_router() {
    if !require("gue_v4_serves_through_a_router") {
        return;
    }
    let s = setup("gue", false, "");
    weights_and_reload(&s);
    path_mtu(&s);
    show_and_realserver_status(&s);
}

#[test]
fn ipip_v6_serves_through_a_router() {
    if !require("ipip_v6_serves_through_a_router") {
        return;
    }
    let s = setup("ipip", true, DATAPLANE_CHECK);
    weights_and_reload(&s);
    path_mtu(&s);
    show_and_realserver_status(&s);
    dataplane_check_finds_a_broken_backend(&s);
}
