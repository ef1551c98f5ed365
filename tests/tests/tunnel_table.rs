//! Tunnel forwarding, case by case through BPF_PROG_TEST_RUN: the exact
//! frame the XDP program sends (outer headers and checksums rebuilt here
//! independently), ICMP too-big answers byte by byte, and FIB misses.
//! The FIB is real: each test runs inside a namespace with a route to the
//! backends' subnet through a gateway whose neighbour entry is permanent.

use std::net::IpAddr;

use lb_common::{FlowKey, Forward, HASH_5TUPLE, Reason, TUNNEL_V4, TUNNEL_V6, Tunnel, flow_hash};
use lb_tests::{
    bpf::{Harness, TEST_SIZES},
    fib::{FibNet, GW_MAC, ifindex, routed_service},
    frame::{CLIENT_MAC, Frame, LB_MAC, Outer, checksum, encapsulate},
    netns::Entered,
    require,
};
use lb_user::addr;

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const GUE_PORT: u16 = 6080;
const SRC4: [u8; 4] = [198, 51, 100, 2];
const SRC6: &str = "2001:db8:1::2";

fn net() -> FibNet {
    FibNet::new("tun").expect("namespace with a FIB")
}

fn service(name: &str, forward: Forward, b: &str) -> lb_user::plan::DesiredService {
    routed_service(name, forward, b, 0)
}

fn tunnel(hash_mask4: u32) -> Tunnel {
    Tunnel {
        src4: SRC4,
        hash_mask4,
        src6: addr::to_bytes(SRC6.parse().unwrap()),
        hash_mask6: 0,
        gue_port: GUE_PORT,
        flags: TUNNEL_V4 | TUNNEL_V6,
        _pad: 0,
    }
}

fn harness(mask4: u32) -> Harness {
    let mut h = Harness::new(TEST_SIZES).expect("the XDP object loads and passes the verifier");
    h.dp.apply(&[
        service("203.0.113.10:80/tcp", Forward::Ipip, "198.51.100.140"),
        service("203.0.113.10:53/udp", Forward::Gue, "198.51.100.141"),
        service("[2001:db8:f::10]:80/tcp", Forward::Ipip, "2001:db8:2::140"),
        service("[2001:db8:f::10]:53/udp", Forward::Gue, "2001:db8:2::141"),
        service("203.0.113.11:80/tcp", Forward::Ipip, "2001:db8:2::142"),
        service("203.0.113.11:53/udp", Forward::Gue, "2001:db8:2::143"),
        service("203.0.113.12:80/tcp", Forward::Ipip, "198.51.100.50"),
    ])
    .expect("apply");
    h.dp.write_tunnel(&tunnel(mask4)).expect("tunnel");
    h
}

fn flow_key(f: &Frame) -> FlowKey {
    FlowKey {
        src: addr::to_bytes(f.src),
        dst: addr::to_bytes(f.dst),
        sport: f.sport,
        dport: f.dport,
        proto: f.proto,
        family: addr::family(f.dst),
        _pad: [0; 2],
    }
}

/// The frame the balancer should send for `input`, built by hand.
fn encapsulated(
    input: &[u8],
    f: &Frame,
    outer_src: IpAddr,
    outer_dst: IpAddr,
    gue: bool,
    our_mac: [u8; 6],
) -> Vec<u8> {
    let hash = flow_hash(&flow_key(f), HASH_5TUPLE);
    let outer = Outer {
        src: outer_src,
        dst: outer_dst,
        gue: gue.then_some((0xc000 | (hash & 0x3fff) as u16, GUE_PORT)),
        flow_label: hash & 0xfffff,
        dst_mac: GW_MAC,
        src_mac: our_mac,
    };
    encapsulate(input, &outer)
}

fn reason(h: &Harness, r: Reason) -> u64 {
    h.reasons().expect("reasons")[r as usize]
}

