//! VRRP between two agents in the lab: lb1 (priority 150) and lb2 (100)
//! move the VIP between them while a client keeps connecting to it.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use lb_tests::{
    lab::{self, Lab, LabSpec, VIP4},
    netns, require,
    traffic::Traffic,
};

const INTERVAL: &str = "200ms";
/// lb2's Master_Down_Interval at priority 100: 3 x 0.2 s + (156/256) x 0.2 s.
const MASTER_DOWN_LB2: Duration = Duration::from_micros(721_875);

fn vip() -> SocketAddr {
    format!("{VIP4}:80").parse().unwrap()
}

fn skip(name: &str) -> bool {
    !require::root(name) || !require::command(name, "ethtool")
}

/// The lab with both agents started; `extra1`/`extra2` go into each
/// balancer's [[vrrp]] (and `svc1` replaces lb1's services if given).
fn pair(extra1: &str, extra2: &str, svc1: Option<String>) -> Lab {
    let spec = LabSpec {
        balancers: 2,
        vrrp: true,
        ..LabSpec::default()
    };
    let mut l = Lab::up(spec, &lab::bin("LAB_HTTP_BIN", "lab-http").unwrap(), false).unwrap();
    let lb = lab::bin("LB_BIN", "lb").unwrap();
    for (role, prio, extra) in [("lb1", 150, extra1), ("lb2", 100, extra2)] {
        let services = match (&svc1, role) {
            (Some(s), "lb1") => s.clone(),
            _ => l.default_services(),
        };
        let cfg = l
            .write_config(
                role,
                &format!("{services}{}", Lab::vrrp_section(prio, INTERVAL, extra)),
            )
            .unwrap();
        l.start_agent(role, &lb, &cfg).unwrap();
    }
    l
}

/// `lb show vrrp` of `role`: (state, master address).
fn vrrp_state(l: &Lab, role: &str) -> (String, String) {
    let dir = l.pin_dir(role);
    match lab::lb_show(&["vrrp", "--pin-dir", dir.to_str().unwrap()]) {
        Ok(v) => {
            let i = &v["vrrp"][0];
            (
                i["state"].as_str().unwrap_or("?").to_string(),
                i["master"].as_str().unwrap_or("-").to_string(),
            )
        }
        Err(_) => ("gone".into(), "-".into()),
    }
}

