//! The balancer in a namespace lab: real TCP clients and HTTP backends, the
//! XDP program forwarding between them, the agent reloading and reporting.

use std::{
    collections::BTreeMap,
    process::Command,
    time::{Duration, Instant},
};

use lb_tests::{
    http::{self, Conn},
    lab::{self, CLIENT4, LabSpec},
    netns, require,
};

use lb_tests::lab::vip;

fn spread(lab: &lab::Lab, n: u16, port0: u16) -> BTreeMap<String, u32> {
    lab.spread(vip(), n, port0)
}

/// The backend each of `n` flows from fixed source ports should reach,
/// computed from the live table and the same flow hash the kernel uses.
fn predicted(lab: &lab::Lab, n: u16, port0: u16) -> Vec<String> {
    use lb_common::{FlowKey, flow_hash};
    let p = lb_user::maps::Pinned::open(&lab.pin_dir("lb1")).unwrap();
    let key = lb_user::addr::parse_service_name("203.0.113.10:80/tcp").unwrap();
    let (_, meta) = p
        .services()
        .unwrap()
        .into_iter()
        .find(|(k, _)| *k == key)
        .unwrap();
    let table = p.table(&meta).unwrap();
    let names: BTreeMap<u32, String> = p
        .backends(meta.id)
        .unwrap()
        .into_iter()
        .map(|(id, b)| (id, format!("b{}", b.addr[3] - 10)))
        .collect();
    (0..n)
        .map(|i| {
            let mut k = FlowKey {
                sport: port0 + i,
                dport: 80,
                proto: 6,
                family: 4,
                ..Default::default()
            };
            k.src[..4].copy_from_slice(&[198, 51, 100, 2]);
            k.dst[..4].copy_from_slice(&[203, 0, 113, 10]);
            let slot = flow_hash(&k, meta.hash_fields) % meta.active_len();
            names[&table[slot as usize]].clone()
        })
        .collect()
}

/// Per-flow answers, in port order.
fn answers(lab: &lab::Lab, n: u16, port0: u16) -> Vec<String> {
    netns::in_ns(&lab.ns("c"), move || {
        (0..n)
            .map(|i| {
                let local = format!("{CLIENT4}:{}", port0 + i).parse().unwrap();
                Conn::open_from(vip(), Some(local))
                    .and_then(|mut c| c.get())
                    .unwrap_or_else(|e| format!("error: {e}"))
            })
            .collect()
    })
    .unwrap()
}

