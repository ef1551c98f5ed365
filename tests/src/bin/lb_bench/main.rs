//! `cargo xtask bench`: per-packet cost of the XDP program through
//! BPF_PROG_TEST_RUN, Maglev table build times, and the agent's CPU while
//! health-checking 1,000 backends.
//!
//! With repeat > 1 the kernel feeds the program its own output again (a new
//! flow is new only once), so every case is many single runs over distinct
//! frames, minus the per-call cost of an empty program measured the same way
//! in the same round (Katran's tester does the same). The machine is shared
//! and noisy: rounds are interleaved and reported as min/median/max.

mod health;
mod lab;
mod sync;

use std::time::Instant;

use anyhow::Result;
use lb_common::{Forward, HashFields, Reason, Scheduler, TUNNEL_V4, TUNNEL_V6, Tunnel, names};
use lb_tests::{
    bpf::{Harness, TEST_SIZES},
    fib::{self, FibNet},
    frame::{ACK, Frame, LB_MAC},
    netns::Entered,
};
use lb_user::{
    addr,
    plan::{DesiredBackend, DesiredService},
    sched::{self, Weighted},
};

const FRAMES: u16 = 20_000;
const ROUNDS: usize = 7;
/// Flows of the cache-resident case.
const HOT: u16 = 64;

fn client(i: u16) -> String {
    format!("198.51.{}.{}", 100 + i / 250 % 4, 2 + i % 250)
}

fn frames(dst: &str, flags: u8) -> Vec<Vec<u8>> {
    (0..FRAMES)
        .map(|i| {
            Frame {
                tcp_flags: flags,
                ..Frame::tcp(&client(i), 10_000 + i, dst, 80)
            }
            .build()
        })
        .collect()
}

fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

fn main() -> Result<()> {
    // lb-bench [--health-secs N] [--health-only] [--sync-only] [--packets-only]
    let args: Vec<String> = std::env::args().skip(1).collect();
    let health_secs = args
        .iter()
        .position(|a| a == "--health-secs")
        .and_then(|i| args.get(i + 1))
        .map_or(Ok(30), |v| v.parse())?;
    if args.iter().any(|a| a == "--sync-only") {
        return sync::run();
    }
    if args.iter().any(|a| a == "--lab") {
        return lab::run();
    }
    if let Some(i) = args.iter().position(|a| a == "--profile") {
        let case = args.get(i + 1).map_or("established", String::as_str);
        let secs = args.get(i + 2).map_or(Ok(10), |s| s.parse())?;
        return profile(case, secs);
    }
    if !args.iter().any(|a| a == "--health-only") {
        packets_and_tables()?;
        if args.iter().any(|a| a == "--packets-only") {
            return Ok(());
        }
        sync::run()?;
    }
    health::run(health_secs)
}

/// Ten DR backends of weights 1, 2, 3, 1, ... on "interface 1".
fn dr_backends() -> Vec<DesiredBackend> {
    (0..10)
        .map(|i| DesiredBackend {
            port: 0,
            addr: format!("198.51.100.{}", 11 + i).parse().unwrap(),
            weight: 1 + i % 3,
            ifindex: 1,
            src_mac: LB_MAC,
            mac: Some([2, 0, 0, 0, 0, 0x11 + i as u8]),
            via: None,
            check_port: None,
            healthy: true,
            effective: (1 + i % 3) * 1000,
            warming: false,
            rtt_ms: 0,
        })
        .collect()
}

/// The bench's VIP, 203.0.113.10:80/tcp, by direct routing.
fn dr_service(scheduler: Scheduler, backends: Vec<DesiredBackend>) -> DesiredService {
    DesiredService {
        key: addr::parse_service_name("203.0.113.10:80/tcp").unwrap(),
        scheduler,
        forward: Forward::Dr,
        hash: HashFields::FiveTuple,
        standby: false,
        virtual_nodes: 160,
        backends,
    }
}

