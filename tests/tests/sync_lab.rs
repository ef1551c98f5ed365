//! Flow-state sync in the lab: two balancers with VRRP and `[sync]`, held
//! connections through the master, the master node crashed: every held
//! connection goes on with its backend through the new master, whatever
//! the scheduler; and back again after a preempt, with the flows opened
//! meanwhile. Hostile sync datagrams change nothing and are counted.

use std::time::{Duration, Instant};

use lb_tests::{
    held::Held,
    http,
    lab::{self, Lab, vip},
    netns, require,
    vrrp_lab::{two_balancers, wait_state},
};

const KEY: &str = "lab sync key, 24 bytes!!";

/// lb1 (150) and lb2 (100) with `scheduler`, syncing flows with each other;
/// lb1 master, lb2 backup.
fn pair(scheduler: &str) -> Lab {
    pair_with(scheduler, |s| s)
}

/// `pair`, lb2's services passed through `lb2_services` first.
fn pair_with(scheduler: &str, lb2_services: fn(String) -> String) -> Lab {
    let mut l = two_balancers();
    let lb = lab::bin("LB_BIN", "lb").unwrap();
    for (role, prio, peer) in [("lb1", 150, 2), ("lb2", 100, 1)] {
        let mut services = l.services_with(&format!("scheduler = \"{scheduler}\""));
        if role == "lb2" {
            services = lb2_services(services);
        }
        // lb2 answers /metrics (the hostile-datagram test reads it).
        let agent = if role == "lb2" {
            "api = \"127.0.0.1:9100\""
        } else {
            ""
        };
        let cfg = l
            .write_config_with(
                role,
                agent,
                &format!(
                    "{services}{}\n[sync]\npeers = [\"{}\"]\nkey = \"{KEY}\"\ninterval = \"10ms\"\n",
                    Lab::vrrp_section(prio, "100ms", ""),
                    Lab::balancer_addr(peer)
                ),
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

fn show_sync(l: &Lab, role: &str) -> serde_json::Value {
    let dir = l.pin_dir(role);
    lab::lb_show(&["sync", "--pin-dir", dir.to_str().unwrap()]).unwrap_or_default()
}

/// Flows `role` has received from its peer so far.
fn received(l: &Lab, role: &str) -> u64 {
    show_sync(l, role)["peers"][0]["flows_received"]
        .as_u64()
        .unwrap_or(0)
}

fn wait_received(l: &Lab, role: &str, n: u64) {
    let t0 = Instant::now();
    while received(l, role) < n {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{role} received {} of {n} flows\n{}",
            received(l, role),
            l.log(role)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The master node dies: its agent is killed and its link goes down.
fn crash(l: &Lab, role: &str) {
    l.signal(role, libc::SIGKILL).unwrap();
    netns::ip(&l.ns(role), "link set eth0 down").unwrap();
}

fn failover_keeps(scheduler: &str) {
    let name = format!("failover_keeps_held_connections_{scheduler}");
    if !require::lab(&name, &[]) {
        return;
    }
    let l = pair(scheduler);
    let mut held = Held::open(&l.ns("c"), vip(), 100).unwrap();
    wait_received(&l, "lb2", 100);
    crash(&l, "lb1");
    let took = wait_state(&l, "lb2", "MASTER", Duration::from_secs(5));
    let (failed, moved, notes) = held.ask();
    println!(
        "{scheduler}: master crashed, lb2 MASTER after {took:?}; held connections: {} of 100 answered by their backend",
        100 - failed - moved
    );
    assert_eq!(
        (failed, moved),
        (0, 0),
        "{scheduler}: held connections across the failover: {notes:?}\nlb2:\n{}",
        l.log("lb2")
    );
    // New connections go through the new master.
    http::get_until(&l.ns("c"), vip(), Duration::from_secs(5), |_| true).unwrap();
}

#[test]
fn failover_keeps_held_connections_maglev() {
    failover_keeps("maglev");
}

#[test]
fn failover_keeps_held_connections_ring() {
    failover_keeps("ring");
}

#[test]
fn failover_keeps_held_connections_wrr() {
    failover_keeps("wrr");
}

#[test]
fn failover_keeps_held_connections_random() {
    failover_keeps("random");
}

#[test]
fn failover_keeps_held_connections_least_conn() {
    failover_keeps("least-conn");
}

#[test]
fn failover_keeps_held_connections_shortest_response() {
    failover_keeps("shortest-response");
}

#[test]
fn a_preempting_master_keeps_the_flows_opened_on_the_backup() {
    let name = "a_preempting_master_keeps_the_flows_opened_on_the_backup";
    if !require::lab(name, &[]) {
        return;
    }
    let mut l = pair("wrr");
    let mut before = Held::open(&l.ns("c"), vip(), 50).unwrap();
    wait_received(&l, "lb2", 50);
    crash(&l, "lb1");
    wait_state(&l, "lb2", "MASTER", Duration::from_secs(5));
    // Flows opened while lb2 is master: lb1 never saw them.
    let mut during = Held::open(&l.ns("c"), vip(), 50).unwrap();
    netns::ip(&l.ns("lb1"), "link set eth0 up").unwrap();
    l.restart_agent("lb1", "lb1-again").unwrap();
    wait_state(&l, "lb1", "MASTER", Duration::from_secs(10));
    wait_state(&l, "lb2", "BACKUP", Duration::from_secs(5));
    for (what, h) in [
        ("before the crash", &mut before),
        ("on the backup", &mut during),
    ] {
        let (failed, moved, notes) = h.ask();
        assert_eq!(
            (failed, moved),
            (0, 0),
            "flows opened {what}, after the preempt: {notes:?}\nlb1:\n{}",
            l.log("lb1-again")
        );
    }
    let asked = show_sync(&l, "lb1")["peers"][0]["dumps_asked"]
        .as_u64()
        .unwrap_or(0);
    assert!(asked > 0, "the restarted lb1 asked lb2 for a dump");
}

#[test]
fn hostile_sync_datagrams_change_nothing_and_are_counted() {
    let name = "hostile_sync_datagrams_change_nothing_and_are_counted";
    if !require::lab(name, &[]) {
        return;
    }
    let l = pair("maglev");
    let flows = |role: &str| {
        let dir = l.pin_dir(role);
        lab::lb_show(&["flows", "--pin-dir", dir.to_str().unwrap()]).unwrap()["flows"]
            .as_array()
            .map_or(0, |a| a.len())
    };
    let before = flows("lb2");
    let to = std::net::SocketAddr::new(Lab::balancer_addr(2).parse().unwrap(), 8848);
    let send = |ns: &str, payloads: Vec<Vec<u8>>| {
        netns::in_ns(ns, move || {
            let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
            for p in payloads {
                s.send_to(&p, to).unwrap();
            }
        })
        .unwrap();
    };
    // A valid-looking batch of one flow, signed with the wrong key.
    let mut entry = vec![0u8; 80];
    entry[40 + 19] = 4; // service family, rest zero: unsigned garbage
    let header = |count: u16| {
        let mut h = b"LBSY".to_vec();
        h.extend_from_slice(&[1, 1]);
        h.extend_from_slice(&count.to_be_bytes());
        h.extend_from_slice(&[0; 16]);
        h
    };
    let mut wrong_key = header(1);
    wrong_key.extend_from_slice(&entry);
    wrong_key.extend_from_slice(&[7; 32]);
    let mut absurd = header(60000);
    absurd.extend_from_slice(&[0; 64]);
    let truncated = header(2)[..10].to_vec();
    // From the peer's own address (lb1's namespace): bad key, absurd, truncated.
    send(&l.ns("lb1"), vec![wrong_key.clone(), absurd, truncated]);
    // From no peer at all (the client).
    send(&l.ns("c"), vec![wrong_key]);
    std::thread::sleep(Duration::from_millis(600));
    let s = show_sync(&l, "lb2");
    let peer = &s["peers"][0];
    let stranger = &s["peers"][1];
    assert_eq!(peer["peer"], Lab::balancer_addr(1));
    assert!(peer["bad_auth"].as_u64().unwrap() >= 1, "{s:#}");
    assert!(peer["malformed"].as_u64().unwrap() >= 2, "{s:#}");
    assert!(stranger["bad_auth"].as_u64().unwrap() >= 1, "{s:#}");
    assert_eq!(flows("lb2"), before, "no flow was written");
    // The same counters in /metrics.
    let api = std::net::SocketAddr::new([127, 0, 0, 1].into(), 9100);
    let (status, _, body) = netns::in_ns(&l.ns("lb2"), move || http::fetch(api, "/metrics", None))
        .unwrap()
        .unwrap();
    assert_eq!(status, 200);
    assert!(
        body.lines()
            .any(|x| x.starts_with("lb_sync_bad_auth_total{peer=\"none\"} ") && !x.ends_with(" 0")),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            "lb_sync_malformed_total{{peer=\"{}\"}}",
            Lab::balancer_addr(1)
        )),
        "{body}"
    );
    // The pair still syncs afterwards.
    let _held = Held::open(&l.ns("c"), vip(), 5).unwrap();
    wait_received(&l, "lb2", 5);
}

#[test]
fn flows_of_a_service_the_peer_lacks_are_skipped_and_counted() {
    let name = "flows_of_a_service_the_peer_lacks_are_skipped_and_counted";
    if !require::lab(name, &[]) {
        return;
    }
    // lb2 serves the IPv4 VIP only (say, a reload removed the IPv6 one).
    let l = pair_with("wrr", |s| {
        s.split("[[service]]")
            .take(2)
            .collect::<Vec<_>>()
            .join("[[service]]")
    });
    let vip6 = std::net::SocketAddr::new(lab::VIP6.parse().unwrap(), 80);
    let _v6 = Held::open(&l.ns("c"), vip6, 10).unwrap();
    let _v4 = Held::open(&l.ns("c"), vip(), 10).unwrap();
    wait_received(&l, "lb2", 20);
    let s = show_sync(&l, "lb2");
    assert_eq!(s["peers"][0]["flows_skipped"], 10, "{s:#}");
    let dir = l.pin_dir("lb2");
    let flows = lab::lb_show(&["flows", "--pin-dir", dir.to_str().unwrap()]).unwrap();
    let written: Vec<_> = flows["flows"].as_array().unwrap().iter().collect();
    assert_eq!(
        written.len(),
        10,
        "only the IPv4 service's flows: {flows:#}"
    );
}

#[test]
fn closed_flows_are_synced_so_active_counts_agree() {
    let name = "closed_flows_are_synced_so_active_counts_agree";
    if !require::lab(name, &[]) {
        return;
    }
    let l = pair("least-conn");
    let active = |role: &str| -> u64 {
        l.backends(role, "203.0.113.10:80/tcp")
            .unwrap()
            .values()
            .map(|b| b["active_flows"].as_u64().unwrap_or(0))
            .sum()
    };
    let wait = |want: u64| {
        let t0 = Instant::now();
        while (active("lb1"), active("lb2")) != (want, want) {
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "active flows lb1 {} lb2 {}, want {want} on both",
                active("lb1"),
                active("lb2")
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    };
    let held = Held::open(&l.ns("c"), vip(), 30).unwrap();
    wait(30);
    // The client closes them all: its FINs close the flows on lb1, and
    // the sync stream closes them on lb2.
    drop(held);
    wait(0);
}