#[test]
fn new_connections_follow_weights_1_1_2() {
    if !require::lab("new_connections_follow_weights_1_1_2", &[]) {
        return;
    }
    let (lab, _) = lab::serving(LabSpec::default()).unwrap();
    // 300 new connections from source ports 10000..10300. The ports are fixed
    // so the test is deterministic: 300 hash draws carry ~2.5 points of
    // sampling noise per backend, so with random ports a +-5 point check on
    // even a perfect table fails roughly one run in six. The table itself
    // is exact (see lb_show_reports_what_was_configured), and every flow
    // below must land exactly where that table and the shared hash say.
    const BASE: u16 = 10000;
    let got = answers(&lab, 300, BASE);
    let want = predicted(&lab, 300, BASE);
    let wrong: Vec<String> = (0..300)
        .filter(|&i| got[i] != want[i])
        .map(|i| {
            format!(
                "port {}: served by {}, table says {}",
                BASE as usize + i,
                got[i],
                want[i]
            )
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of 300 flows did not follow the table:\n{}\n{}",
        wrong.len(),
        wrong.join("\n"),
        lab.log("lb1")
    );
    let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
    for g in &got {
        *counts.entry(g.as_str()).or_default() += 1;
    }
    for (b, want) in [("b1", 25.0), ("b2", 25.0), ("b3", 50.0)] {
        let share = 100.0 * *counts.get(b).unwrap_or(&0) as f64 / 300.0;
        assert!(
            (share - want).abs() <= 5.0,
            "{b}: {share:.1}% of new connections, want {want}% +-5 ({counts:?})"
        );
    }
    println!("300 new connections: {counts:?}");
}

#[test]
fn long_lived_connection_survives_removing_another_backend_and_reload() {
    let name = "long_lived_connection_survives_removing_another_backend_and_reload";
    if !require::lab(name, &[]) {
        return;
    }
    let (lab, cfg) = lab::serving(LabSpec::default()).unwrap();
    let c_ns = lab.ns("c");
    // Open the long-lived connection and learn its backend.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (res_tx, res_rx) = std::sync::mpsc::channel();
    let client = std::thread::spawn({
        let c_ns = c_ns.clone();
        move || {
            netns::in_ns(&c_ns, move || {
                let mut conn = Conn::open(vip()).expect("connect");
                let first = conn.get().expect("first request");
                res_tx.send(first.clone()).unwrap();
                rx.recv().unwrap(); // the reload has happened
                let mut answers = Vec::new();
                for _ in 0..20 {
                    answers.push(conn.get().map_err(|e| e.to_string()));
                    std::thread::sleep(Duration::from_millis(20));
                }
                (first, answers)
            })
            .unwrap()
        }
    });
    let first = res_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("long-lived connection opened");
    let victim = ["b1", "b2", "b3"]
        .into_iter()
        .find(|b| *b != first)
        .unwrap();
    let victim_addr = format!("198.51.100.{}", 10 + victim[1..].parse::<u8>().unwrap());

    // Remove `victim` from the config and reload.
    let text = std::fs::read_to_string(&cfg).unwrap();
    let new: String = text
        .lines()
        .filter(|l| !l.contains(&format!("\"{victim_addr}\"")))
        .collect::<Vec<_>>()
        .join("\n");
    assert_ne!(new, text);
    std::fs::write(&cfg, new + "\n").unwrap();
    lab.signal("lb1", libc::SIGHUP).unwrap();
    lab.wait_log(
        "lb1",
        &format!("backend removed service=203.0.113.10:80/tcp backend={victim_addr}"),
        Duration::from_secs(5),
    )
    .unwrap();
    tx.send(()).unwrap();

    let (first, answers) = client.join().unwrap();
    for a in &answers {
        assert_eq!(
            a.as_deref(),
            Ok(first.as_str()),
            "the long-lived connection moved or broke after the reload: {answers:?}"
        );
    }
    // New connections never reach the removed backend.
    let counts = spread(&lab, 60, 30000);
    assert!(
        !counts.contains_key(victim),
        "{victim} was removed but still got new connections: {counts:?}"
    );
    assert_eq!(counts.values().sum::<u32>(), 60);
    assert!(counts.keys().all(|k| !k.starts_with("error")), "{counts:?}");
}

#[test]
fn bad_config_on_reload_is_rejected_and_the_old_one_keeps_serving() {
    let name = "bad_config_on_reload_is_rejected_and_the_old_one_keeps_serving";
    if !require::lab(name, &[]) {
        return;
    }
    let (lab, cfg) = lab::serving(LabSpec::default()).unwrap();
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace("weight = 2", "weight = 2x")).unwrap();
    lab.signal("lb1", libc::SIGHUP).unwrap();
    lab.wait_log(
        "lb1",
        "reload rejected, keeping the running config",
        Duration::from_secs(5),
    )
    .unwrap();
    let log = lab.log("lb1");
    let at = format!("{}:", cfg.display());
    assert!(
        log.contains(&at) && log.contains("hint:"),
        "the rejection must name file:line:column and a hint:\n{log}"
    );
    // Still serving all three backends, weights unchanged.
    let counts = spread(&lab, 60, 40000);
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert!(counts.keys().all(|k| k.starts_with('b')), "{counts:?}");
}

fn lb_show(args: &[&str]) -> serde_json::Value {
    lab::lb_show(args).unwrap()
}