/// Run one case's frames through the program for `secs`, for a profiler
/// (`perf record -e cpu-clock -a`) to sample meanwhile.
fn profile(case: &str, secs: u64) -> Result<()> {
    let mut h = Harness::new(lb_user::maps::Sizes {
        flows: 1 << 17,
        ..TEST_SIZES
    })?;
    h.dp.write_limits(0, false)?;
    h.dp.apply(&[dr_service(Scheduler::Maglev, dr_backends())])?;
    let frames = match case {
        "syn" => frames("203.0.113.10", lb_tests::frame::SYN),
        "nonvip" => frames("198.51.100.5", ACK),
        _ => {
            h.time_runs(
                names::PROG_LB,
                &frames("203.0.113.10", lb_tests::frame::SYN),
            )?;
            frames("203.0.113.10", ACK)
        }
    };
    let t0 = Instant::now();
    let mut runs = 0u64;
    while t0.elapsed().as_secs() < secs {
        if case == "syn" {
            h.clear_flows()?;
        }
        h.time_runs(names::PROG_LB, &frames)?;
        runs += frames.len() as u64;
    }
    println!("{case}: {runs} runs in {secs} s");
    Ok(())
}

fn packets_and_tables() -> Result<()> {
    let sizes = lb_user::maps::Sizes {
        flows: 1 << 17,
        ..TEST_SIZES
    };
    let mut h = Harness::new(sizes)?;
    let backends = dr_backends();
    let service = |scheduler| dr_service(scheduler, backends.clone());
    h.dp.apply(&[service(Scheduler::Maglev)])?;
    let syn = frames("203.0.113.10", lb_tests::frame::SYN);
    let ack = frames("203.0.113.10", ACK);
    let non_vip = frames("198.51.100.5", ACK);
    // The first HOT flows over and over: their table entries stay in the
    // CPU's caches, so the difference to "established flow" is what the
    // flow table's memory misses cost.
    let hot: Vec<Vec<u8>> = (0..FRAMES)
        .map(|i| ack[(i % HOT) as usize].clone())
        .collect();
    let udp: Vec<Vec<u8>> = (0..FRAMES)
        .map(|i| Frame::udp(&client(i), 10_000 + i, "198.51.100.5", 53).build())
        .collect();

    let cases = [
        "empty (xdp_pass)",
        "floor: parse + XDP_TX",
        "lb: established flow",
        "lb: established, 64 hot",
        "lb: new flow (SYN)",
        "lb: non-VIP packet",
        "lb: new flow, [sync] on",
        "lb: new flow over the limit",
    ];
    let mut per_call: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    let mut net: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    let ns = |d: std::time::Duration| d.as_nanos() as f64 / FRAMES as f64;
    for _ in 0..ROUNDS {
        // The agent's defaults without [sync]: no flow events, and a
        // new-flow limit no bench round reaches.
        h.dp.write_limits(0, false)?;
        h.clear_flows()?;
        let new_flow = ns(h.time_runs(names::PROG_LB, &syn)?);
        // Now every flow is in the table: the same 5-tuples again are established.
        let established = ns(h.time_runs(names::PROG_LB, &ack)?);
        let hot_flows = ns(h.time_runs(names::PROG_LB, &hot)?);
        let empty = ns(h.time_runs(names::PROG_XDP_PASS, &udp)?);
        let floor = ns(h.time_runs(names::PROG_BENCH_FLOOR, &udp)?);
        let nonvip = ns(h.time_runs(names::PROG_LB, &non_vip)?);
        // With [sync]: each new flow reported (the ring drained first).
        h.dp.write_limits(0, true)?;
        h.clear_flows()?;
        h.drain_events()?;
        let synced = ns(h.time_runs(names::PROG_LB, &syn)?);
        // A flood: every new flow over this CPU's limit (placed by hash,
        // not remembered).
        h.dp.write_limits(1, false)?;
        h.clear_flows()?;
        let flood = ns(h.time_runs(names::PROG_LB, &syn)?);
        for (i, v) in [
            empty,
            floor,
            established,
            hot_flows,
            new_flow,
            nonvip,
            synced,
            flood,
        ]
        .into_iter()
        .enumerate()
        {
            per_call[i].push(v);
            net[i].push(v - empty);
        }
    }
    println!("Machine: {}", lab::machine());
    println!(
        "XDP per-packet cost via BPF_PROG_TEST_RUN: {FRAMES} distinct frames x repeat=1, {ROUNDS} rounds"
    );
    println!("(net = per call minus the empty program's per call, same round; ns/packet)\n");
    println!(
        "{:<26} {:>26} {:>26}",
        "case", "per call min/med/max", "net min/med/max"
    );
    for (i, c) in cases.iter().enumerate() {
        let (a, b, m) = stats(per_call[i].clone());
        let (x, y, z) = stats(net[i].clone());
        println!(
            "{c:<26} {:>26} {:>26}",
            format!("{a:.0} / {b:.0} / {m:.0}"),
            format!("{x:.0} / {y:.0} / {z:.0}")
        );
    }

    tunnels(&mut h, &backends)?;
    table_sizes(&backends)?;

    h.dp.write_limits(0, false)?;
    println!("\nNew flow (SYN) per scheduler, 10 backends, net ns/packet min/med/max:");
    for sched in Scheduler::ALL {
        let name = sched.name();
        h.dp.apply(&[service(sched)])?;
        let mut net = Vec::new();
        for _ in 0..ROUNDS {
            h.clear_flows()?;
            let new_flow = ns(h.time_runs(names::PROG_LB, &syn)?);
            let empty = ns(h.time_runs(names::PROG_XDP_PASS, &udp)?);
            net.push(new_flow - empty);
        }
        let (a, b, c) = stats(net);
        println!("  {name:<17} {a:>6.0} / {b:.0} / {c:.0}");
    }

    println!("\nTable build (M = 65537), mixed weights, {ROUNDS} builds each, ms min/med/max:");
    for n in [10usize, 100, 1000] {
        let keys: Vec<[u8; 16]> = (0..n)
            .map(|i| {
                addr::to_bytes(
                    format!("198.51.{}.{}", 100 + i / 250, 1 + i % 250)
                        .parse()
                        .unwrap(),
                )
            })
            .collect();
        let entries: Vec<Weighted<'_>> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| Weighted {
                key: k,
                weight: [1, 2, 3, 5, 10][i % 5],
            })
            .collect();
        for sched in Scheduler::ALL {
            let name = sched.name();
            let times: Vec<f64> = (0..ROUNDS)
                .map(|_| {
                    let t = Instant::now();
                    std::hint::black_box(sched::build(sched, &entries, 65_537, 160, &[]));
                    t.elapsed().as_secs_f64() * 1e3
                })
                .collect();
            let (a, b, c) = stats(times);
            println!("  {n:>5} backends {name:<17} {a:>8.2} / {b:.2} / {c:.2}");
        }
    }
    Ok(())
}

