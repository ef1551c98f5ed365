//! The XDP program, case by case, through BPF_PROG_TEST_RUN: input frame ->
//! expected verdict, exact output bytes, and the reason counter that moved.

use std::net::IpAddr;

use lb_common::{FlowKey, FlowValue, Forward, HashFields, Reason, Scheduler, ServiceKey};
use lb_tests::{
    bpf::{Harness, TEST_SIZES},
    frame::{self, ACK, Frame, ICMP, LB_MAC},
    require,
};
use lb_user::{
    addr,
    plan::{DesiredBackend, DesiredService},
};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
/// In BPF_PROG_TEST_RUN the frame arrives on the loopback device.
const LO: u32 = 1;

const M1: [u8; 6] = [0x02, 0, 0, 0, 0, 0x11];
const M2: [u8; 6] = [0x02, 0, 0, 0, 0, 0x12];
const M3: [u8; 6] = [0x02, 0, 0, 0, 0, 0x13];
const M6: [u8; 6] = [0x02, 0, 0, 0, 0, 0x16];

fn key(s: &str) -> ServiceKey {
    addr::parse_service_name(s).expect("service name")
}

fn backend(a: &str, weight: u32, mac: Option<[u8; 6]>) -> DesiredBackend {
    DesiredBackend {
        port: 0,
        addr: a.parse().unwrap(),
        weight,
        ifindex: LO,
        src_mac: LB_MAC,
        mac,
        via: None,
        check_port: None,
        healthy: true,
        effective: weight * 1000,
        warming: false,
        rtt_ms: 0,
    }
}

fn service(name: &str, backends: Vec<DesiredBackend>) -> DesiredService {
    DesiredService {
        key: key(name),
        scheduler: Scheduler::Maglev,
        forward: Forward::Dr,
        hash: HashFields::FiveTuple,
        standby: false,
        virtual_nodes: 160,
        backends,
    }
}

fn harness() -> Harness {
    let mut h = Harness::new(TEST_SIZES).expect("the XDP object loads and passes the verifier");
    h.dp.apply(&[
        // b2 is drained (weight 0): no new flows, old flows stay.
        service(
            "203.0.113.10:80/tcp",
            vec![
                backend("198.51.100.11", 1, Some(M1)),
                backend("198.51.100.12", 0, Some(M2)),
            ],
        ),
        service(
            "203.0.113.10:53/udp",
            vec![backend("198.51.100.13", 1, Some(M3))],
        ),
        service(
            "[2001:db8:f::10]:80/tcp",
            vec![backend("2001:db8:1::16", 1, Some(M6))],
        ),
        // Its only backend's MAC is unknown: nothing usable.
        service(
            "203.0.113.11:80/tcp",
            vec![backend("198.51.100.14", 1, None)],
        ),
        // Every port of 203.0.113.20.
        service(
            "203.0.113.20:0/tcp",
            vec![backend("198.51.100.11", 1, Some(M1))],
        ),
        // Held by a VRRP peer: this balancer is backup for it.
        DesiredService {
            standby: true,
            ..service(
                "203.0.113.30:80/tcp",
                vec![backend("198.51.100.11", 1, Some(M1))],
            )
        },
    ])
    .expect("apply");
    h
}

/// `input` with the Ethernet addresses a forward to `mac` writes.
fn forwarded(input: &[u8], mac: [u8; 6]) -> Vec<u8> {
    let mut out = input.to_vec();
    out[..6].copy_from_slice(&mac);
    out[6..12].copy_from_slice(&LB_MAC);
    out
}

struct Case {
    what: &'static str,
    input: Vec<u8>,
    verdict: u32,
    /// None: the frame must come out unchanged.
    output: Option<Vec<u8>>,
    reason: Reason,
}