#[test]
fn lb_show_reports_what_was_configured() {
    let name = "lb_show_reports_what_was_configured";
    if !require::lab(name, &[]) {
        return;
    }
    let (lab, cfg) = lab::serving(LabSpec::default()).unwrap();
    let c = cfg.to_str().unwrap();
    // Backends: addresses, weights, MACs of the real interfaces, all up.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let backends = loop {
        let v = lb_show(&["backends", "-c", c]);
        let all_up = v["backends"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["state"] == "up");
        if all_up || std::time::Instant::now() > deadline {
            break v;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let list = backends["backends"].as_array().unwrap();
    assert_eq!(list.len(), 6, "3 backends x (IPv4, IPv6): {backends:#}");
    for (role, host, weight) in [("b1", 11, 1), ("b2", 12, 1), ("b3", 13, 2)] {
        let mac = lab.mac(role).unwrap();
        for addr in [
            format!("198.51.100.{host}"),
            format!("2001:db8:1::{host:x}"),
        ] {
            let b = list
                .iter()
                .find(|b| b["address"] == addr.as_str())
                .unwrap_or_else(|| panic!("{addr} missing: {backends:#}"));
            assert_eq!(b["weight"], weight, "{b}");
            assert_eq!(b["state"], "up", "{b}");
            assert_eq!(b["mac"], mac.as_str(), "{b}");
        }
    }
    // Services.
    let services = lb_show(&["services", "-c", c]);
    let names: Vec<&str> = services["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["service"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["203.0.113.10:80/tcp", "[2001:db8:f::10]:80/tcp"]);
    // The table: every entry used, shares at the weights.
    let table = lb_show(&["table", "203.0.113.10:80/tcp", "-c", c]);
    assert_eq!(table["table_size"], 65537);
    assert_eq!(table["empty_entries"], 0);
    for b in table["backends"].as_array().unwrap() {
        let (share, wanted) = (b["share"].as_f64().unwrap(), b["wanted"].as_f64().unwrap());
        assert!((share - wanted).abs() < 0.01, "{b}");
    }
    // Traffic shows up in flows and stats.
    let counts = spread(&lab, 10, 50000);
    assert_eq!(counts.values().sum::<u32>(), 10);
    let flows = lb_show(&["flows", "-c", c]);
    let ours = flows["flows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| {
            f["client"]
                .as_str()
                .unwrap()
                .starts_with("198.51.100.2:5000")
        })
        .count();
    assert_eq!(ours, 10, "{flows:#}");
    let stats = lb_show(&["stats", "-c", c]);
    assert!(
        stats["reasons"]["fwd_flow_miss"].as_u64().unwrap() >= 10,
        "{stats:#}"
    );
    assert!(
        stats["reasons"]["fwd_flow_hit"].as_u64().unwrap() >= 10,
        "{stats:#}"
    );
    // The human tables name the same things.
    let out = Command::new(lab::bin("LB_BIN", "lb").unwrap())
        .args(["show", "backends", "-c", c])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("TCP   203.0.113.10:80") && text.contains("-> 198.51.100.13:80"),
        "{text}"
    );
}

#[test]
fn a_lab_and_its_agent_leave_nothing_behind() {
    let name = "a_lab_and_its_agent_leave_nothing_behind";
    if !require::lab(name, &[]) {
        return;
    }
    let (mut lab, _) = lab::serving(LabSpec::default()).unwrap();
    let prefix = lab.prefix.clone();
    let pin_dir = lab.pin_dir("lb1");
    let layout = lb_user::maps::loader::layout_dir(&pin_dir);
    assert!(layout.join("FLOWS").exists() && layout.join("link").exists());
    // SIGTERM: the agent detaches and removes its own pins.
    lab.signal("lb1", libc::SIGTERM).unwrap();
    assert!(
        lab.wait_exit("lb1", Duration::from_secs(5)),
        "agent did not stop on SIGTERM"
    );
    assert!(!pin_dir.exists(), "agent left {} behind", pin_dir.display());
    let attached =
        String::from_utf8_lossy(&netns::ip(&lab.ns("lb1"), "link show eth0").unwrap().stdout)
            .contains("prog/xdp");
    assert!(!attached, "XDP program still attached after SIGTERM");
    drop(lab);
    assert!(
        netns::list(&format!("{prefix}-")).is_empty(),
        "namespaces left behind"
    );
    let pins: Vec<_> = std::fs::read_dir("/sys/fs/bpf")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(&prefix))
        .collect();
    assert!(pins.is_empty(), "pins left behind: {pins:?}");
    assert!(
        !std::path::Path::new(lab::RUN_DIR).join(&prefix).exists(),
        "run directory left behind"
    );
    // A sanity check that the probe above would have seen a leftover.
    let _ = http::TIMEOUT;
}