/// The same DR cases with the flow table at the agent's default size
/// (1,048,576) and at 4,194,304: a bigger table costs cache misses.
fn table_sizes(backends: &[DesiredBackend]) -> Result<()> {
    println!(
        "\nFlow table size (DR, Maglev; the rows above use 131,072), net ns/packet min/med/max:"
    );
    let syn = frames("203.0.113.10", lb_tests::frame::SYN);
    let ack = frames("203.0.113.10", ACK);
    let udp: Vec<Vec<u8>> = (0..FRAMES)
        .map(|i| Frame::udp(&client(i), 10_000 + i, "198.51.100.5", 53).build())
        .collect();
    let ns = |d: std::time::Duration| d.as_nanos() as f64 / FRAMES as f64;
    for flows in [1u32 << 20, 1 << 22] {
        let mut h = Harness::new(lb_user::maps::Sizes {
            flows,
            ..TEST_SIZES
        })?;
        h.dp.write_limits(0, false)?;
        h.dp.apply(&[dr_service(Scheduler::Maglev, backends.to_vec())])?;
        let (mut est, mut new) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            h.clear_flows()?;
            let n = ns(h.time_runs(names::PROG_LB, &syn)?);
            let e = ns(h.time_runs(names::PROG_LB, &ack)?);
            let empty = ns(h.time_runs(names::PROG_XDP_PASS, &udp)?);
            new.push(n - empty);
            est.push(e - empty);
        }
        let (a, b, c) = stats(est);
        let (x, y, z) = stats(new);
        println!(
            "  {flows:>9} flows: established {a:.0} / {b:.0} / {c:.0}, new flow (SYN) {x:.0} / {y:.0} / {z:.0}"
        );
    }
    Ok(())
}