fn cases() -> Vec<Case> {
    let syn = Frame::tcp("198.51.100.2", 40000, "203.0.113.10", 80);
    let syn_bytes = syn.build();
    let mut v = vec![Case {
        what: "TCP SYN to VIP",
        output: Some(forwarded(&syn_bytes, M1)),
        input: syn_bytes.clone(),
        verdict: XDP_TX,
        reason: Reason::FwdFlowMiss,
    }];
    let udp = Frame::udp("198.51.100.2", 5353, "203.0.113.10", 53).build();
    v.push(Case {
        what: "UDP to VIP",
        output: Some(forwarded(&udp, M3)),
        input: udp,
        verdict: XDP_TX,
        reason: Reason::FwdFlowMiss,
    });
    let non_vip = Frame::tcp("198.51.100.2", 40001, "198.51.100.5", 80).build();
    v.push(Case {
        what: "TCP to a non-VIP",
        input: non_vip,
        verdict: XDP_PASS,
        output: None,
        reason: Reason::PassNotVip,
    });
    let other_port = Frame::tcp("198.51.100.2", 40001, "203.0.113.10", 443).build();
    v.push(Case {
        what: "TCP to a VIP port with no service",
        input: other_port,
        verdict: XDP_PASS,
        output: None,
        reason: Reason::PassNotVip,
    });
    v.push(Case {
        what: "ARP request (broadcast)",
        input: frame::arp_request(),
        verdict: XDP_PASS,
        output: None,
        reason: Reason::PassNotOurs,
    });
    let mut arp_to_us = frame::arp_request();
    arp_to_us[..6].copy_from_slice(&LB_MAC);
    v.push(Case {
        what: "ARP sent to our MAC",
        input: arp_to_us,
        verdict: XDP_PASS,
        output: None,
        reason: Reason::PassNotIp,
    });
    // Only frames sent to this interface's MAC are balanced.
    for (what, dst) in [
        ("VIP packet to another host's MAC", [0x02, 0, 0, 0, 0, 0x99]),
        ("VIP packet to the broadcast MAC", [0xff; 6]),
        ("VIP packet to a multicast MAC", [0x01, 0, 0x5e, 0, 0, 0x12]),
    ] {
        let mut f = syn.build();
        f[..6].copy_from_slice(&dst);
        v.push(Case {
            what,
            input: f,
            verdict: XDP_PASS,
            output: None,
            reason: Reason::PassNotOurs,
        });
    }
    // Length fields that contradict the headers or the frame.
    let set16 = |f: &[u8], at: usize, val: u16| {
        let mut f = f.to_vec();
        f[at..at + 2].copy_from_slice(&val.to_be_bytes());
        f
    };
    let syn_b = syn.build();
    let udp_b = Frame::udp("198.51.100.2", 5353, "203.0.113.10", 53).build();
    let v6_b = Frame::tcp("2001:db8:1::2", 40000, "2001:db8:f::10", 80).build();
    let mut doff4 = syn_b.clone();
    doff4[46] = 0x40;
    let mut doff15 = syn_b.clone();
    doff15[46] = 0xf0;
    for (what, input, reason) in [
        (
            "IPv4 total length below the header length",
            set16(&syn_b, 16, 16),
            Reason::PassMalformed,
        ),
        (
            "IPv4 total length too short for the TCP header (ports after the packet)",
            set16(&syn_b, 16, 30),
            Reason::PassMalformed,
        ),
        (
            "IPv4 total length past the frame",
            set16(&syn_b, 16, 41),
            Reason::PassTruncated,
        ),
        (
            "IPv6 payload length too short for the TCP header",
            set16(&v6_b, 18, 10),
            Reason::PassMalformed,
        ),
        (
            "IPv6 payload length past the frame",
            set16(&v6_b, 18, 21),
            Reason::PassTruncated,
        ),
        ("TCP data offset 4", doff4, Reason::PassMalformed),
        (
            "TCP data offset 15 past the segment",
            doff15,
            Reason::PassMalformed,
        ),
        ("UDP length 7", set16(&udp_b, 38, 7), Reason::PassMalformed),
        (
            "UDP length past the datagram",
            set16(&udp_b, 38, 14),
            Reason::PassMalformed,
        ),
    ] {
        v.push(Case {
            what,
            input,
            verdict: XDP_PASS,
            output: None,
            reason,
        });
    }
    // Ethernet's 60-byte minimum pads short packets; the padding is fine.
    for (what, f, mac, sport) in [
        ("TCP SYN padded to 60 bytes", &syn, M1, 40300),
        (
            "UDP padded to 60 bytes",
            &Frame::udp("198.51.100.2", 5354, "203.0.113.10", 53),
            M3,
            5354,
        ),
    ] {
        let mut padded = Frame { sport, ..f.clone() }.build();
        padded.resize(60, 0);
        v.push(Case {
            what,
            output: Some(forwarded(&padded, mac)),
            input: padded,
            verdict: XDP_TX,
            reason: Reason::FwdFlowMiss,
        });
    }
    let icmp = Frame {
        proto: ICMP,
        ..syn.clone()
    }
    .build();
    v.push(Case {
        what: "ICMP to VIP",
        input: icmp,
        verdict: XDP_PASS,
        output: None,
        reason: Reason::PassUnknownL4,
    });
    for words in [1u8, 10] {
        let opts = Frame {
            ip_option_words: words,
            sport: 40100 + words as u16,
            ..syn.clone()
        }
        .build();
        v.push(Case {
            what: "IPv4 with options to VIP",
            output: Some(forwarded(&opts, M1)),
            input: opts,
            verdict: XDP_TX,
            reason: Reason::FwdFlowMiss,
        });
    }
    for frag in [0x2000u16, 0x0010] {
        let f = Frame {
            frag,
            ..syn.clone()
        }
        .build();
        v.push(Case {
            what: "IPv4 fragment (MF, or offset)",
            input: f,
            verdict: XDP_PASS,
            output: None,
            reason: Reason::PassFragment,
        });
    }
    let mut bad_ihl = syn.build();
    bad_ihl[14] = 0x44;
    v.push(Case {
        what: "IPv4 with IHL 4",
        input: bad_ihl,
        verdict: XDP_PASS,
        output: None,
        reason: Reason::PassMalformed,
    });
    let mut bad_version = syn.build();
    bad_version[14] = 0x65;
    v.push(Case {
        what: "IPv4 ethertype, version 6",
        input: bad_version,
        verdict: XDP_PASS,
        output: None,
        reason: Reason::PassMalformed,
    });
    let tagged = Frame {
        vlan: Some(100),
        sport: 40200,
        ..syn.clone()
    }
    .build();
    v.push(Case {
        what: "802.1Q-tagged VIP packet",
        output: Some(forwarded(&tagged, M1)),
        input: tagged,
        verdict: XDP_TX,
        reason: Reason::FwdFlowMiss,
    });
    let v6 = Frame::tcp("2001:db8:1::2", 40000, "2001:db8:f::10", 80).build();
    v.push(Case {
        what: "IPv6 VIP packet",
        output: Some(forwarded(&v6, M6)),
        input: v6,
        verdict: XDP_TX,
        reason: Reason::FwdFlowMiss,
    });
    let v6_ext = Frame {
        ipv6_ext: Some(60),
        ..Frame::tcp("2001:db8:1::2", 40000, "2001:db8:f::10", 80)
    }
    .build();
    v.push(Case {
        what: "IPv6 with an extension header",
        input: v6_ext,
        verdict: XDP_PASS,
        output: None,
        reason: Reason::PassIpv6Ext,
    });
    let no_backend = Frame::tcp("198.51.100.2", 40000, "203.0.113.11", 80).build();
    v.push(Case {
        what: "service with no usable backend",
        input: no_backend,
        verdict: XDP_DROP,
        output: None,
        reason: Reason::DropNoBackend,
    });
    let standby = Frame::tcp("198.51.100.2", 40000, "203.0.113.30", 80).build();
    v.push(Case {
        what: "VIP of a VRRP instance that is backup here",
        input: standby,
        verdict: XDP_PASS,
        output: None,
        reason: Reason::PassStandby,
    });
    let any_port = Frame::tcp("198.51.100.2", 40000, "203.0.113.20", 8443).build();
    v.push(Case {
        what: "all-ports service",
        output: Some(forwarded(&any_port, M1)),
        input: any_port,
        verdict: XDP_TX,
        reason: Reason::FwdFlowMiss,
    });
    // Truncated inside each header: cut one byte short of its end.
    let tagged = Frame {
        vlan: Some(7),
        ..syn.clone()
    }
    .build();
    let udp = Frame::udp("198.51.100.2", 5353, "203.0.113.10", 53).build();
    let v6 = Frame::tcp("2001:db8:1::2", 40000, "2001:db8:f::10", 80).build();
    for (what, f, len) in [
        ("truncated in the 802.1Q tag", &tagged, 14 + 3),
        ("truncated in the IPv4 header", &syn.build(), 14 + 19),
        (
            "truncated in IPv4 options",
            &Frame {
                ip_option_words: 2,
                ..syn.clone()
            }
            .build(),
            14 + 27,
        ),
        ("truncated in the IPv6 header", &v6, 14 + 39),
        ("truncated in the TCP ports", &syn.build(), 14 + 20 + 3),
        ("truncated in the UDP header", &udp, 14 + 20 + 3),
    ] {
        v.push(Case {
            what,
            input: f[..len].to_vec(),
            verdict: XDP_PASS,
            output: None,
            reason: Reason::PassTruncated,
        });
    }
    v
}