#[test]
fn flows_survive_an_agent_restart_with_keep_pinned() {
    let name = "flows_survive_an_agent_restart_with_keep_pinned";
    if !require::lab(name, &[]) {
        return;
    }
    let (mut lab, _) = lab::serving_with(LabSpec::default(), &["--keep-pinned"]).unwrap();
    let (to_client, client_rx) = std::sync::mpsc::channel::<&'static str>();
    let (to_test, test_rx) = std::sync::mpsc::channel::<Result<String, String>>();
    let c_ns = lab.ns("c");
    let client = std::thread::spawn(move || {
        netns::in_ns(&c_ns, move || {
            let mut conn = Conn::open(vip()).expect("connect");
            // Answer one GET per command until told to stop.
            while let Ok(cmd) = client_rx.recv() {
                if cmd == "stop" {
                    break;
                }
                to_test.send(conn.get().map_err(|e| e.to_string())).unwrap();
            }
        })
        .unwrap()
    });
    let ask = || {
        to_client.send("get").unwrap();
        test_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("client answered")
    };
    let first = ask().expect("first request");

    // Stop the agent, leaving program and maps in place.
    lab.signal("lb1", libc::SIGTERM).unwrap();
    assert!(lab.wait_exit("lb1", Duration::from_secs(5)));
    assert!(lab.log("lb1").contains("stay pinned"), "{}", lab.log("lb1"));
    assert_eq!(
        ask().as_deref(),
        Ok(first.as_str()),
        "with the agent down, the pinned program must keep forwarding"
    );

    // A new agent adopts the live maps; the connection keeps its backend.
    lab.restart_agent("lb1", "lb1-again").unwrap();
    lab.wait_log(
        "lb1-again",
        "adopted live maps from a previous agent",
        Duration::from_secs(10),
    )
    .unwrap();
    lab.wait_log("lb1-again", "serving", Duration::from_secs(10))
        .unwrap();
    for _ in 0..10 {
        assert_eq!(
            ask().as_deref(),
            Ok(first.as_str()),
            "the connection moved after the restart:\n{}",
            lab.log("lb1-again")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let counts = spread(&lab, 30, 60000);
    assert_eq!(
        counts.len(),
        3,
        "new connections after the restart: {counts:?}"
    );
    to_client.send("stop").unwrap();
    client.join().unwrap();
}

/// Removes lab `.0` on drop, whatever the test did to the handle.
struct RemoveOnDrop(String);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        lab::remove(&self.0);
    }
}