#[test]
fn every_encapsulation_is_exact_to_the_byte() {
    if !require::root("every_encapsulation_is_exact_to_the_byte") {
        return;
    }
    let n = net();
    let _in = Entered::new(&n.ns.name).expect("enter");
    let h = harness(0);
    let a = ifindex("up0");
    let v4 = IpAddr::V4(SRC4.into());
    let v6: IpAddr = SRC6.parse().unwrap();
    let mut tos_ttl = Frame::tcp("192.0.2.7", 40000, "203.0.113.10", 80);
    tos_ttl.tos = 0xb8; // DSCP EF
    tos_ttl.ttl = 33;
    let mut no_df = Frame::tcp("192.0.2.7", 40003, "203.0.113.10", 80);
    no_df.frag = 0;
    let mut v6_tc = Frame::tcp("2001:db8:c::7", 40000, "2001:db8:f::10", 80);
    v6_tc.tos = 0x28;
    v6_tc.ttl = 17;
    let cases: Vec<(&str, Frame, &str, bool)> = vec![
        ("ipip v4", tos_ttl, "198.51.100.140", false),
        ("ipip v4 without DF", no_df, "198.51.100.140", false),
        (
            "ipip v4 802.1Q",
            Frame {
                vlan: Some(7),
                ..Frame::tcp("192.0.2.7", 40001, "203.0.113.10", 80)
            },
            "198.51.100.140",
            false,
        ),
        (
            "ipip v4 with IP options",
            Frame {
                ip_option_words: 3,
                ..Frame::tcp("192.0.2.7", 40002, "203.0.113.10", 80)
            },
            "198.51.100.140",
            false,
        ),
        ("ip6ip6", v6_tc, "2001:db8:2::140", false),
        (
            "ip6ip6 802.1Q",
            Frame {
                vlan: Some(9),
                ..Frame::tcp("2001:db8:c::7", 40001, "2001:db8:f::10", 80)
            },
            "2001:db8:2::140",
            false,
        ),
        (
            "4in6",
            Frame::tcp("192.0.2.7", 40000, "203.0.113.11", 80),
            "2001:db8:2::142",
            false,
        ),
        (
            "gue v4",
            Frame::udp("192.0.2.7", 5353, "203.0.113.10", 53),
            "198.51.100.141",
            true,
        ),
        (
            "gue v4 802.1Q",
            Frame {
                vlan: Some(7),
                ..Frame::udp("192.0.2.7", 5354, "203.0.113.10", 53)
            },
            "198.51.100.141",
            true,
        ),
        (
            "gue v6",
            Frame::udp("2001:db8:c::7", 5353, "2001:db8:f::10", 53),
            "2001:db8:2::141",
            true,
        ),
        (
            "gue 4in6",
            Frame::udp("192.0.2.7", 5353, "203.0.113.11", 53),
            "2001:db8:2::143",
            true,
        ),
    ];
    for (name, f, backend, gue) in cases {
        let input = f.build();
        let before = reason(&h, Reason::Encapsulated);
        let (verdict, out) = h.run_on(lb_common::names::PROG_LB, &input, a).expect(name);
        assert_eq!(
            verdict,
            XDP_TX,
            "{name}: verdict; reasons {:?}",
            h.reasons()
        );
        let dst: IpAddr = backend.parse().unwrap();
        let src = if dst.is_ipv4() { v4 } else { v6 };
        let want = encapsulated(&input, &f, src, dst, gue, n.mac);
        assert_eq!(out, want, "{name}: the encapsulated frame");
        let l3 = if f.vlan.is_some() { 18 } else { 14 };
        if dst.is_ipv4() {
            assert_eq!(
                checksum(&out[l3..l3 + 20], 0),
                0,
                "{name}: outer IPv4 checksum"
            );
        }
        assert_eq!(
            reason(&h, Reason::Encapsulated),
            before + 1,
            "{name}: counted"
        );
    }
}

#[test]
fn hashed_outer_sources_are_stable_per_flow_and_spread_across_flows() {
    if !require::root("hashed_outer_sources_are_stable_per_flow_and_spread_across_flows") {
        return;
    }
    let n = net();
    let _in = Entered::new(&n.ns.name).expect("enter");
    // 198.51.100.0/26: the low 6 bits come from the flow hash.
    let h = harness(0x3f);
    let a = ifindex("up0");
    let mut seen = std::collections::BTreeSet::new();
    for port in 0..64u16 {
        let f = Frame::tcp("192.0.2.7", 41000 + port, "203.0.113.10", 80).build();
        let (v1, o1) = h.run_on(lb_common::names::PROG_LB, &f, a).expect("run");
        let (v2, o2) = h.run_on(lb_common::names::PROG_LB, &f, a).expect("run");
        assert_eq!((v1, v2), (XDP_TX, XDP_TX));
        let src1 = &o1[14 + 12..14 + 16];
        assert_eq!(src1, &o2[14 + 12..14 + 16], "one flow, one outer source");
        assert_eq!(&src1[..3], &SRC4[..3], "inside the prefix");
        assert_eq!(src1[3] & !0x3f, SRC4[3] & !0x3f, "inside the prefix");
        assert_eq!(checksum(&o1[14..34], 0), 0, "checksum with a hashed source");
        seen.insert(src1.to_vec());
    }
    assert!(
        seen.len() >= 24,
        "64 flows over 64 sources used only {}",
        seen.len()
    );
}

