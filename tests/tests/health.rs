//! Health checks end to end: real servers in the backend namespaces, the
//! agent in lb1, a client opening new connections to the VIP throughout.

use std::time::{Duration, Instant};

use lb_tests::{
    lab::{self, Lab, LabSpec},
    netns, require,
    traffic::{Traffic, between, share},
};

const SVC: &str = "203.0.113.10:80/tcp";
const B1: &str = "198.51.100.11";
const B2: &str = "198.51.100.12";
const B3: &str = "198.51.100.13";

use lb_tests::lab::vip;

/// A lab whose services carry `extra` (check, warmup), serving, with every
/// IPv4 backend up.
fn lab_with(extra: &str) -> Lab {
    let extra = extra.to_string();
    let (lab, _) =
        lab::serving_config(LabSpec::default(), move |l| l.services_with(&extra), &[]).unwrap();
    for b in [B1, B2, B3] {
        lab.wait_backend("lb1", SVC, b, "up", Duration::from_secs(10))
            .unwrap();
    }
    lab
}

// interval 1s, timeout 500ms, retries 2, retry_delay 500ms, rise 2:
// detection within retries x (timeout + retry_delay) + interval + 1 s = 4 s.
const HTTP_CHECK: &str = r#"check = { kind = "http", path = "/healthz", expect_body = "healthy", interval = "1s", timeout = "500ms", retries = 2, retry_delay = "500ms", rise = 2 }"#;
const WINDOW: Duration = Duration::from_secs(4);

#[test]
fn a_stopped_backend_leaves_within_the_window_and_rejoins_after_rise() {
    let name = "a_stopped_backend_leaves_within_the_window_and_rejoins_after_rise";
    if !require::lab(name, &[]) {
        return;
    }
    let mut lab = lab_with(HTTP_CHECK);
    let traffic = Traffic::start(
        &lab.ns("c"),
        vip(),
        Duration::from_millis(20),
        Duration::from_secs(30),
    );
    std::thread::sleep(Duration::from_secs(1));
    let stopped = Instant::now();
    lab.stop_backend("b2").unwrap();
    let down = lab
        .wait_backend("lb1", SVC, B2, "down", WINDOW + Duration::from_secs(2))
        .unwrap();
    let detected = stopped.elapsed();
    std::thread::sleep(WINDOW.saturating_sub(detected) + Duration::from_secs(2));
    let restarted = Instant::now();
    lab.start_backend("b2").unwrap();
    lab.wait_backend("lb1", SVC, B2, "up", Duration::from_secs(6))
        .unwrap();
    let rejoined = restarted.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let samples = traffic.stop();

    let failures: Vec<_> = samples.iter().filter(|s| s.result.is_err()).collect();
    let last_failure = failures.last().map(|s| s.at.duration_since(stopped));
    println!(
        "b2 stopped: marked down after {detected:?} (reason {}), last failed request {last_failure:?} after the stop, \
         {} of {} requests failed; restarted: up again after {rejoined:?}",
        down["health"]["last_error"],
        failures.len(),
        samples.len()
    );
    assert!(
        detected <= WINDOW,
        "detection took {detected:?}, more than {WINDOW:?}"
    );
    assert!(
        failures
            .iter()
            .all(|f| f.at >= stopped && f.at < stopped + WINDOW),
        "a request failed outside the detection window: {failures:?}"
    );
    assert_eq!(
        down["health"]["last_error"], "connection refused",
        "{down:#}"
    );
    // Every request after the window succeeded, also while b2 rejoined.
    let after = between(&samples, stopped + WINDOW, Instant::now());
    assert!(after.len() > 100, "{} samples", after.len());
    assert!(after.iter().all(|s| s.result.is_ok()));
    // rise = 2 at a 1 s interval: two passes, about a second apart.
    assert!(rejoined >= Duration::from_millis(900), "{rejoined:?}");
    let back = between(&samples, restarted + rejoined, Instant::now());
    assert!(share(&back, "b2") > 0.05, "b2 serves again");
    assert!(
        lab.log("lb1").contains("backend down"),
        "{}",
        lab.log("lb1")
    );
}

