//! Schedulers with real connections: drain keeps an open connection and
//! takes no new ones, and an unchanged reload writes no map.

use std::time::Duration;

use lb_tests::{
    http::Conn,
    lab::{self, LabSpec},
    netns, require,
};

use lb_tests::lab::vip;

fn writes(lab: &lab::Lab) -> serde_json::Value {
    lab::lb_show(&["stats", "--pin-dir", lab.pin_dir("lb1").to_str().unwrap()]).unwrap()["writes"]
        .clone()
}

#[test]
fn drain_keeps_an_open_connection_and_unchanged_reloads_write_nothing() {
    let name = "drain_keeps_an_open_connection_and_unchanged_reloads_write_nothing";
    if !require::lab(name, &[]) {
        return;
    }
    for sched in lb_common::Scheduler::ALL {
        let extra = format!("scheduler = \"{}\"", sched.name());
        let (lab, cfg) =
            lab::serving_config(LabSpec::default(), move |l| l.services_with(&extra), &[]).unwrap();
        // An unchanged reload writes no map (the agent logs what each
        // reload wrote).
        let before = writes(&lab);
        lab.signal("lb1", libc::SIGHUP).unwrap();
        lab.wait_log("lb1", "config reloaded", Duration::from_secs(5))
            .unwrap();
        let log = lab.log("lb1");
        let line = log.lines().find(|l| l.contains("config reloaded")).unwrap();
        assert!(
            line.contains("tables=0 backends=0 service_writes=0"),
            "{sched}: an unchanged reload wrote maps: {line}"
        );

        // Open a connection, then drain its backend (weight 0) and reload.
        let (conn, first) = netns::in_ns(&lab.ns("c"), || {
            let mut c = Conn::open(vip()).unwrap();
            let first = c.get().unwrap();
            (c, first)
        })
        .unwrap();
        let host = 10 + first[1..].parse::<u8>().unwrap();
        let text = std::fs::read_to_string(&cfg).unwrap();
        let line = format!("{{ address = \"198.51.100.{host}\", weight = ");
        let drained: String = text
            .lines()
            .map(|l| {
                if l.contains(&line) {
                    format!("  {line}0 }},")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(&cfg, drained + "\n").unwrap();
        lab.signal("lb1", libc::SIGHUP).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let reloads = |lab: &lab::Lab| -> Vec<String> {
            lab.log("lb1")
                .lines()
                .filter(|l| l.contains("config reloaded"))
                .map(String::from)
                .collect()
        };
        while reloads(&lab).len() < 2 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        // One weight changed in one service: one table rebuilt, one backend.
        let second = reloads(&lab).pop().unwrap_or_default();
        assert!(second.contains("tables=1 backends=1"), "{sched}: {second}");
        assert!(writes(&lab)["tables"].as_u64().unwrap() > before["tables"].as_u64().unwrap());
        let (answers, fresh) = netns::in_ns(&lab.ns("c"), move || {
            let mut conn = conn;
            let answers: Vec<String> = (0..10).map(|_| conn.get().unwrap()).collect();
            let fresh: Vec<String> = (0..40)
                .map(|_| lb_tests::http::get(vip()).unwrap())
                .collect();
            (answers, fresh)
        })
        .unwrap();
        assert!(answers.iter().all(|a| *a == first), "{sched}: {answers:?}");
        assert!(
            !fresh.contains(&first),
            "{sched}: drained {first} got a new connection: {fresh:?}"
        );
    }
}

#[test]
fn least_conn_steers_away_from_a_backend_holding_long_lived_connections() {
    let name = "least_conn_steers_away_from_a_backend_holding_long_lived_connections";
    if !require::lab(name, &[]) {
        return;
    }
    // First every connection of the client goes to one backend (src-ip).
    let (lab, cfg) = lab::serving_config(
        LabSpec::default(),
        |l| l.services_with("hash = \"src-ip\""),
        &[],
    )
    .unwrap();
    let (conns, held) = netns::in_ns(&lab.ns("c"), || {
        let mut conns = Vec::new();
        let mut held = String::new();
        for _ in 0..20 {
            let mut c = Conn::open(vip()).unwrap();
            held = c.get().unwrap();
            conns.push(c);
        }
        (conns, held)
    })
    .unwrap();
    let show = lab::lb_show(&[
        "backends",
        "--pin-dir",
        lab.pin_dir("lb1").to_str().unwrap(),
    ])
    .unwrap();
    let host = format!("198.51.100.{}", 10 + held[1..].parse::<u8>().unwrap());
    let active = show["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["address"] == host.as_str())
        .unwrap()["active_flows"]
        .as_u64()
        .unwrap();
    assert!(active >= 20, "{held} holds {active} active flows");
    // Now least-conn: new connections avoid the loaded backend.
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("hash = \"src-ip\"", "scheduler = \"least-conn\"");
    std::fs::write(&cfg, text).unwrap();
    lab.signal("lb1", libc::SIGHUP).unwrap();
    lab.wait_log("lb1", "config reloaded", Duration::from_secs(5))
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let (fresh, still) = netns::in_ns(&lab.ns("c"), move || {
        let fresh: Vec<String> = (0..30)
            .map(|_| lb_tests::http::get(vip()).unwrap())
            .collect();
        let mut conns = conns;
        let still: Vec<String> = conns.iter_mut().map(|c| c.get().unwrap()).collect();
        (fresh, still)
    })
    .unwrap();
    assert!(
        !fresh.contains(&held),
        "new connections reached {held}: {fresh:?}"
    );
    assert!(still.iter().all(|s| *s == held), "{still:?}");
}

#[test]
fn shortest_response_sends_little_to_a_backend_50ms_slower() {
    let name = "shortest_response_sends_little_to_a_backend_50ms_slower";
    if !require::lab(name, &[]) {
        return;
    }
    let spec = LabSpec {
        backends: LabSpec::default()
            .backends
            .into_iter()
            .map(|mut b| {
                b.weight = 1;
                b
            })
            .collect(),
        ..LabSpec::default()
    };
    let (lab, _) = lab::serving_config(
        spec,
        |l| {
            std::fs::write(l.health_file("b2"), "slow 50").unwrap();
            l.services_with(
                r#"scheduler = "shortest-response"
check = { kind = "http", path = "/healthz", interval = "200ms", timeout = "150ms", retries = 2, retry_delay = "100ms" }"#,
            )
        },
        &[],
    )
    .unwrap();
    // A few checks, so the response times are known.
    std::thread::sleep(Duration::from_secs(2));
    let answers: Vec<String> = netns::in_ns(&lab.ns("c"), || {
        (0..100)
            .map(|_| lb_tests::http::get(vip()).unwrap())
            .collect()
    })
    .unwrap();
    let slow = answers.iter().filter(|a| *a == "b2").count();
    println!(
        "shortest-response, b2 50 ms slower: b1 {} b2 {slow} b3 {}",
        answers.iter().filter(|a| *a == "b1").count(),
        answers.iter().filter(|a| *a == "b3").count()
    );
    assert!(slow <= 20, "b2 got {slow} of 100 new connections");
}
