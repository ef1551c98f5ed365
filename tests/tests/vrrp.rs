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
