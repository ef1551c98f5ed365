//! Every scheduler through BPF_PROG_TEST_RUN: shares of 20,000 new flows
//! against weights, drained backends, wrr's exact order, persistence.

use std::collections::BTreeMap;

use lb_common::{Forward, HashFields, Scheduler};
use lb_tests::{
    bpf::{Harness, TEST_SIZES},
    frame::{Frame, LB_MAC},
    require,
};
use lb_user::{
    addr,
    plan::{DesiredBackend, DesiredService},
};

const XDP_TX: u32 = 3;
const FLOWS: u16 = 20_000;
/// Every scheduler whose shares follow weights alone (shortest-response
/// follows response times). Flows here never close, so least-conn fills
/// backends by weight.
const WEIGHTED: [Scheduler; 5] = [
    Scheduler::Maglev,
    Scheduler::Ring,
    Scheduler::Wrr,
    Scheduler::Random,
    Scheduler::LeastConn,
];

fn mac(i: usize) -> [u8; 6] {
    [2, 0, 0, 0, 0x10, i as u8]
}

fn service(sched: Scheduler, weights: &[u32], hash: HashFields) -> DesiredService {
    DesiredService {
        key: addr::parse_service_name("203.0.113.10:80/tcp").unwrap(),
        scheduler: sched,
        forward: Forward::Dr,
        hash,
        virtual_nodes: 160,
        standby: false,
        backends: weights
            .iter()
            .enumerate()
            .map(|(i, &w)| DesiredBackend {
                port: 0,
                addr: format!("198.51.100.{}", 11 + i).parse().unwrap(),
                weight: w,
                effective: w * 1000,
                ifindex: 1,
                src_mac: LB_MAC,
                mac: Some(mac(i)),
                via: None,
                check_port: None,
                healthy: true,
                warming: false,
                rtt_ms: 0,
            })
            .collect(),
    }
}

/// The backend index each of `n` new flows (distinct 5-tuples) went to.
fn picks(h: &Harness, n: u16, src: impl Fn(u16) -> (String, u16)) -> Vec<usize> {
    (0..n)
        .map(|i| {
            let (ip, port) = src(i);
            let syn = Frame::tcp(&ip, port, "203.0.113.10", 80).build();
            let (v, out) = h.run(lb_common::names::PROG_LB, &syn).unwrap();
            assert_eq!(v, XDP_TX);
            out[5] as usize
        })
        .collect()
}

fn client(i: u16) -> (String, u16) {
    (
        format!("198.51.{}.{}", 100 + i / 250 % 4, 2 + i % 250),
        10_000 + i,
    )
}

#[test]
fn shares_follow_weights_for_every_scheduler() {
    if !require::root("shares_follow_weights_for_every_scheduler") {
        return;
    }
    for weights in [vec![1u32, 2, 3], vec![100, 200, 300, 0]] {
        for sched in WEIGHTED {
            let name = sched.name();
            let mut h = Harness::new(TEST_SIZES).unwrap();
            h.dp.apply(&[service(sched, &weights, HashFields::FiveTuple)])
                .unwrap();
            let got = picks(&h, FLOWS, client);
            let mut count: BTreeMap<usize, u32> = BTreeMap::new();
            for g in &got {
                *count.entry(*g).or_default() += 1;
            }
            let total: u32 = weights.iter().sum();
            for (i, &w) in weights.iter().enumerate() {
                let share = *count.get(&i).unwrap_or(&0) as f64 / FLOWS as f64;
                let want = w as f64 / total as f64;
                println!(
                    "{name} {weights:?}: backend {i} share {:.2}% want {:.2}%",
                    100.0 * share,
                    100.0 * want
                );
                if w == 0 {
                    assert_eq!(share, 0.0, "{name}: a weight-0 backend got new flows");
                } else {
                    assert!(
                        (share - want).abs() <= 0.02,
                        "{name} {weights:?}: backend {i} share {share:.4}, want {want:.4}"
                    );
                }
            }
        }
    }
}