#[test]
fn error_status_hang_and_wrong_body_each_take_a_backend_down() {
    let name = "error_status_hang_and_wrong_body_each_take_a_backend_down";
    if !require::lab(name, &[]) {
        return;
    }
    let lab = lab_with(HTTP_CHECK);
    for (mode, reason) in [
        ("500", "status 500"),
        ("hang", "timeout after 500ms"),
        ("sick", "body mismatch: no \"healthy\""),
    ] {
        let t = Instant::now();
        lab.set_health("b2", mode).unwrap();
        let down = lab
            .wait_backend("lb1", SVC, B2, "down", WINDOW + Duration::from_secs(2))
            .unwrap();
        let took = t.elapsed();
        println!("b2 /healthz {mode}: down after {took:?}");
        assert!(took <= WINDOW, "{mode}: {took:?}");
        assert_eq!(down["health"]["last_error"], reason, "{down:#}");
        assert_eq!(down["effective_weight"], 0.0);
        // While down, no new connection reaches b2.
        let answers: Vec<String> = netns::in_ns(&lab.ns("c"), || {
            (0..40)
                .map(|_| lb_tests::http::get(vip()).unwrap())
                .collect()
        })
        .unwrap();
        assert!(!answers.iter().any(|a| a == "b2"), "{mode}: {answers:?}");
        // The human view says so too.
        let text = show_text(&lab);
        let line = text
            .lines()
            .find(|l| l.contains(&format!("{B2}:80")))
            .unwrap();
        assert!(line.contains("down") && line.contains(reason), "{text}");
        lab.set_health("b2", "ok").unwrap();
        lab.wait_backend("lb1", SVC, B2, "up", Duration::from_secs(5))
            .unwrap();
    }
    let log = lab.log("lb1");
    for reason in ["status 500", "timeout after 500ms", "body mismatch"] {
        assert!(
            log.lines()
                .any(|l| l.contains("backend down") && l.contains(reason)),
            "no transition logged for {reason}:\n{log}"
        );
    }
}

