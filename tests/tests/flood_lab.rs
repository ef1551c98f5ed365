//! A SYN flood from random sources against the VIP: established
//! connections through the balancer keep working and keep their backend,
//! and above `new_flows_per_cpu` the flood's flows are placed by their hash
//! and not remembered, so they do not churn the flow table.

use std::time::Duration;

use lb_tests::{
    flood::syn_flood,
    held::Held,
    lab::{self, Lab, LabSpec, lb_show, vip},
    require,
};

fn mac(text: &str) -> [u8; 6] {
    let mut m = [0u8; 6];
    for (b, h) in m.iter_mut().zip(text.split(':')) {
        *b = u8::from_str_radix(h, 16).expect("hex");
    }
    m
}

#[test]
fn established_connections_survive_a_syn_flood() {
    if !require::root("established_connections_survive_a_syn_flood") {
        return;
    }
    // wrr: a flow whose entry were evicted would be placed again by its
    // hash, most likely on another backend, and reset.
    let mut lab = Lab::up(
        LabSpec::default(),
        &lab::bin("LAB_HTTP_BIN", "lab-http").unwrap(),
        false,
    )
    .unwrap();
    let cfg = lab
        .write_config_with(
            "lb1",
            "new_flows_per_cpu = 200",
            &lab.services_with("scheduler = \"wrr\""),
        )
        .unwrap();
    // A small flow table, which the flood would overwrite many times.
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace("flow_table_size = 65536", "flow_table_size = 4096"),
    )
    .unwrap();
    lab.start_agent_as("lb1", "lb1", &lab::bin("LB_BIN", "lb").unwrap(), &cfg, &[])
        .unwrap();
    lb_tests::http::get_until(&lab.ns("c"), vip(), Duration::from_secs(20), |_| true)
        .unwrap_or_else(|e| panic!("not served: {e}\n{}", lab.log("lb1")));
    let mut held = Held::open(&lab.ns("c"), vip(), 20).unwrap();
    let (c, lb1) = (mac(&lab.mac("c").unwrap()), mac(&lab.mac("lb1").unwrap()));
    let t0 = std::time::Instant::now();
    let sent = syn_flood(
        &lab.ns("c"),
        "eth0",
        (c, lb1),
        (lab::VIP4, 80),
        100_000,
        Duration::from_secs(15),
    )
    .unwrap();
    // The table was not churned: the held flows and at most this
    // second's few hundred per CPU, not 4,096 flood flows.
    let fl = lb_show(&[
        "flows",
        "--limit",
        "5000",
        "--pin-dir",
        lab.pin_dir("lb1").to_str().unwrap(),
    ])
    .unwrap();
    let flows = fl["flows"].as_array().map_or(0, Vec::len);
    let held_flows = fl["flows"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| {
            f["client"]
                .as_str()
                .unwrap_or("")
                .starts_with("198.51.100.2:")
        })
        .count();
    let (failed, moved, notes) = held.ask();
    let dir = lab.pin_dir("lb1");
    let stats = lb_show(&["stats", "--pin-dir", dir.to_str().unwrap()]).unwrap();
    let unremembered = stats["reasons"]["unremembered"].as_u64().unwrap_or(0);
    println!(
        "SYN flood: {sent} SYNs from random sources, {unremembered} placed unremembered, {flows} flows in the 4,096-entry table ({held_flows} the held ones); held connections: {} of 20 answered by their backend",
        20 - failed - moved
    );
    assert!(held_flows >= 20, "the held flows are remembered: {fl:#}");
    // At most 200 a second per CPU were remembered while it lasted.
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let allowed = 200 * cpus * (t0.elapsed().as_secs() as usize + 2) + 20;
    assert!(
        flows <= allowed.min(4000),
        "{flows} flows remembered (allowed {allowed}): the flood churned the table"
    );
    assert_eq!(sent, 100_000, "the whole flood was sent");
    assert_eq!(
        (failed, moved),
        (0, 0),
        "held connections through a SYN flood: {notes:?}\n{}",
        lab.log("lb1")
    );
    // Nearly all of the flood went unremembered (with no limit the table
    // fills with flood flows; the kernel's LRU still keeps the entries of
    // flows that saw more than one packet ahead of them).
    assert!(unremembered > 90_000, "{stats:#}");
    // New connections are still served.
    lb_tests::http::get_until(&lab.ns("c"), vip(), Duration::from_secs(5), |_| true).unwrap();
}