/// The ICMP answer a client should get for `input` (its IP packet from 14).
fn too_big_answer(input: &[u8], mtu: u32) -> Vec<u8> {
    let ip = &input[14..];
    let v6 = ip[0] >> 4 == 6;
    let mut icmp = if v6 {
        let mut i = vec![2, 0, 0, 0];
        i.extend_from_slice(&mtu.to_be_bytes());
        i
    } else {
        vec![3, 4, 0, 0, 0, 0, (mtu >> 8) as u8, mtu as u8]
    };
    icmp.extend_from_slice(&ip[..128]);
    // Back to the client: the packet's addresses swapped.
    let (src, dst): (IpAddr, IpAddr) = if v6 {
        let a = |o: usize| <[u8; 16]>::try_from(&ip[o..o + 16]).unwrap().into();
        (a(24), a(8))
    } else {
        let a = |o: usize| <[u8; 4]>::try_from(&ip[o..o + 4]).unwrap().into();
        (a(16), a(12))
    };
    lb_tests::frame::icmp_frame(CLIENT_MAC, LB_MAC, src, dst, icmp)
}

#[test]
fn too_big_for_the_tunnel_gets_icmp_and_a_miss_passes() {
    if !require::root("too_big_for_the_tunnel_gets_icmp_and_a_miss_passes") {
        return;
    }
    let n = net();
    let _in = Entered::new(&n.ns.name).expect("enter");
    let h = harness(0);
    let a = ifindex("up0");
    let prog = lb_common::names::PROG_LB;

    // 1500-byte IP packets: 20 (IPIP) or 40 (IP6IP6) more do not fit up0's 1500.
    let full4 = Frame {
        payload: vec![0xab; 1460],
        ..Frame::tcp("192.0.2.7", 42000, "203.0.113.10", 80)
    };
    let input = full4.build();
    let (v, out) = h.run_on(prog, &input, a).expect("run");
    assert_eq!(v, XDP_TX, "Fragmentation Needed goes back out");
    assert_eq!(
        out,
        too_big_answer(&input, 1480),
        "ICMP Fragmentation Needed, MTU 1500 - 20"
    );
    assert_eq!(checksum(&out[14..34], 0), 0);
    assert_eq!(checksum(&out[34..], 0), 0, "ICMP checksum");
    assert_eq!(reason(&h, Reason::TxTooBig), 1);

    let full6 = Frame {
        payload: vec![0xcd; 1440],
        ..Frame::tcp("2001:db8:c::7", 42000, "2001:db8:f::10", 80)
    };
    let input = full6.build();
    let (v, out) = h.run_on(prog, &input, a).expect("run");
    assert_eq!(v, XDP_TX);
    assert_eq!(
        out,
        too_big_answer(&input, 1460),
        "ICMPv6 Packet Too Big, MTU 1500 - 40"
    );
    assert_eq!(reason(&h, Reason::TxTooBig), 2);

    // Without DF the kernel may fragment: passed untouched.
    let input = Frame {
        frag: 0,
        ..full4.clone()
    }
    .build();
    let (v, out) = h.run_on(prog, &input, a).expect("run");
    assert_eq!(
        (v, out),
        (XDP_PASS, input),
        "too big without DF passes untouched"
    );
    assert_eq!(reason(&h, Reason::PassTooBig), 1);

    // A backend whose neighbour is unresolved: the kernel's to handle.
    let input = Frame::tcp("192.0.2.7", 42001, "203.0.113.12", 80).build();
    let (v, out) = h.run_on(prog, &input, a).expect("run");
    assert_eq!((v, out), (XDP_PASS, input), "a FIB miss passes untouched");
    assert_eq!(reason(&h, Reason::PassFibMiss), 1);
}

#[test]
fn icmp_answers_are_rate_limited_per_cpu() {
    if !require::root("icmp_answers_are_rate_limited_per_cpu") {
        return;
    }
    let n = net();
    let _in = Entered::new(&n.ns.name).expect("enter");
    let h = harness(0);
    let a = ifindex("up0");
    let input = Frame {
        payload: vec![0xab; 1460],
        ..Frame::tcp("192.0.2.7", 43000, "203.0.113.10", 80)
    }
    .build();
    let start = std::time::Instant::now();
    let mut sent = 0;
    let mut dropped = 0;
    for _ in 0..300 {
        match h
            .run_on(lb_common::names::PROG_LB, &input, a)
            .expect("run")
            .0
        {
            XDP_TX => sent += 1,
            XDP_DROP => dropped += 1,
            v => panic!("verdict {v}"),
        }
    }
    assert_eq!(reason(&h, Reason::TxTooBig), sent);
    assert_eq!(reason(&h, Reason::DropTooBigLimited), dropped);
    // Each run may land on another CPU, and the window may turn once.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let windows = start.elapsed().as_secs() + 2;
    assert!(
        sent <= lb_common::ICMP_TOO_BIG_PER_SEC * cpus * windows,
        "{sent} answers in {:?}",
        start.elapsed()
    );
    assert!(
        dropped > 0 || start.elapsed().as_secs() >= 1,
        "no answer was limited"
    );
}