fn show_text(lab: &Lab) -> String {
    let out = std::process::Command::new(lab::bin("LB_BIN", "lb").unwrap())
        .args(["show", "backends", "--pin-dir"])
        .arg(lab.pin_dir("lb1"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn warmup_ramps_a_recovered_backends_share() {
    let name = "warmup_ramps_a_recovered_backends_share";
    if !require::lab(name, &[]) {
        return;
    }
    let check = r#"check = { kind = "http", path = "/healthz", interval = "200ms", timeout = "100ms", retries = 1, retry_delay = "100ms", rise = 1 }
warmup = "6s"
warmup_step = "250ms""#;
    let lab = lab_with(check);
    lab.set_health("b2", "500").unwrap();
    lab.wait_backend("lb1", SVC, B2, "down", Duration::from_secs(3))
        .unwrap();
    let traffic = Traffic::start(
        &lab.ns("c"),
        vip(),
        Duration::from_millis(8),
        Duration::from_secs(20),
    );
    lab.set_health("b2", "ok").unwrap();
    let warming = lab
        .wait_backend("lb1", SVC, B2, "warming", Duration::from_secs(3))
        .unwrap();
    let t0 = Instant::now();
    assert!(
        warming["effective_weight"].as_f64().unwrap() < 1.0,
        "{warming:#}"
    );
    let warm = lab
        .wait_backend("lb1", SVC, B2, "up", Duration::from_secs(8))
        .unwrap();
    let ramp = t0.elapsed();
    assert_eq!(warm["effective_weight"], 1.0);
    let samples = traffic.stop();
    let half = Duration::from_secs(3);
    let first = between(&samples, t0, t0 + half);
    let second = between(&samples, t0 + half, t0 + 2 * half);
    let (s1, s2) = (share(&first, "b2"), share(&second, "b2"));
    println!(
        "b2 share of new connections during warmup: first half {:.1}% ({} requests), second half {:.1}% ({}); full weight after {ramp:?}",
        100.0 * s1,
        first.len(),
        100.0 * s2,
        second.len()
    );
    assert!(first.len() > 100 && second.len() > 100);
    // Weights 1:1:2; b2's effective weight averages ~0.25 in the first half
    // (share ~7%) and ~0.75 in the second (~20%).
    assert!(s2 > s1 + 0.05, "first {s1}, second {s2}");
    assert!(samples.iter().all(|s| s.result.is_ok()));
}

#[test]
fn tcp_check_marks_refused_and_silently_dropped_ports_down() {
    let name = "tcp_check_marks_refused_and_silently_dropped_ports_down";
    if !require::lab(name, &["nft"]) {
        return;
    }
    let check = r#"check = { kind = "tcp", interval = "1s", timeout = "500ms", retries = 1 }"#;
    let lab = lab_with(check);
    // b3 drops everything to port 80: no RST, no answer at all.
    let b3 = lab.ns("b3");
    for cmd in [
        "add table inet lab",
        "add chain inet lab input { type filter hook input priority 0 ; }",
        "add rule inet lab input tcp dport 80 drop",
    ] {
        let args: Vec<&str> = cmd.split(' ').collect();
        let mut full = vec!["nft"];
        full.extend(args);
        netns::exec(&b3, &full).unwrap();
    }
    // b2 refuses: nothing listens on its port 80 any more.
    let mut lab = lab;
    lab.stop_backend("b2").unwrap();
    let d2 = lab
        .wait_backend("lb1", SVC, B2, "down", Duration::from_secs(4))
        .unwrap();
    let d3 = lab
        .wait_backend("lb1", SVC, B3, "down", Duration::from_secs(4))
        .unwrap();
    assert_eq!(d2["health"]["last_error"], "connection refused");
    assert_eq!(d3["health"]["last_error"], "timeout after 500ms");
    assert_eq!(d3["health"]["check"], "tcp");
    let b1 = lab
        .wait_backend("lb1", SVC, B1, "up", Duration::from_secs(1))
        .unwrap();
    assert_eq!(b1["health"]["consecutive_fail"], 0);
    let answers: Vec<String> = netns::in_ns(&lab.ns("c"), || {
        (0..30)
            .map(|_| lb_tests::http::get(vip()).unwrap())
            .collect()
    })
    .unwrap();
    assert!(answers.iter().all(|a| a == "b1"), "{answers:?}");
}

#[test]
fn script_check_follows_exit_codes_and_a_hanging_script_is_killed() {
    let name = "script_check_follows_exit_codes_and_a_hanging_script_is_killed";
    if !require::lab(name, &[]) {
        return;
    }
    // The scripts read their answer from the lab's run directory (removed
    // with the lab) and record their pids there.
    let (lab, _) = lab::serving_config(
        LabSpec::default(),
        |l| {
            let (c, p) = (l.dir.join("code"), l.dir.join("pids"));
            std::fs::write(&c, "0").unwrap();
            let (c, p) = (c.display(), p.display());
            let check = format!(
                r#"check = {{ kind = "script", command = ["/bin/sh", "-c", "test \"$LB_BACKEND_PORT\" = 80 && exit $(cat {c})"], interval = "500ms", timeout = "400ms", retries = 1 }}"#
            );
            // b3 gets a script that never ends (with a child of its own).
            l.services_with(&check).replacen(
                &format!("{{ address = \"{B3}\", weight = 2 }}"),
                &format!(
                    r#"{{ address = "{B3}", weight = 2, check = {{ command = ["/bin/sh", "-c", "echo $$ >> {p}; sleep 60 & echo $! >> {p}; wait"] }} }}"#
                ),
                1,
            )
        },
        &[],
    )
    .unwrap();
    let (code, pids) = (lab.dir.join("code"), lab.dir.join("pids"));
    lab.wait_backend("lb1", SVC, B2, "up", Duration::from_secs(5))
        .unwrap();
    std::fs::write(&code, "3").unwrap();
    let d = lab
        .wait_backend("lb1", SVC, B2, "down", Duration::from_secs(3))
        .unwrap();
    assert_eq!(d["health"]["last_error"], "exit 3", "{d:#}");
    std::fs::write(&code, "0").unwrap();
    lab.wait_backend("lb1", SVC, B2, "up", Duration::from_secs(3))
        .unwrap();

    let d3 = lab
        .wait_backend("lb1", SVC, B3, "down", Duration::from_secs(3))
        .unwrap();
    assert_eq!(d3["health"]["last_error"], "timeout after 400ms");
    // Every hanging script and its child were killed at the timeout.
    std::thread::sleep(Duration::from_millis(600));
    let listed: Vec<i32> = std::fs::read_to_string(&pids)
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    assert!(listed.len() >= 2, "{listed:?}");
    let now_running = |pid: &i32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
    };
    // The newest attempt may still be running; all earlier ones are gone.
    let older = &listed[..listed.len() - 2];
    assert!(
        older.iter().all(|p| !now_running(p)),
        "leftover script processes: {:?}",
        older.iter().filter(|p| now_running(p)).collect::<Vec<_>>()
    );
    assert!(
        older.len() >= 2,
        "the script ran at least twice: {listed:?}"
    );
}

#[test]
fn adding_a_check_by_reload_keeps_serving_backends_in_and_catches_a_bad_one() {
    let name = "adding_a_check_by_reload_keeps_serving_backends_in_and_catches_a_bad_one";
    if !require::lab(name, &[]) {
        return;
    }
    let lab = lab_with("");
    lab.set_health("b2", "503").unwrap();
    let traffic = Traffic::start(
        &lab.ns("c"),
        vip(),
        Duration::from_millis(20),
        Duration::from_secs(20),
    );
    std::thread::sleep(Duration::from_millis(500));
    lab.write_config("lb1", &lab.services_with(HTTP_CHECK))
        .unwrap();
    lab.signal("lb1", libc::SIGHUP).unwrap();
    let down = lab
        .wait_backend("lb1", SVC, B2, "down", WINDOW + Duration::from_secs(2))
        .unwrap();
    assert_eq!(down["health"]["last_error"], "status 503");
    // b1 and b3 were never out: no "starting" state, no failed request.
    for b in [B1, B3] {
        let s = &lab.backends("lb1", SVC).unwrap()[b];
        assert_eq!(s["state"], "up", "{s:#}");
        assert_eq!(s["health"]["transitions"], 0, "{s:#}");
    }
    std::thread::sleep(Duration::from_millis(500));
    let samples = traffic.stop();
    let failed: Vec<_> = samples.iter().filter(|s| s.result.is_err()).collect();
    assert!(failed.is_empty(), "{failed:?}");
}

#[test]
fn a_dataplane_check_finds_a_dr_backend_without_its_vip() {
    let name = "a_dataplane_check_finds_a_dr_backend_without_its_vip";
    if !require::lab(name, &[]) {
        return;
    }
    let lab = lab_with(
        r#"check = { kind = "tcp", via = "dataplane", interval = "300ms", timeout = "250ms", retries = 2, retry_delay = "100ms" }"#,
    );
    // b2 loses its VIP on lo: its own address still answers, but a frame
    // sent to the VIP with b2's MAC finds no one.
    let b2 = lab.ns("b2");
    netns::ip(&b2, &format!("addr del {}/32 dev lo", lab::VIP4)).unwrap();
    let own = std::net::SocketAddr::new(B2.parse().unwrap(), 80);
    let direct = netns::in_ns(&lab.ns("lb1"), move || lb_tests::http::get(own)).unwrap();
    assert_eq!(direct.unwrap(), "b2", "b2 answers on its own address");
    let b = lab
        .wait_backend("lb1", SVC, B2, "down", Duration::from_secs(10))
        .unwrap();
    println!("b2 without its VIP: {}", b["health"]["last_error"]);
    for other in [B1, B3] {
        assert_eq!(lab.backends("lb1", SVC).unwrap()[other]["state"], "up");
    }
    netns::ip(&b2, &format!("addr add {}/32 dev lo", lab::VIP4)).unwrap();
    lab.wait_backend("lb1", SVC, B2, "up", Duration::from_secs(10))
        .unwrap();
}