/// `lab sweep`'s output.
fn lab_sweep() -> String {
    let out = Command::new(lab::bin("LAB_BIN", "lab").unwrap())
        .arg("sweep")
        .output()
        .unwrap();
    assert!(out.status.success(), "lab sweep failed: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_killed_runs_lab_is_swept_and_a_live_one_is_not() {
    let name = "a_killed_runs_lab_is_swept_and_a_live_one_is_not";
    if !require::lab(name, &[]) {
        return;
    }
    let (mut lab, _) = lab::serving(LabSpec::default()).unwrap();
    let prefix = lab.prefix.clone();
    let _cleanup = RemoveOnDrop(prefix.clone());
    let dir = std::path::Path::new(lab::RUN_DIR).join(&prefix);
    let age = |d: &std::path::Path| {
        let ok = Command::new("touch")
            .args(["-d", "2 minutes ago"])
            .arg(d)
            .status()
            .unwrap()
            .success();
        assert!(ok, "touch failed");
    };
    age(&dir);
    let out = lab_sweep();
    assert!(
        !out.contains(&prefix) && dir.exists(),
        "lab sweep removed a lab whose owner and processes are alive: {out:?}"
    );
    // What a killed test run leaves: every process dead (the agent by
    // SIGKILL, so its XDP program and pins stay), an owner that is gone.
    for n in lab.process_names() {
        lab.signal(&n, libc::SIGKILL).unwrap();
        assert!(lab.wait_exit(&n, Duration::from_secs(5)), "{n} did not die");
    }
    let mut gone = Command::new("true").spawn().unwrap();
    let dead_pid = gone.id();
    gone.wait().unwrap();
    std::fs::write(dir.join(lab::OWNER), dead_pid.to_string()).unwrap();
    let pin_dir = lab.pin_dir("lb1");
    lab.release();
    age(&dir);
    assert!(
        pin_dir.exists(),
        "the killed agent's pins should still be there"
    );

    let out = lab_sweep();
    assert!(
        out.contains(&prefix),
        "lab sweep did not say it removed {prefix}: {out:?}"
    );
    assert!(
        netns::list(&format!("{prefix}-")).is_empty(),
        "namespaces left"
    );
    assert!(!pin_dir.exists(), "pins left at {}", pin_dir.display());
    assert!(!dir.exists(), "run directory left");
}

/// `cargo xtask run`'s lab (`lab run`, which xtask execs into) removes its
/// namespaces, pins and processes when its terminal goes away (SIGHUP with
/// stdout closed) or it is sent SIGTERM, as on Ctrl-C.
#[test]
fn lab_run_cleans_up_on_hangup_and_sigterm() {
    let name = "lab_run_cleans_up_on_hangup_and_sigterm";
    if !require::lab(name, &[]) {
        return;
    }
    for sig in [libc::SIGHUP, libc::SIGTERM] {
        let mut child = Command::new(lab::bin("LAB_BIN", "lab").unwrap())
            .arg("run")
            .arg(lab::bin("LB_BIN", "lb").unwrap())
            .arg(lab::bin("LAB_HTTP_BIN", "lab-http").unwrap())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads until the lab serves, then drops the pipe: the "terminal"
        // is gone and every later write of the lab fails.
        let reader = std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let ready = line.contains("Press Ctrl-C");
                let _ = tx.send(line);
                if ready {
                    return;
                }
            }
        });
        let mut prefix = None;
        let mut ready = false;
        let deadline = Instant::now() + Duration::from_secs(90);
        while !ready && Instant::now() < deadline {
            let Ok(line) = rx.recv_timeout(Duration::from_secs(1)) else {
                continue;
            };
            if let Some(p) = line.strip_prefix("lab: lab ") {
                prefix = p.split_whitespace().next().map(str::to_string);
            }
            ready = line.contains("Press Ctrl-C");
        }
        let prefix = prefix.expect("lab run printed its prefix");
        let _cleanup = RemoveOnDrop(prefix.clone());
        assert!(ready, "lab run did not come up within 90 s");
        reader.join().unwrap();
        // SAFETY: kill(2) of the child this test started.
        unsafe { libc::kill(child.id() as i32, sig) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "lab run ignored signal {sig}");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            netns::list(&format!("{prefix}-")).is_empty(),
            "signal {sig}: namespaces left"
        );
        let pins: Vec<String> = std::fs::read_dir("/sys/fs/bpf")
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&format!("lb-lab-{prefix}-")))
            .collect();
        assert!(pins.is_empty(), "signal {sig}: pins left: {pins:?}");
        assert!(
            !std::path::Path::new(lab::RUN_DIR).join(&prefix).exists(),
            "signal {sig}: run directory left"
        );
        // No process of the lab (their command lines name its run directory).
        let alive: Vec<String> = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .filter(|c| c.contains(&prefix))
            .collect();
        assert!(alive.is_empty(), "signal {sig}: processes left: {alive:?}");
    }
}
