//! Every scheduler through BPF_PROG_TEST_RUN: shares of 20,000 new flows
//! against weights, drained backends, wrr's exact order, persistence.

use std::collections::BTreeMap;

use lb_common::{
    FORWARD_DR, HASH_5TUPLE, HASH_SRC_IP, SCHED_LEAST_CONN, SCHED_MAGLEV, SCHED_RANDOM, SCHED_RING,
    SCHED_WRR,
};
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
const SCHEDS: [(u8, &str); 5] = [
    (SCHED_MAGLEV, "maglev"),
    (SCHED_RING, "ring"),
    (SCHED_WRR, "wrr"),
    (SCHED_RANDOM, "random"),
    // Flows here never close, so least-conn fills backends by weight.
    (SCHED_LEAST_CONN, "least-conn"),
];

fn mac(i: usize) -> [u8; 6] {
    [2, 0, 0, 0, 0x10, i as u8]
}

fn service(sched: u8, weights: &[u32], hash: u8) -> DesiredService {
    DesiredService {
        key: addr::parse_service_name("203.0.113.10:80/tcp").unwrap(),
        scheduler: sched,
        forward: FORWARD_DR,
        hash_fields: hash,
        virtual_nodes: 160,
        standby: false,
        backends: weights
            .iter()
            .enumerate()
            .map(|(i, &w)| DesiredBackend {
                addr: format!("198.51.100.{}", 11 + i).parse().unwrap(),
                weight: w,
                effective: w * 1000,
                ifindex: 1,
                src_mac: LB_MAC,
                mac: Some(mac(i)),
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
        for (sched, name) in SCHEDS {
            let mut h = Harness::new(TEST_SIZES).unwrap();
            h.dp.apply(&[service(sched, &weights, HASH_5TUPLE)])
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
    h.dp.apply(&[service(SCHED_WRR, &[5, 1, 1], HASH_5TUPLE)])
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
    let all = SCHEDS
        .into_iter()
        .chain([(lb_common::SCHED_SHORTEST_RESPONSE, "shortest-response")]);
    for (sched, name) in all {
        let mut h = Harness::new(TEST_SIZES).unwrap();
        h.dp.apply(&[service(sched, &[1, 1, 1, 1, 1], HASH_SRC_IP)])
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
    let svc = service(SCHED_LEAST_CONN, &[1, 1, 1], HASH_5TUPLE);
    h.dp.apply(std::slice::from_ref(&svc)).unwrap();
    // Backend 0 already holds 20 open flows.
    let b0 = h.dp.backend_id(&svc.key, svc.backends[0].addr).unwrap();
    set_active(&mut h, b0, 20);
    let got = picks(&h, 30, client);
    let count = |i| got.iter().filter(|g| **g == i).count();
    assert_eq!((count(0), count(1), count(2)), (0, 15, 15), "{got:?}");
    // Relative to weight: 1:3 from nothing splits 10:30.
    let mut h = Harness::new(TEST_SIZES).unwrap();
    h.dp.apply(&[service(SCHED_LEAST_CONN, &[1, 3], HASH_5TUPLE)])
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
    let mut svc = service(lb_common::SCHED_SHORTEST_RESPONSE, &[1, 1, 1], HASH_5TUPLE);
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