/// Tunnel and NAT forwarding, next to DR: the FIB is asked per packet, so
/// the frames arrive on a namespace's interface with a route and a
/// resolved gateway (its empty-program baseline is measured the same way).
fn tunnels(h: &mut Harness, dr: &[DesiredBackend]) -> Result<()> {
    let net = FibNet::new("bench")?;
    let _in = Entered::new(&net.ns.name)?;
    let dev = Some(fib::ifindex(fib::DEV));
    let routed = |v6: bool| -> Vec<DesiredBackend> {
        dr.iter()
            .enumerate()
            .map(|(i, b)| DesiredBackend {
                port: 0,
                addr: if v6 {
                    format!("2001:db8:2::{:x}", 0x11 + i)
                } else {
                    format!("198.51.100.{}", 140 + i)
                }
                .parse()
                .unwrap(),
                ifindex: 0,
                mac: Some(fib::GW_MAC),
                ..b.clone()
            })
            .collect()
    };
    let svc = |name: &str, forward, v6| DesiredService {
        key: addr::parse_service_name(name).unwrap(),
        scheduler: Scheduler::Maglev,
        forward,
        hash: HashFields::FiveTuple,
        standby: false,
        virtual_nodes: 160,
        backends: routed(v6),
    };
    h.dp.apply(&[
        svc("203.0.113.11:80/tcp", Forward::Ipip, false),
        svc("203.0.113.12:80/tcp", Forward::Gue, true),
        svc("203.0.113.13:80/tcp", Forward::Nat, false),
        svc("203.0.113.14:80/tcp", Forward::FullNat, false),
    ])?;
    let nat = lb_user::config::NatCfg {
        snat: vec!["198.51.100.2".parse().unwrap()],
        ..Default::default()
    };
    h.dp.write_nat(&nat.record())?;
    h.dp.write_tunnel(&Tunnel {
        src4: [198, 51, 100, 2],
        src6: addr::to_bytes("2001:db8:1::2".parse().unwrap()),
        gue_port: lb_common::DEFAULT_GUE_PORT,
        flags: TUNNEL_V4 | TUNNEL_V6,
        ..Default::default()
    })?;
    let udp: Vec<Vec<u8>> = (0..FRAMES)
        .map(|i| Frame::udp(&client(i), 10_000 + i, "198.51.100.5", 53).build())
        .collect();
    let cases = [
        ("ipip: new flow (SYN)", "203.0.113.11", lb_tests::frame::SYN),
        ("ipip: established flow", "203.0.113.11", ACK),
        (
            "gue 4in6: new flow (SYN)",
            "203.0.113.12",
            lb_tests::frame::SYN,
        ),
        ("gue 4in6: established", "203.0.113.12", ACK),
        ("nat: new flow (SYN)", "203.0.113.13", lb_tests::frame::SYN),
        ("nat: established flow", "203.0.113.13", ACK),
        (
            "fullnat: new flow (SYN)",
            "203.0.113.14",
            lb_tests::frame::SYN,
        ),
        ("fullnat: established", "203.0.113.14", ACK),
    ];
    let inputs: Vec<Vec<Vec<u8>>> = cases.iter().map(|(_, d, f)| frames(d, *f)).collect();
    let ns = |d: std::time::Duration| d.as_nanos() as f64 / FRAMES as f64;
    let mut net_ns: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for _ in 0..ROUNDS {
        h.clear_flows()?;
        let empty = ns(h.time_runs_on(names::PROG_XDP_PASS, &udp, dev)?);
        for (i, f) in inputs.iter().enumerate() {
            net_ns[i].push(ns(h.time_runs_on(names::PROG_LB, f, dev)?) - empty);
        }
    }
    let r = h.reasons()?;
    // Four tunnel cases, four NAT ones.
    let each = (ROUNDS * 4) as u64 * FRAMES as u64;
    anyhow::ensure!(
        r[Reason::Encapsulated as usize] >= each && r[Reason::Translated as usize] >= each,
        "not every tunnel frame was encapsulated, or NAT frame translated: {r:?}"
    );
    println!(
        "\nTunnels and NAT (frames arriving on a namespace's interface; net of its empty program), ns/packet min/med/max:"
    );
    for (i, (name, _, _)) in cases.iter().enumerate() {
        let (a, b, c) = stats(net_ns[i].clone());
        println!("  {name:<26} {a:>6.0} / {b:.0} / {c:.0}");
    }
    Ok(())
}