#[test]
fn every_case_gets_its_verdict_bytes_and_counter() {
    if !require::root("every_case_gets_its_verdict_bytes_and_counter") {
        return;
    }
    let h = harness();
    let mut failures = Vec::new();
    for c in cases() {
        let before = h.reasons().unwrap();
        let (verdict, out) = h.run(lb_common::names::PROG_LB, &c.input).unwrap();
        let after = h.reasons().unwrap();
        let want_out = c.output.clone().unwrap_or_else(|| c.input.clone());
        if verdict != c.verdict {
            failures.push(format!("{}: verdict {verdict}, want {}", c.what, c.verdict));
        }
        if out != want_out {
            failures.push(format!(
                "{}: output bytes differ\n  got  {out:02x?}\n  want {want_out:02x?}",
                c.what
            ));
        }
        let moved: Vec<Reason> = Reason::ALL
            .into_iter()
            .filter(|r| after[*r as usize] != before[*r as usize])
            .collect();
        if moved != [c.reason] || after[c.reason as usize] != before[c.reason as usize] + 1 {
            failures.push(format!(
                "{}: counters moved {moved:?}, want exactly one {:?}",
                c.what, c.reason
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn flow_key(src: &str, sport: u16, dst: &str, dport: u16) -> FlowKey {
    let (s, d): (IpAddr, IpAddr) = (src.parse().unwrap(), dst.parse().unwrap());
    FlowKey {
        src: addr::to_bytes(s),
        dst: addr::to_bytes(d),
        sport,
        dport,
        proto: 6,
        family: addr::family(s),
        _pad: [0; 2],
    }
}

#[test]
fn established_flow_keeps_its_backend_even_when_drained() {
    if !require::root("established_flow_keeps_its_backend_even_when_drained") {
        return;
    }
    let mut h = harness();
    let svc = key("203.0.113.10:80/tcp");
    let b1 =
        h.dp.backend_id(&svc, "198.51.100.11".parse().unwrap())
            .unwrap();
    let b2 =
        h.dp.backend_id(&svc, "198.51.100.12".parse().unwrap())
            .unwrap();
    let sid = h.dp.service_id(&svc).unwrap();

    // A new flow lands on b1 (b2 has weight 0) and is remembered.
    let syn = Frame::tcp("198.51.100.2", 41000, "203.0.113.10", 80);
    let (v, out) = h.run(lb_common::names::PROG_LB, &syn.build()).unwrap();
    assert_eq!((v, &out[..6]), (XDP_TX, &M1[..]));
    let k = flow_key("198.51.100.2", 41000, "203.0.113.10", 80);
    assert_eq!(
        h.flow(&k),
        Some(FlowValue {
            backend: b1,
            service: sid,
            ..Default::default()
        })
    );

    // A flow the table would send to b1 but the flow table pins to drained b2.
    let k2 = flow_key("198.51.100.2", 41001, "203.0.113.10", 80);
    h.insert_flow(
        k2,
        FlowValue {
            backend: b2,
            service: sid,
            ..Default::default()
        },
    )
    .unwrap();
    let ack = Frame {
        tcp_flags: ACK,
        ..Frame::tcp("198.51.100.2", 41001, "203.0.113.10", 80)
    }
    .build();
    let before = h.reasons().unwrap();
    let (v, out) = h.run(lb_common::names::PROG_LB, &ack).unwrap();
    assert_eq!(v, XDP_TX);
    assert_eq!(
        out,
        forwarded(&ack, M2),
        "established flow must stay on its (drained) backend"
    );
    assert_eq!(
        h.reasons().unwrap()[Reason::FwdFlowHit as usize],
        before[Reason::FwdFlowHit as usize] + 1
    );

    // Once b2 is gone from the config, its flow is re-balanced to b1.
    h.dp.apply(&[service(
        "203.0.113.10:80/tcp",
        vec![backend("198.51.100.11", 1, Some(M1))],
    )])
    .unwrap();
    let (v, out) = h.run(lb_common::names::PROG_LB, &ack).unwrap();
    assert_eq!((v, out), (XDP_TX, forwarded(&ack, M1)));
    assert_eq!(
        h.flow(&k2),
        Some(FlowValue {
            backend: b1,
            service: sid,
            ..Default::default()
        })
    );
}

#[test]
fn flows_on_a_backend_that_goes_down_are_rebalanced() {
    if !require::root("flows_on_a_backend_that_goes_down_are_rebalanced") {
        return;
    }
    let mut h = harness();
    let name = "203.0.113.10:80/tcp";
    let svc = key(name);
    let two_up = |h: &mut Harness, b2_healthy: bool| {
        let mut b2 = backend("198.51.100.12", 1, Some(M2));
        b2.healthy = b2_healthy;
        if !b2_healthy {
            b2.effective = 0;
        }
        h.dp.apply(&[service(
            name,
            vec![backend("198.51.100.11", 1, Some(M1)), b2],
        )])
        .unwrap();
    };
    two_up(&mut h, true);
    let b2 =
        h.dp.backend_id(&svc, "198.51.100.12".parse().unwrap())
            .unwrap();
    let sid = h.dp.service_id(&svc).unwrap();
    // Open 40 flows; the ones on b2 are remembered there.
    let mut on_b2 = Vec::new();
    for sport in 42000..42040 {
        let syn = Frame::tcp("198.51.100.2", sport, "203.0.113.10", 80).build();
        let (v, out) = h.run(lb_common::names::PROG_LB, &syn).unwrap();
        assert_eq!(v, XDP_TX);
        if out[..6] == M2 {
            on_b2.push(sport);
        }
    }
    assert!(!on_b2.is_empty(), "some of 40 flows land on b2");

    // b2 fails its check: its flows move to b1 (b2 cannot answer them).
    two_up(&mut h, false);
    for &sport in &on_b2 {
        let ack = Frame {
            tcp_flags: ACK,
            ..Frame::tcp("198.51.100.2", sport, "203.0.113.10", 80)
        }
        .build();
        let (v, out) = h.run(lb_common::names::PROG_LB, &ack).unwrap();
        assert_eq!((v, out), (XDP_TX, forwarded(&ack, M1)));
        let k = flow_key("198.51.100.2", sport, "203.0.113.10", 80);
        assert_ne!(h.flow(&k).map(|f| f.backend), Some(b2));
        assert_eq!(h.flow(&k).map(|f| f.service), Some(sid));
    }
    // And no new flow reaches it.
    for sport in 43000..43040 {
        let syn = Frame::tcp("198.51.100.2", sport, "203.0.113.10", 80).build();
        let (_, out) = h.run(lb_common::names::PROG_LB, &syn).unwrap();
        assert_eq!(&out[..6], &M1[..]);
    }
}

#[test]
fn reapplying_the_same_state_writes_nothing() {
    if !require::root("reapplying_the_same_state_writes_nothing") {
        return;
    }
    let mut h = harness();
    let before = h.dp.writes;
    let svc = vec![
        service(
            "203.0.113.10:80/tcp",
            vec![
                backend("198.51.100.11", 1, Some(M1)),
                backend("198.51.100.12", 0, Some(M2)),
            ],
        ),
        service(
            "203.0.113.10:53/udp",
            vec![backend("198.51.100.13", 1, Some(M3))],
        ),
        service(
            "[2001:db8:f::10]:80/tcp",
            vec![backend("2001:db8:1::16", 1, Some(M6))],
        ),
        service(
            "203.0.113.11:80/tcp",
            vec![backend("198.51.100.14", 1, None)],
        ),
        service(
            "203.0.113.20:0/tcp",
            vec![backend("198.51.100.11", 1, Some(M1))],
        ),
        DesiredService {
            standby: true,
            ..service(
                "203.0.113.30:80/tcp",
                vec![backend("198.51.100.11", 1, Some(M1))],
            )
        },
    ];
    h.dp.apply(&svc).unwrap();
    assert_eq!(
        h.dp.writes, before,
        "an unchanged state must not touch the maps"
    );
    // Changing one weight rewrites exactly one table.
    let mut changed = svc.clone();
    changed[0].backends[1].weight = 3;
    changed[0].backends[1].effective = 3000;
    h.dp.apply(&changed).unwrap();
    assert_eq!(h.dp.writes.tables, before.tables + 1);
}

#[test]
fn hash_src_ip_sends_all_of_a_clients_flows_to_one_backend() {
    if !require::root("hash_src_ip_sends_all_of_a_clients_flows_to_one_backend") {
        return;
    }
    let mut h = Harness::new(TEST_SIZES).unwrap();
    let macs: Vec<[u8; 6]> = (0..5).map(|i| [2, 0, 0, 0, 1, i]).collect();
    let backends: Vec<DesiredBackend> = (0..5)
        .map(|i| backend(&format!("198.51.100.{}", 11 + i), 1, Some(macs[i])))
        .collect();
    for (fields, want_one) in [(HashFields::SrcIp, true), (HashFields::FiveTuple, false)] {
        h.dp.apply(&[DesiredService {
            hash: fields,
            standby: false,
            virtual_nodes: 160,
            ..service("203.0.113.10:80/tcp", backends.clone())
        }])
        .unwrap();
        h.clear_flows().unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for port in 0..100u16 {
            let f = Frame::tcp("198.51.100.77", 20000 + port, "203.0.113.10", 80).build();
            let (v, out) = h.run(lb_common::names::PROG_LB, &f).unwrap();
            assert_eq!(v, XDP_TX);
            seen.insert(out[..6].to_vec());
        }
        if want_one {
            assert_eq!(
                seen.len(),
                1,
                "hash = src-ip: 100 connections of one client reached {} backends",
                seen.len()
            );
        } else {
            assert_eq!(
                seen.len(),
                5,
                "hash = 5-tuple: 100 connections should spread over all 5 backends"
            );
        }
    }
}

#[test]
fn backend_on_another_interface_is_reached_with_xdp_redirect() {
    let name = "backend_on_another_interface_is_reached_with_xdp_redirect";
    if !require::root(name) {
        return;
    }
    // In a namespace of its own the test frame arrives on that namespace's lo
    // and the devmap can name a real veth there.
    let ns = lb_tests::netns::Netns::new("redir").unwrap();
    lb_tests::netns::ip(&ns.name, "link add red0 type veth peer name red1").unwrap();
    lb_tests::netns::ip(&ns.name, "link set red0 up").unwrap();
    lb_tests::netns::ip(&ns.name, "link set red1 up").unwrap();
    let (verdict, out, input) = lb_tests::netns::in_ns(&ns.name, || {
        // if_nametoindex asks this thread's network namespace.
        let ifindex = unsafe { libc::if_nametoindex(c"red0".as_ptr()) };
        assert_ne!(ifindex, 0, "red0 not found in the test namespace");
        let mut h = Harness::new(TEST_SIZES).unwrap();
        let b = DesiredBackend {
            ifindex,
            ..backend("198.51.100.11", 1, Some(M1))
        };
        h.dp.apply(&[service("203.0.113.10:80/tcp", vec![b])])
            .unwrap();
        let input = Frame::tcp("198.51.100.2", 40000, "203.0.113.10", 80).build();
        let (v, out) = h.run(lb_common::names::PROG_LB, &input).unwrap();
        (v, out, input)
    })
    .unwrap();
    const XDP_REDIRECT: u32 = 4;
    assert_eq!(verdict, XDP_REDIRECT);
    assert_eq!(out, forwarded(&input, M1));
}

#[test]
fn active_flows_count_opens_and_the_first_client_fin_or_rst() {
    if !require::root("active_flows_count_opens_and_the_first_client_fin_or_rst") {
        return;
    }
    let h = harness();
    let total = |h: &Harness| -> i64 {
        let m: aya::maps::Array<_, u64> =
            aya::maps::Array::try_from(h.ebpf.map(lb_common::names::ACTIVE).unwrap()).unwrap();
        (0..TEST_SIZES.max_backends)
            .map(|i| m.get(&i, 0).unwrap() as i64)
            .sum()
    };
    let base = total(&h);
    let pkt = |sport: u16, flags: u8| {
        Frame {
            tcp_flags: flags,
            ..Frame::tcp("198.51.100.2", sport, "203.0.113.10", 80)
        }
        .build()
    };
    for sport in 45000..45010 {
        h.run(lb_common::names::PROG_LB, &pkt(sport, lb_tests::frame::SYN))
            .unwrap();
    }
    assert_eq!(total(&h), base + 10, "ten opened flows");
    // Established traffic changes nothing; the first FIN closes, a repeat
    // does not count twice; RST closes too.
    for sport in 45000..45005 {
        h.run(lb_common::names::PROG_LB, &pkt(sport, ACK)).unwrap();
        h.run(lb_common::names::PROG_LB, &pkt(sport, ACK | 0x01))
            .unwrap();
        h.run(lb_common::names::PROG_LB, &pkt(sport, ACK | 0x01))
            .unwrap();
    }
    h.run(lb_common::names::PROG_LB, &pkt(45005, 0x04)).unwrap();
    assert_eq!(total(&h), base + 4);
}

#[test]
fn a_full_sync_ring_loses_only_sync_reports_never_packets() {
    if !require::root("a_full_sync_ring_loses_only_sync_reports_never_packets") {
        return;
    }
    // No agent drains this harness's FLOW_EVENTS: it fills up.
    let h = harness();
    let n = 20_000u16;
    let mut forwarded = 0;
    for i in 0..n {
        let f = Frame::tcp(
            &format!("192.0.{}.{}", 2 + i / 250, 1 + i % 250),
            10_000 + i,
            "203.0.113.10",
            80,
        )
        .build();
        let (v, _) = h.run(lb_common::names::PROG_LB, &f).unwrap();
        forwarded += (v == XDP_TX) as u32;
    }
    assert_eq!(forwarded, n as u32, "every new flow was forwarded");
    let r = h.reasons().unwrap();
    let lost = r[Reason::SyncDropped as usize];
    // The ring holds about 16,000 reports of 64 bytes.
    assert!(lost > 0 && lost < n as u64, "sync reports lost: {lost}");
    assert_eq!(r[Reason::FwdFlowMiss as usize], n as u64);
}

#[test]
fn over_the_new_flow_limit_flows_are_placed_by_hash_and_not_remembered() {
    if !require::root("over_the_new_flow_limit_flows_are_placed_by_hash_and_not_remembered") {
        return;
    }
    let mut h = Harness::new(TEST_SIZES).expect("the XDP object loads and passes the verifier");
    // wrr: a SYN's scheduler choice differs from its hash placement, so a
    // flow's later packets could only agree with an unremembered SYN if
    // both are placed by hash.
    let mut s = service(
        "203.0.113.30:80/tcp",
        vec![
            backend("198.51.100.11", 1, Some(M1)),
            backend("198.51.100.12", 1, Some(M2)),
            backend("198.51.100.13", 1, Some(M3)),
        ],
    );
    s.scheduler = Scheduler::Wrr;
    h.dp.apply(&[s]).unwrap();
    h.dp.write_limits(5, false).unwrap();
    let mut first = Vec::new();
    for p in 0..40u16 {
        let syn = Frame::tcp("198.51.100.2", 42000 + p, "203.0.113.30", 80).build();
        let (v, out) = h.run(lb_common::names::PROG_LB, &syn).unwrap();
        assert_eq!(v, XDP_TX, "every new flow is forwarded");
        first.push(out[..6].to_vec());
    }
    let remembered = (0..40u16)
        .filter(|p| {
            h.flow(&flow_key("198.51.100.2", 42000 + p, "203.0.113.30", 80))
                .is_some()
        })
        .count();
    assert_eq!(remembered, 5, "only this second's five are remembered");
    assert_eq!(h.reasons().unwrap()[Reason::Unremembered as usize], 35);
    // Every flow's next packet reaches the backend its SYN reached.
    for p in 0..40u16 {
        let ack = Frame {
            tcp_flags: ACK,
            ..Frame::tcp("198.51.100.2", 42000 + p, "203.0.113.30", 80)
        }
        .build();
        let (v, out) = h.run(lb_common::names::PROG_LB, &ack).unwrap();
        assert_eq!(
            (v, out[..6].to_vec()),
            (XDP_TX, first[p as usize].clone()),
            "flow {p}"
        );
    }
    // The limit off: new flows are remembered again.
    h.dp.write_limits(0, false).unwrap();
    let syn = Frame::tcp("198.51.100.2", 43000, "203.0.113.30", 80).build();
    h.run(lb_common::names::PROG_LB, &syn).unwrap();
    assert!(
        h.flow(&flow_key("198.51.100.2", 43000, "203.0.113.30", 80))
            .is_some()
    );
}