fn wait_state(l: &Lab, role: &str, state: &str, timeout: Duration) -> Duration {
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        if vrrp_state(l, role).0 == state {
            return t0.elapsed();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!(
        "{role} not {state} within {timeout:?}; now {:?}\n{role} log:\n{}",
        vrrp_state(l, role),
        l.log(role)
    );
}

/// The client's neighbour entry for the VIP (its MAC).
fn client_vip_mac(l: &Lab) -> String {
    let out = netns::ip(&l.ns("c"), &format!("neigh show {VIP4} dev eth0")).unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.split_whitespace()
        .skip_while(|w| *w != "lladdr")
        .nth(1)
        .unwrap_or("none")
        .to_string()
}

/// Longest run of failed requests, from the first failure to the next success.
fn longest_gap(samples: &[lb_tests::traffic::Sample]) -> Duration {
    let mut gap = Duration::ZERO;
    let mut start: Option<Instant> = None;
    for s in samples {
        match (&s.result, start) {
            (Err(_), None) => start = Some(s.at),
            (Ok(_), Some(t)) => {
                gap = gap.max(s.at - t);
                start = None;
            }
            _ => {}
        }
    }
    gap
}

#[test]
fn killing_the_master_moves_the_vip_and_it_comes_back_with_preempt() {
    let name = "killing_the_master_moves_the_vip_and_it_comes_back_with_preempt";
    if skip(name) {
        return;
    }
    let mut l = pair("", "", None);
    wait_state(&l, "lb1", "MASTER", Duration::from_secs(10));
    wait_state(&l, "lb2", "BACKUP", Duration::from_secs(5));
    let traffic = Traffic::start(
        &l.ns("c"),
        vip(),
        Duration::from_millis(50),
        Duration::from_secs(30),
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(client_vip_mac(&l), l.mac("lb1").unwrap());
    let killed = Instant::now();
    l.signal("lb1", libc::SIGKILL).unwrap();
    let took = wait_state(&l, "lb2", "MASTER", Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(2));
    let samples = traffic.stop();
    let gap = longest_gap(&samples);
    println!(
        "SIGKILL of the master: lb2 MASTER after {took:?}; longest client gap {gap:?} (Master_Down_Interval {MASTER_DOWN_LB2:?})"
    );
    assert!(took <= MASTER_DOWN_LB2 + Duration::from_secs(1), "{took:?}");
    assert!(gap <= MASTER_DOWN_LB2 + Duration::from_secs(1), "{gap:?}");
    assert_eq!(client_vip_mac(&l), l.mac("lb2").unwrap());
    let after: Vec<_> = samples
        .iter()
        .filter(|s| s.at > killed + MASTER_DOWN_LB2 + Duration::from_secs(1))
        .collect();
    assert!(after.len() > 10 && after.iter().all(|s| s.result.is_ok()));

    // lb1 returns (same pins, restarted agent) and, preempting, takes over.
    let cfg = l.dir.join("lb1.toml");
    l.start_agent_as(
        "lb1",
        "lb1-again",
        &lab::bin("LB_BIN", "lb").unwrap(),
        &cfg,
        &[],
    )
    .unwrap();
    wait_state(&l, "lb1", "MASTER", Duration::from_secs(5));
    wait_state(&l, "lb2", "BACKUP", Duration::from_secs(2));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(client_vip_mac(&l), l.mac("lb1").unwrap());
    let ok = netns::in_ns(&l.ns("c"), || lb_tests::http::get(vip()).is_ok()).unwrap();
    assert!(ok);
}

#[test]
fn sigterm_hands_over_in_about_the_skew_time() {
    let name = "sigterm_hands_over_in_about_the_skew_time";
    if skip(name) {
        return;
    }
    let l = pair("", "", None);
    wait_state(&l, "lb1", "MASTER", Duration::from_secs(10));
    wait_state(&l, "lb2", "BACKUP", Duration::from_secs(5));
    l.signal("lb1", libc::SIGTERM).unwrap();
    let took = wait_state(&l, "lb2", "MASTER", Duration::from_secs(5));
    println!(
        "SIGTERM of the master: lb2 MASTER after {took:?} (skew ~122 ms, Master_Down_Interval {MASTER_DOWN_LB2:?})"
    );
    assert!(took < MASTER_DOWN_LB2, "{took:?}");
    assert!(l.log("lb1").contains("MASTER"), "{}", l.log("lb1"));
}

#[test]
fn nopreempt_keeps_the_returning_higher_priority_node_backup() {
    let name = "nopreempt_keeps_the_returning_higher_priority_node_backup";
    if skip(name) {
        return;
    }
    let mut l = pair("preempt = false", "preempt = false", None);
    wait_state(&l, "lb1", "MASTER", Duration::from_secs(10));
    l.signal("lb1", libc::SIGTERM).unwrap();
    l.wait_exit("lb1", Duration::from_secs(5));
    wait_state(&l, "lb2", "MASTER", Duration::from_secs(5));
    let cfg = l.dir.join("lb1.toml");
    l.start_agent_as(
        "lb1",
        "lb1-again",
        &lab::bin("LB_BIN", "lb").unwrap(),
        &cfg,
        &[],
    )
    .unwrap();
    wait_state(&l, "lb1", "BACKUP", Duration::from_secs(5));
    // Several Master_Down_Intervals later, still so.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(vrrp_state(&l, "lb1").0, "BACKUP");
    assert_eq!(vrrp_state(&l, "lb2").0, "MASTER");
}

#[test]
fn a_master_whose_backends_all_fail_hands_over() {
    let name = "a_master_whose_backends_all_fail_hands_over";
    if skip(name) {
        return;
    }
    // lb1 checks a port nothing listens on once told to: its service then
    // has no healthy backend, its priority drops by 60 (150 -> 90 < 100).
    let track = r#"track_services = [ { service = "203.0.113.10:80/tcp", weight = 60 } ]"#;
    let l = pair(track, track, None);
    wait_state(&l, "lb1", "MASTER", Duration::from_secs(10));
    // Make lb1's view of the backends fail: its check (reloaded; the
    // [[vrrp]] section stays the same) now goes to port 81.
    let services = l.services_with(
        r#"check = { kind = "tcp", port = 81, interval = "200ms", timeout = "100ms", retries = 1 }"#,
    );
    l.write_config(
        "lb1",
        &format!("{services}{}", Lab::vrrp_section(150, INTERVAL, track)),
    )
    .unwrap();
    l.signal("lb1", libc::SIGHUP).unwrap();
    let took = wait_state(&l, "lb2", "MASTER", Duration::from_secs(8));
    wait_state(&l, "lb1", "BACKUP", Duration::from_secs(2));
    println!("lb1's backends all down: lb2 MASTER {took:?} after the reload");
    let ok = netns::in_ns(&l.ns("c"), || lb_tests::http::get(vip()).is_ok()).unwrap();
    assert!(ok, "lb2 serves the VIP");
}

/// keepalived in lb2 (VRRP `version`), our agent in lb1; returns the lab.
fn with_keepalived(version: u8, ka_priority: u8, auth: bool) -> Lab {
    let spec = LabSpec {
        balancers: 2,
        vrrp: true,
        ..LabSpec::default()
    };
    let mut l = Lab::up(spec, &lab::bin("LAB_HTTP_BIN", "lab-http").unwrap(), false).unwrap();
    let (interval, ka_int) = if version == 2 {
        ("1s", "1")
    } else {
        ("200ms", "0.2")
    };
    let ours = format!(
        "version = {version}\n{}",
        if auth { "auth_pass = \"s3cret\"" } else { "" }
    );
    let cfg = l
        .write_config(
            "lb1",
            &format!(
                "{}{}",
                l.default_services(),
                Lab::vrrp_section(150, interval, &ours)
            ),
        )
        .unwrap();
    l.start_agent("lb1", &lab::bin("LB_BIN", "lb").unwrap(), &cfg)
        .unwrap();
    if ka_priority < 150 {
        // Otherwise a keepalived that starts first is briefly (and rightly)
        // master until our higher priority preempts it.
        wait_state(&l, "lb1", "MASTER", Duration::from_secs(15));
    }
    let dir = l.dir.clone();
    let auth_block = if auth {
        "    authentication {\n        auth_type PASS\n        auth_pass s3cret\n    }\n"
    } else {
        ""
    };
    let conf = format!(
        "global_defs {{\n    router_id lb2\n    vrrp_version {version}\n}}\nvrrp_instance VI_1 {{\n    state BACKUP\n    interface eth0\n    virtual_router_id 51\n    priority {ka_priority}\n    advert_int {ka_int}\n{auth_block}    virtual_ipaddress {{\n        {VIP4}/32\n    }}\n}}\n"
    );
    let path = dir.join("keepalived.conf");
    std::fs::write(&path, conf).unwrap();
    let mut cmd = std::process::Command::new("keepalived");
    cmd.args([
        "--vrrp",
        "--dont-fork",
        "--log-console",
        "--log-detail",
        "--no-syslog",
    ])
    .arg("--use-file")
    .arg(&path)
    .arg("--pid")
    .arg(dir.join("keepalived.pid.main"))
    .arg("--vrrp_pid")
    .arg(dir.join("keepalived.pid.vrrp"));
    l.spawn("lb2", "keepalived", cmd).unwrap();
    l
}

/// keepalived's state, from its log (it logs every transition).
fn keepalived_state(l: &Lab) -> &'static str {
    let log = l.log("keepalived");
    let m = log.rfind("Entering MASTER STATE");
    let b = log
        .rfind("Entering BACKUP STATE")
        .max(log.rfind("Entering FAULT STATE"));
    match (m, b) {
        (Some(m), Some(b)) if m > b => "MASTER",
        (Some(_), None) => "MASTER",
        (_, Some(_)) => "BACKUP",
        _ => "?",
    }
}

fn keepalived_interop(version: u8, auth: bool) {
    // keepalived higher (200): it wins, we are backup; kill it: we take over.
    let l = with_keepalived(version, 200, auth);
    let wait = Duration::from_secs(if version == 2 { 15 } else { 8 });
    let t0 = Instant::now();
    while keepalived_state(&l) != "MASTER" && t0.elapsed() < wait {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(keepalived_state(&l), "MASTER", "{}", l.log("keepalived"));
    wait_state(&l, "lb1", "BACKUP", wait);
    // Steady: nobody flaps for a while.
    let steady = Duration::from_secs(if version == 2 { 10 } else { 5 });
    let t1 = Instant::now();
    while t1.elapsed() < steady {
        assert_eq!(vrrp_state(&l, "lb1").0, "BACKUP", "{}", l.log("lb1"));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(keepalived_state(&l), "MASTER");
    let dropped = lab::lb_show(&["vrrp", "--pin-dir", l.pin_dir("lb1").to_str().unwrap()]).unwrap();
    let d = &dropped["vrrp"][0];
    assert!(d["adverts_received"].as_u64().unwrap() > 3, "{d:#}");
    assert!(
        d["dropped"].as_object().unwrap().values().all(|v| v == 0),
        "our agent rejected keepalived's adverts: {d:#}"
    );
    // SIGKILL its VRRP process first: a killed parent would let the child
    // resign cleanly (priority 0), which is not a crash.
    let vrrp_pid: i32 = std::fs::read_to_string(l.dir.join("keepalived.pid.vrrp"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: kill(2) of the keepalived this test started.
    unsafe { libc::kill(vrrp_pid, libc::SIGKILL) };
    l.signal("keepalived", libc::SIGKILL).unwrap();
    let took = wait_state(&l, "lb1", "MASTER", wait);
    println!("keepalived v{version} (master) killed: our agent MASTER after {took:?}");
    drop(l);

    // keepalived lower (100): we win; it stays backup.
    let l = with_keepalived(version, 100, auth);
    wait_state(&l, "lb1", "MASTER", wait);
    std::thread::sleep(steady);
    assert_eq!(vrrp_state(&l, "lb1").0, "MASTER");
    assert_eq!(keepalived_state(&l), "BACKUP", "{}", l.log("keepalived"));
    assert!(
        !l.log("keepalived").contains("Entering MASTER STATE"),
        "keepalived must never have been master:\n{}",
        l.log("keepalived")
    );
    // Graceful stop of ours: keepalived takes over quickly (priority 0).
    l.signal("lb1", libc::SIGTERM).unwrap();
    let t0 = Instant::now();
    while keepalived_state(&l) != "MASTER" && t0.elapsed() < wait {
        std::thread::sleep(Duration::from_millis(10));
    }
    println!(
        "our agent (master, v{version}) stopped: keepalived MASTER after {:?}",
        t0.elapsed()
    );
    assert_eq!(keepalived_state(&l), "MASTER", "{}", l.log("keepalived"));
}

#[test]
fn interoperates_with_keepalived_vrrp_v3() {
    let name = "interoperates_with_keepalived_vrrp_v3";
    if skip(name) || !require::command(name, "keepalived") {
        return;
    }
    keepalived_interop(3, false);
}

#[test]
fn interoperates_with_keepalived_vrrp_v2_with_password() {
    let name = "interoperates_with_keepalived_vrrp_v2_with_password";
    if skip(name) || !require::command(name, "keepalived") {
        return;
    }
    keepalived_interop(2, true);
}
