//! NAT and full-NAT end to end, LVS-NAT's topology: the client on the
//! outside LAN, the balancer with a second interface on the backends'
//! bridge, three backends listening on port 8080 while the VIP is port 80.
//! NAT: the backends' default route is the balancer (their gateway).
//! Full-NAT: the backends have no route to the client's subnet at all.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::{IpAddr, SocketAddr, UdpSocket},
    path::PathBuf,
    time::Duration,
};

use lb_tests::{
    held::Held,
    http,
    lab::{self, CLIENT4, Lab, LabSpec, NAT_GW4, NAT_GW6, VIP4, VIP6, lb_show},
    netns, require,
    vrrp_lab::wait_state,
};

const CHECK: &str = r#"check = { kind = "http", path = "/healthz", interval = "200ms", timeout = "150ms", retries = 1, retry_delay = "100ms", rise = 1 }"#;

struct Setup {
    lab: Lab,
    cfg: PathBuf,
}

/// NAT services of `forward` on both VIPs (TCP 80) and the IPv4 VIP's UDP
/// 53, every backend on port 8080, leaving out `skip`.
fn services(lab: &Lab, forward: &str, skip: &[&str]) -> String {
    let mut s = String::new();
    for (vip, port, proto, check) in [
        (VIP4, 80, "tcp", CHECK),
        (VIP6, 80, "tcp", CHECK),
        (VIP4, 53, "udp", ""),
    ] {
        let _ = writeln!(
            s,
            "[[service]]\nvip = \"{vip}\"\nport = {port}\nprotocol = \"{proto}\"\nforward = \"{forward}\"\n{check}\nbackends = ["
        );
        for b in lab
            .spec
            .backends
            .iter()
            .filter(|b| !skip.contains(&b.name.as_str()))
        {
            let a = if vip == VIP4 {
                lab.backend_addr(b)
            } else {
                lab.backend_addr6(b)
            };
            let _ = writeln!(
                s,
                "  {{ address = \"{a}\", weight = {}, port = 8080 }},",
                b.weight
            );
        }
        s.push_str("]\n\n");
    }
    s
}

fn agent(fullnat: bool) -> String {
    let mut a = "backend_interface = \"eth1\"\n".to_string();
    if fullnat {
        let _ = writeln!(a, "snat_addresses = [\"{NAT_GW4}\", \"{NAT_GW6}\"]");
    }
    a
}

fn setup(forward: &str) -> Setup {
    let spec = LabSpec {
        nat: true,
        ..LabSpec::default()
    };
    let mut lab = Lab::up(spec, &lab::bin("LAB_HTTP_BIN", "lab-http").unwrap(), false).unwrap();
    if forward == "fullnat" {
        // Full-NAT's point: the backends know no way to the clients.
        for b in lab.spec.backends.clone() {
            let ns = lab.ns(&b.name);
            netns::ip(&ns, "route del default").unwrap();
            netns::ip(&ns, "-6 route del default").unwrap();
        }
    }
    let cfg = lab
        .write_config_with(
            "lb1",
            &agent(forward == "fullnat"),
            &services(&lab, forward, &[]),
        )
        .unwrap();
    lab.start_agent_as("lb1", "lb1", &lab::bin("LB_BIN", "lb").unwrap(), &cfg, &[])
        .unwrap();
    let served = http::get_until(&lab.ns("c"), vip(false), Duration::from_secs(20), |_| true);
    if let Err(e) = served {
        panic!("{forward}: VIP not served: {e}\n{}", lab.log("lb1"));
    }
    for v6 in [false, true] {
        let svc = format!("{}/tcp", vip(v6));
        let svc = lb_user::addr::service_name(&lb_user::addr::parse_service_name(&svc).unwrap());
        for b in lab.spec.backends.clone() {
            let a = if v6 {
                lab.backend_addr6(&b)
            } else {
                lab.backend_addr(&b)
            };
            if let Err(e) = lab.wait_backend("lb1", &svc, &a, "up", Duration::from_secs(15)) {
                panic!("{forward}: {a} not up: {e:#}\n{}", lab.log("lb1"));
            }
        }
    }
    Setup { lab, cfg }
}