/// Run on one CPU: wrr's position is per CPU.
fn pin_to_one_cpu() {
    // SAFETY: a zeroed cpu_set_t with one bit set, for this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(libc::sched_getcpu().max(0) as usize, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

#[test]
fn wrr_5_1_1_is_two_smooth_rounds() {
    if !require::root("wrr_5_1_1_is_two_smooth_rounds") {
        return;
    }
    pin_to_one_cpu();
    let mut h = Harness::new(TEST_SIZES).unwrap();
    h.dp.apply(&[service(Scheduler::Wrr, &[5, 1, 1], HashFields::FiveTuple)])
        .unwrap();
    let names = ["a", "b", "c"];
    let got: Vec<&str> = picks(&h, 14, client)
        .into_iter()
        .map(|i| names[i])
        .collect();
    assert_eq!(
        got,
        [
            "a", "a", "b", "a", "c", "a", "a", "a", "a", "b", "a", "c", "a", "a"
        ]
    );
}

#[test]
fn src_ip_hash_keeps_a_client_on_one_backend_for_every_scheduler() {
    if !require::root("src_ip_hash_keeps_a_client_on_one_backend_for_every_scheduler") {
        return;
    }
    for sched in Scheduler::ALL {
        let name = sched.name();
        let mut h = Harness::new(TEST_SIZES).unwrap();
        h.dp.apply(&[service(sched, &[1, 1, 1, 1, 1], HashFields::SrcIp)])
            .unwrap();
        for c in 0..5u16 {
            let got = picks(&h, 100, |i| (format!("198.51.100.{}", 30 + c), 20_000 + i));
            assert!(
                got.iter().all(|g| *g == got[0]),
                "{name}: client {c} spread over {:?}",
                got.iter().collect::<std::collections::BTreeSet<_>>()
            );
        }
    }
}

fn set_active(h: &mut Harness, id: u32, n: u64) {
    let mut m: aya::maps::Array<_, u64> =
        aya::maps::Array::try_from(h.ebpf.map_mut(lb_common::names::ACTIVE).unwrap()).unwrap();
    m.set(id, n, 0).unwrap();
}

#[test]
fn least_conn_sends_new_flows_to_the_fewest_active_per_weight() {
    if !require::root("least_conn_sends_new_flows_to_the_fewest_active_per_weight") {
        return;
    }
    let mut h = Harness::new(TEST_SIZES).unwrap();
    let svc = service(Scheduler::LeastConn, &[1, 1, 1], HashFields::FiveTuple);
    h.dp.apply(std::slice::from_ref(&svc)).unwrap();
    // Backend 0 already holds 20 open flows.
    let b0 = h.dp.backend_id(&svc.key, svc.backends[0].addr).unwrap();
    set_active(&mut h, b0, 20);
    let got = picks(&h, 30, client);
    let count = |i| got.iter().filter(|g| **g == i).count();
    assert_eq!((count(0), count(1), count(2)), (0, 15, 15), "{got:?}");
    // Relative to weight: 1:3 from nothing splits 10:30.
    let mut h = Harness::new(TEST_SIZES).unwrap();
    h.dp.apply(&[service(
        Scheduler::LeastConn,
        &[1, 3],
        HashFields::FiveTuple,
    )])
    .unwrap();
    let got = picks(&h, 40, client);
    let ones = got.iter().filter(|g| **g == 0).count();
    assert_eq!((ones, 40 - ones), (10, 30), "{got:?}");
}

#[test]
fn shortest_response_avoids_a_slow_backend_and_splits_ties_by_weight() {
    if !require::root("shortest_response_avoids_a_slow_backend_and_splits_ties_by_weight") {
        return;
    }
    let mut h = Harness::new(TEST_SIZES).unwrap();
    let mut svc = service(
        Scheduler::ShortestResponse,
        &[1, 1, 1],
        HashFields::FiveTuple,
    );
    for (b, ms) in svc.backends.iter_mut().zip([1, 1, 51]) {
        b.rtt_ms = ms;
    }
    h.dp.apply(&[svc]).unwrap();
    // Flows never close here: waits grow with active flows.
    let got = picks(&h, 300, client);
    let count = |i| got.iter().filter(|g| **g == i).count();
    println!(
        "shortest-response 1/1/51 ms: {} {} {}",
        count(0),
        count(1),
        count(2)
    );
    assert!(count(2) <= 15, "the slow backend got {}", count(2));
    assert!(count(2) >= 1, "its wait falls below the others' eventually");
    let (a, b) = (count(0) as i64, count(1) as i64);
    assert!(
        (a - b).abs() <= 10,
        "equal waits split between equals: {a} {b}"
    );
}

/// A ring slot larger than 2^17 points: the XDP program's binary search
/// must still converge, so the kernel picks what `sched::ring` computes.
#[test]
fn a_large_ring_picks_what_the_agent_computes() {
    if !require::root("a_large_ring_picks_what_the_agent_computes") {
        return;
    }
    const N: usize = 1000;
    const M: u32 = 655_373;
    let sizes = lb_user::maps::Sizes {
        flows: 65_536,
        max_services: 1,
        max_backends: N as u32,
        table_size: M,
    };
    let mut h = Harness::new(sizes).unwrap();
    let backends: Vec<DesiredBackend> = (0..N)
        .map(|i| DesiredBackend {
            port: 0,
            addr: format!("198.51.{}.{}", 100 + i / 250, 1 + i % 250)
                .parse()
                .unwrap(),
            weight: 1,
            effective: 1000,
            ifindex: 1,
            src_mac: LB_MAC,
            mac: Some([2, 0, 0, 0, (i >> 8) as u8, i as u8]),
            via: None,
            check_port: None,
            healthy: true,
            warming: false,
            rtt_ms: 0,
        })
        .collect();
    let svc = DesiredService {
        backends,
        ..service(Scheduler::Ring, &[], HashFields::FiveTuple)
    };
    h.dp.apply(std::slice::from_ref(&svc)).unwrap();
    // What the agent computes for the same backends.
    let keys: Vec<[u8; 16]> = svc
        .backends
        .iter()
        .map(|b| addr::to_bytes(b.addr))
        .collect();
    let weighted: Vec<lb_user::sched::Weighted<'_>> = keys
        .iter()
        .map(|k| lb_user::sched::Weighted {
            key: k,
            weight: 1000,
        })
        .collect();
    let ring = lb_user::sched::ring::build(&weighted, 160, (M / 2) as usize);
    assert!(ring.len() > 1 << 17, "only {} points", ring.len());
    for i in 0..3000u16 {
        let (ip, port) = client(i);
        let syn = Frame::tcp(&ip, port, "203.0.113.10", 80).build();
        let (v, out) = h.run(lb_common::names::PROG_LB, &syn).unwrap();
        assert_eq!(v, XDP_TX);
        let got = (out[4] as usize) << 8 | out[5] as usize;
        let key = lb_common::FlowKey {
            src: addr::to_bytes(ip.parse().unwrap()),
            dst: addr::to_bytes("203.0.113.10".parse().unwrap()),
            sport: port,
            dport: 80,
            proto: lb_common::PROTO_TCP,
            family: lb_common::FAMILY_V4,
            _pad: [0; 2],
        };
        let hash = lb_common::flow_hash(&key, HashFields::FiveTuple as u8);
        let want = lb_user::sched::ring::lookup(&ring, hash).unwrap() as usize;
        assert_eq!(got, want, "flow {i} ({ip}:{port}, hash {hash:#x})");
    }
}