fn vip(v6: bool) -> SocketAddr {
    let a: IpAddr = if v6 { VIP6 } else { VIP4 }.parse().unwrap();
    SocketAddr::new(a, 80)
}

fn spread(s: &Setup, v6: bool, n: u16, port0: u16) -> BTreeMap<String, u32> {
    s.lab.spread(vip(v6), n, port0)
}

fn assert_weights(s: &Setup, what: &str, counts: &BTreeMap<String, u32>, n: u32) {
    for (b, want) in [("b1", 25.0), ("b2", 25.0), ("b3", 50.0)] {
        let share = 100.0 * *counts.get(b).unwrap_or(&0) as f64 / n as f64;
        assert!(
            (share - want).abs() <= 5.0,
            "{what}: {b} got {share:.1}% of {n} new connections, want {want}% +-5 ({counts:?})\n{}",
            s.lab.log("lb1")
        );
    }
    println!("{what}: {n} new connections: {counts:?}");
}

/// One UDP request to the VIP's port 53: the backend's name.
fn udp_ask(s: &Setup, sport: u16) -> String {
    netns::in_ns(&s.lab.ns("c"), move || -> anyhow::Result<String> {
        let sock = UdpSocket::bind(SocketAddr::new(CLIENT4.parse()?, sport))?;
        sock.set_read_timeout(Some(Duration::from_secs(2)))?;
        let to = SocketAddr::new(VIP4.parse()?, 53);
        let mut buf = [0u8; 64];
        // A datagram may meet an unresolved neighbour: ask a few times.
        for _ in 0..3 {
            sock.send_to(b"who", to)?;
            if let Ok((n, from)) = sock.recv_from(&mut buf) {
                anyhow::ensure!(from == to, "answered from {from}, not the VIP");
                return Ok(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
        anyhow::bail!("no answer")
    })
    .unwrap()
    .unwrap_or_else(|e| format!("error: {e}"))
}

#[test]
fn nat_serves_by_weight_keeps_held_connections_and_answers_udp() {
    if !require::root("nat_serves_by_weight_keeps_held_connections_and_answers_udp") {
        return;
    }
    let s = setup("nat");
    let counts = spread(&s, false, 300, 10000);
    assert_weights(&s, "nat v4", &counts, 300);
    let counts = spread(&s, true, 300, 10000);
    assert_weights(&s, "nat v6", &counts, 300);

    // UDP request and response through the NAT, several client ports.
    let mut udp = BTreeMap::new();
    for p in 0..30 {
        *udp.entry(udp_ask(&s, 20000 + p)).or_insert(0) += 1;
    }
    assert!(
        udp.keys().all(|k| k.starts_with('b')),
        "every datagram answered by a backend, from the VIP: {udp:?}\n{}",
        s.lab.log("lb1")
    );
    println!("nat udp: {udp:?}");

    // Held connections, then a reload that removes b1: every connection
    // on another backend goes on, on its backend.
    let mut held = Held::open(&s.lab.ns("c"), vip(false), 12).unwrap();
    let on_b1 = held.first.iter().filter(|b| *b == "b1").count();
    assert!(on_b1 < 12, "some held connection is on another backend");
    std::fs::write(&s.cfg, {
        let text = std::fs::read_to_string(&s.cfg).unwrap();
        let cut = text.find("[[service]]").unwrap();
        format!("{}{}", &text[..cut], services(&s.lab, "nat", &["b1"]))
    })
    .unwrap();
    s.lab.signal("lb1", libc::SIGHUP).unwrap();
    s.lab
        .wait_log("lb1", "config reloaded", Duration::from_secs(10))
        .unwrap();
    let (failed, moved, notes) = held.ask();
    assert!(
        failed <= on_b1 && moved == 0,
        "held connections across a reload removing b1 ({on_b1} were on it): {failed} failed, {moved} moved: {notes:?}"
    );
    assert!(
        notes.iter().all(|n| !n.contains("->")),
        "no connection changed backend: {notes:?}"
    );

    // Without backend_interface, lb check warns that the backends' replies
    // would arrive where the program does not run (and still accepts it).
    let text = std::fs::read_to_string(&s.cfg).unwrap();
    let bare = s.lab.dir.join("no-backend-interface.toml");
    std::fs::write(&bare, text.replace("backend_interface = \"eth1\"\n", "")).unwrap();
    let mut check = std::process::Command::new(lab::bin("LB_BIN", "lb").unwrap());
    check.arg("check").arg("-c").arg(&bare);
    netns::enter(&mut check, &s.lab.ns("lb1")).unwrap();
    let out = check.output().unwrap();
    let warn = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{warn}");
    assert!(
        warn.contains("warning: NAT backend 198.51.100.140 is reached via eth1, where the program does not run"),
        "{warn}"
    );

    // Both directions in `lb show flows`.
    let dir = s.lab.pin_dir("lb1");
    let flows = lb_show(&["flows", "--pin-dir", dir.to_str().unwrap()]).unwrap();
    let nat = flows["nat"].as_array().cloned().unwrap_or_default();
    assert!(
        nat.iter().any(|r| r["vip"] == "203.0.113.10:80"
            && r["reply_from"].as_str().unwrap_or("").ends_with(":8080")),
        "lb show flows lists NAT connections' way back: {flows:#}"
    );
}

#[test]
fn fullnat_serves_backends_with_no_route_to_clients() {
    if !require::root("fullnat_serves_backends_with_no_route_to_clients") {
        return;
    }
    let s = setup("fullnat");
    let counts = spread(&s, false, 300, 10000);
    assert_weights(&s, "fullnat v4", &counts, 300);
    let counts = spread(&s, true, 120, 10000);
    assert!(
        counts.keys().all(|k| k.starts_with('b')),
        "fullnat v6: every connection served: {counts:?}\n{}",
        s.lab.log("lb1")
    );
    let udp = udp_ask(&s, 20000);
    assert!(udp.starts_with('b'), "fullnat udp answered: {udp}");
    // The backends saw the balancer, not the client.
    let dir = s.lab.pin_dir("lb1");
    let flows = lb_show(&["flows", "--pin-dir", dir.to_str().unwrap()]).unwrap();
    let nat = flows["nat"].as_array().cloned().unwrap_or_default();
    assert!(
        nat.iter()
            .any(|r| r["reply_to"].as_str().unwrap_or("").starts_with(NAT_GW4)),
        "replies go to the balancer's source address: {flows:#}"
    );
}

const KEY: &str = "lab sync key, 24 bytes!!";

/// lb1 (150) and lb2 (100): the VIPs on eth0 and the backends' gateway on
/// eth1, two VRRP instances in one sync group, flows synced.
fn nat_pair() -> Lab {
    let spec = LabSpec {
        balancers: 2,
        vrrp: true,
        nat: true,
        ..LabSpec::default()
    };
    let mut l = Lab::up(spec, &lab::bin("LAB_HTTP_BIN", "lab-http").unwrap(), false).unwrap();
    let lb = lab::bin("LB_BIN", "lb").unwrap();
    for (role, prio, peer) in [("lb1", 150, 2), ("lb2", 100, 1)] {
        let vrrp = format!(
            "[[vrrp]]\nname = \"VI_OUT\"\nvrid = 51\npriority = {prio}\nadvert_interval = \"100ms\"\nvips = [\"{VIP4}/32\", \"{VIP6}/128\"]\n\n\
             [[vrrp]]\nname = \"VI_IN\"\ninterface = \"eth1\"\nvrid = 52\npriority = {prio}\nadvert_interval = \"100ms\"\nvips = [\"{NAT_GW4}/25\", \"{NAT_GW6}/64\"]\n\n\
             [[vrrp_sync_group]]\nname = \"NAT_PAIR\"\ninstances = [\"VI_OUT\", \"VI_IN\"]\n\n\
             [sync]\npeers = [\"{}\"]\nkey = \"{KEY}\"\ninterval = \"10ms\"\n",
            Lab::balancer_addr(peer)
        );
        let cfg = l
            .write_config_with(
                role,
                &agent(false),
                &format!("{}{vrrp}", services(&l, "nat", &[])),
            )
            .unwrap();
        l.start_agent_as(role, role, &lb, &cfg, &[]).unwrap();
        if role == "lb1" {
            wait_state(&l, "lb1", "MASTER", Duration::from_secs(10));
        }
    }
    wait_state(&l, "lb2", "BACKUP", Duration::from_secs(10));
    l
}

/// Flows `role` has received from its peer so far.
fn received(l: &Lab, role: &str) -> u64 {
    let dir = l.pin_dir(role);
    lab::lb_show(&["sync", "--pin-dir", dir.to_str().unwrap()]).unwrap_or_default()["peers"][0]
        ["flows_received"]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn nat_pair_with_a_sync_group_keeps_connections_when_the_master_dies() {
    if !require::root("nat_pair_with_a_sync_group_keeps_connections_when_the_master_dies") {
        return;
    }
    let l = nat_pair();
    // Both instances of the group are master on lb1: the gateway moved too.
    let dir = l.pin_dir("lb1");
    let v = lb_show(&["vrrp", "--pin-dir", dir.to_str().unwrap()]).unwrap();
    let states: Vec<&str> = v["vrrp"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["state"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(states, ["MASTER", "MASTER"], "lb1's group: {v:#}");
    http::get_until(&l.ns("c"), vip(false), Duration::from_secs(20), |_| true)
        .unwrap_or_else(|e| panic!("VIP not served through the pair: {e}\n{}", l.log("lb1")));
    // The flows of the first request are synced before counting.
    std::thread::sleep(Duration::from_millis(300));
    let base = received(&l, "lb2");
    let mut held = Held::open(&l.ns("c"), vip(false), 60).unwrap();
    let t0 = std::time::Instant::now();
    while received(&l, "lb2") < base + 60 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "lb2 received {} of 60 flows\n{}",
            received(&l, "lb2") - base,
            l.log("lb2")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // A client opening a new connection every 20 ms throughout.
    let traffic = lb_tests::traffic::Traffic::start(
        &l.ns("c"),
        vip(false),
        Duration::from_millis(20),
        Duration::from_secs(20),
    );
    std::thread::sleep(Duration::from_millis(500));
    // The master node dies: agent killed, both links down.
    let killed = std::time::Instant::now();
    l.signal("lb1", libc::SIGKILL).unwrap();
    for dev in ["eth0", "eth1"] {
        netns::ip(&l.ns("lb1"), &format!("link set {dev} down")).unwrap();
    }
    let took = wait_state(&l, "lb2", "MASTER", Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(2));
    let samples = traffic.stop();
    let gap = lb_tests::traffic::longest_silence(&samples);
    let failures = samples.iter().filter(|s| s.result.is_err()).count();
    println!(
        "nat pair: {} new connections during the failover, {failures} failed, longest gap {gap:?}",
        samples.len()
    );
    // Master_Down_Interval at 100 ms adverts is about 0.35 s; a SYN lost
    // meanwhile is sent again after 1 s.
    assert!(gap <= Duration::from_millis(1500), "longest gap {gap:?}");
    let late: Vec<_> = samples
        .iter()
        .filter(|s| s.at > killed + took + Duration::from_millis(200))
        .collect();
    assert!(
        late.len() > 20 && late.iter().all(|s| s.result.is_ok()),
        "every new connection after the takeover succeeds: {:?}",
        late.iter()
            .filter(|s| s.result.is_err())
            .collect::<Vec<_>>()
    );
    let (failed, moved, notes) = held.ask();
    println!(
        "nat pair: lb1 crashed, lb2 MASTER after {took:?}; held connections: {} of 60 answered by their backend",
        60 - failed - moved
    );
    assert_eq!(
        (failed, moved),
        (0, 0),
        "held NAT connections across the failover: {notes:?}\nlb2 reasons: {}\nlb2:\n{}",
        lb_show(&["stats", "--pin-dir", l.pin_dir("lb2").to_str().unwrap()]).unwrap_or_default()["reasons"],
        l.log("lb2")
    );
    // New connections through the new master, every one answered.
    let s = Setup {
        lab: l,
        cfg: PathBuf::new(),
    };
    let counts = spread(&s, false, 60, 30000);
    assert!(
        counts.keys().all(|k| k.starts_with('b')),
        "new connections after the takeover: {counts:?}\n{}",
        s.lab.log("lb2")
    );
}
