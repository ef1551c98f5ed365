//! NAT and full-NAT, case by case through BPF_PROG_TEST_RUN: the exact
//! frame the XDP program sends each way, with every checksum computed here
//! from scratch (not incrementally, as the program does), port translation,
//! full-NAT's source and port, a reply with no connection, and ICMP errors
//! translated byte by byte. The FIB is real (a namespace whose gateway
//! reaches both the backends and the clients).

use lb_common::{Forward, Reason};
use lb_tests::{
    bpf::{Harness, TEST_SIZES},
    fib::{FibNet, GW_MAC, ifindex, routed_service},
    frame::{ACK, Frame, icmp_frame},
    netns::{self, Entered},
    require,
};
use lb_user::{config::NatCfg, plan::DesiredService};

const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const SNAT4: &str = "198.51.100.2";
const SNAT6: &str = "2001:db8:1::2";
const PORTS: (u16, u16) = (20_000, 20_099);

fn net() -> FibNet {
    let n = FibNet::new("nat").expect("namespace with a FIB");
    // The clients are behind the same gateway as the backends.
    for cmd in [
        "route add 192.0.2.0/24 via 198.51.100.1",
        "-6 route add 2001:db8:c::/64 via 2001:db8:1::1",
    ] {
        netns::ip(&n.ns.name, cmd).expect(cmd);
    }
    n
}

fn service(name: &str, forward: Forward, backend: &str, port: u16) -> DesiredService {
    routed_service(name, forward, backend, port)
}

fn harness() -> Harness {
    let mut h = Harness::new(TEST_SIZES).expect("the XDP object loads and passes the verifier");
    h.dp.apply(&[
        service("203.0.113.20:80/tcp", Forward::Nat, "198.51.100.140", 8080),
        service("203.0.113.20:53/udp", Forward::Nat, "198.51.100.141", 5353),
        service(
            "[2001:db8:f::20]:80/tcp",
            Forward::Nat,
            "2001:db8:2::140",
            8080,
        ),
        service(
            "[2001:db8:f::20]:53/udp",
            Forward::Nat,
            "2001:db8:2::141",
            0,
        ),
        service(
            "203.0.113.21:80/tcp",
            Forward::FullNat,
            "198.51.100.142",
            8080,
        ),
        service(
            "[2001:db8:f::21]:80/tcp",
            Forward::FullNat,
            "2001:db8:2::142",
            8080,
        ),
    ])
    .expect("apply");
    let nat = NatCfg {
        snat: vec![SNAT4.parse().unwrap(), SNAT6.parse().unwrap()],
        ports: PORTS,
        ..Default::default()
    };
    h.dp.write_nat(&nat.record()).expect("NAT_CONFIG");
    h
}

/// `f` as the balancer sends it on: checksummed, from up0 to the gateway.
fn sent(f: &Frame, our_mac: [u8; 6]) -> Vec<u8> {
    let mut out = Frame {
        l4_check: true,
        ..f.clone()
    }
    .build();
    out[..6].copy_from_slice(&GW_MAC);
    out[6..12].copy_from_slice(&our_mac);
    out
}

fn checked(f: Frame) -> Frame {
    Frame {
        l4_check: true,
        ..f
    }
}

fn reason(h: &Harness, r: Reason) -> u64 {
    h.reasons().expect("reasons")[r as usize]
}

/// The source port of a sent IPv4 or IPv6 frame (no VLAN tag, no options).
fn sport(frame: &[u8]) -> u16 {
    let l4 = if frame[12..14] == [0x08, 0x00] {
        34
    } else {
        54
    };
    u16::from_be_bytes([frame[l4], frame[l4 + 1]])
}

#[test]
fn nat_rewrites_both_ways_exactly() {
    if !require::root("nat_rewrites_both_ways_exactly") {
        return;
    }
    let n = net();
    let _in = Entered::new(&n.ns.name).expect("enter");
    let h = harness();
    let up0 = ifindex("up0");
    // (client's frame, what the backend gets, the backend's reply, what the client gets)
    let cases: Vec<(&str, Frame, Frame)> = vec![
        (
            "tcp v4, port 80 -> 8080",
            Frame::tcp("192.0.2.7", 40000, "203.0.113.20", 80),
            Frame::tcp("192.0.2.7", 40000, "198.51.100.140", 8080),
        ),
        (
            "udp v4, port 53 -> 5353",
            Frame::udp("192.0.2.7", 5000, "203.0.113.20", 53),
            Frame::udp("192.0.2.7", 5000, "198.51.100.141", 5353),
        ),
        (
            "tcp v6, port 80 -> 8080",
            Frame::tcp("2001:db8:c::7", 40000, "2001:db8:f::20", 80),
            Frame::tcp("2001:db8:c::7", 40000, "2001:db8:2::140", 8080),
        ),
        (
            "udp v6, same port",
            Frame::udp("2001:db8:c::7", 5000, "2001:db8:f::20", 53),
            Frame::udp("2001:db8:c::7", 5000, "2001:db8:2::141", 53),
        ),
    ];
    for (what, client, backend) in cases {
        let (v, out) = h
            .run_on(
                lb_common::names::PROG_LB,
                &checked(client.clone()).build(),
                up0,
            )
            .expect("run");
        assert_eq!(v, XDP_TX, "{what}: forwarded out of the same interface");
        assert_eq!(out, sent(&backend, n.mac), "{what}: to the backend");
        // The backend answers with an ACK; the client sees the VIP's.
        let mut reply = Frame {
            src: backend.dst,
            dst: backend.src,
            sport: backend.dport,
            dport: backend.sport,
            tcp_flags: ACK,
            ..backend.clone()
        };
        let (v, out) = h
            .run_on(
                lb_common::names::PROG_LB,
                &checked(reply.clone()).build(),
                up0,
            )
            .expect("run");
        assert_eq!(v, XDP_TX, "{what}: the reply is forwarded");
        reply.src = client.dst;
        reply.sport = client.dport;
        assert_eq!(
            out,
            sent(&reply, n.mac),
            "{what}: the reply as from the VIP"
        );
    }
    assert_eq!(reason(&h, Reason::FwdNatReply), 4);
    assert_eq!(reason(&h, Reason::Translated), 4);

    // UDP over IPv4 without a checksum keeps none.
    let bare = Frame::udp("192.0.2.8", 5001, "203.0.113.20", 53);
    let (_, out) = h
        .run_on(lb_common::names::PROG_LB, &bare.build(), up0)
        .expect("run");
    let mut want = Frame::udp("192.0.2.8", 5001, "198.51.100.141", 5353).build();
    want[..6].copy_from_slice(&GW_MAC);
    want[6..12].copy_from_slice(&n.mac);
    assert_eq!(out, want, "no UDP checksum stays none");

    // A reply nobody asked for passes untouched.
    let stray = checked(Frame::tcp("198.51.100.140", 8080, "192.0.2.99", 1234)).build();
    let before = reason(&h, Reason::PassNotVip);
    let (v, out) = h
        .run_on(lb_common::names::PROG_LB, &stray, up0)
        .expect("run");
    assert_eq!(
        (v, out),
        (XDP_PASS, stray),
        "reverse miss: passed as it came"
    );
    assert_eq!(reason(&h, Reason::PassNotVip), before + 1);
}

#[test]
fn fullnat_sources_are_ours_and_ports_distinct() {
    if !require::root("fullnat_sources_are_ours_and_ports_distinct") {
        return;
    }
    let n = net();
    let _in = Entered::new(&n.ns.name).expect("enter");
    let h = harness();
    let up0 = ifindex("up0");
    for (client, vip, backend, snat) in [
        ("192.0.2.7", "203.0.113.21", "198.51.100.142", SNAT4),
        ("2001:db8:c::7", "2001:db8:f::21", "2001:db8:2::142", SNAT6),
    ] {
        let mut ports = std::collections::BTreeSet::new();
        for cport in 41000..41020 {
            let f = Frame::tcp(client, cport, vip, 80);
            let (v, out) = h
                .run_on(lb_common::names::PROG_LB, &checked(f.clone()).build(), up0)
                .expect("run");
            assert_eq!(v, XDP_TX, "{client}:{cport}");
            let port = sport(&out);
            assert!(
                (PORTS.0..=PORTS.1).contains(&port),
                "port {port} in the range"
            );
            assert!(ports.insert(port), "port {port} given twice");
            let to = Frame::tcp(snat, port, backend, 8080);
            assert_eq!(out, sent(&to, n.mac), "{client}:{cport}: from our address");
            // The next packet of the flow keeps its port.
            let ack = Frame {
                tcp_flags: ACK,
                ..f.clone()
            };
            let (_, again) = h
                .run_on(lb_common::names::PROG_LB, &checked(ack).build(), up0)
                .expect("run");
            assert_eq!(sport(&again), port, "a flow keeps its source port");
            // The reply goes back to the client as from the VIP.
            let reply = Frame {
                tcp_flags: ACK,
                ..Frame::tcp(backend, 8080, snat, port)
            };
            let (v, back) = h
                .run_on(lb_common::names::PROG_LB, &checked(reply).build(), up0)
                .expect("run");
            assert_eq!(v, XDP_TX);
            let want = Frame {
                tcp_flags: ACK,
                ..Frame::tcp(vip, 80, client, cport)
            };
            assert_eq!(
                back,
                sent(&want, n.mac),
                "the reply as from the VIP to the client"
            );
        }
    }
}

/// An ICMP error from `src` to `dst` of (type, code, rest of header)
/// quoting `quoted` (an IP packet), checksums computed here.
fn icmp_error(src: &str, dst: &str, kind: u8, code: u8, rest: [u8; 4], quoted: &[u8]) -> Vec<u8> {
    let mut msg = vec![kind, code, 0, 0];
    msg.extend_from_slice(&rest);
    msg.extend_from_slice(quoted);
    icmp_frame(
        lb_tests::frame::LB_MAC,
        lb_tests::frame::CLIENT_MAC,
        src.parse().unwrap(),
        dst.parse().unwrap(),
        msg,
    )
}

/// The IP packet of a built frame (no VLAN tag).
fn ip_of(frame: &[u8]) -> Vec<u8> {
    frame[14..].to_vec()
}

#[test]
fn icmp_errors_are_translated_both_ways() {
    if !require::root("icmp_errors_are_translated_both_ways") {
        return;
    }
    let n = net();
    let _in = Entered::new(&n.ns.name).expect("enter");
    let h = harness();
    let up0 = ifindex("up0");
    let run = |f: &[u8]| h.run_on(lb_common::names::PROG_LB, f, up0).expect("run");
    // Open the connections the errors are about.
    let udp = checked(Frame::udp("192.0.2.7", 5000, "203.0.113.20", 53));
    run(&udp.build());
    let tcp = checked(Frame::tcp("192.0.2.7", 40000, "203.0.113.20", 80));
    run(&tcp.build());
    let tcp6 = checked(Frame::tcp("2001:db8:c::7", 40000, "2001:db8:f::20", 80));
    run(&tcp6.build());

    // The backend: port unreachable about the datagram it got. The client
    // must see it from the VIP, about the datagram it sent.
    let got = checked(Frame::udp("192.0.2.7", 5000, "198.51.100.141", 5353)).build();
    let err = icmp_error("198.51.100.141", "192.0.2.7", 3, 3, [0; 4], &ip_of(&got));
    let (v, out) = run(&err);
    assert_eq!(v, XDP_TX, "the backend's error is forwarded");
    let mut want = icmp_error(
        "203.0.113.20",
        "192.0.2.7",
        3,
        3,
        [0; 4],
        &ip_of(&udp.build()),
    );
    want[..6].copy_from_slice(&GW_MAC);
    want[6..12].copy_from_slice(&n.mac);
    assert_eq!(out, want, "port unreachable, translated");

    // A router on the client's side: fragmentation needed, about the VIP's
    // segment to the client. The backend must see it about its own.
    let ours = checked(Frame {
        tcp_flags: ACK,
        ..Frame::tcp("203.0.113.20", 80, "192.0.2.7", 40000)
    })
    .build();
    let mtu = [0, 0, 0x05, 0x00];
    let err = icmp_error("192.0.2.1", "203.0.113.20", 3, 4, mtu, &ip_of(&ours)[..28]);
    let (v, out) = run(&err);
    assert_eq!(v, XDP_TX, "the router's error is forwarded");
    let theirs = checked(Frame {
        tcp_flags: ACK,
        ..Frame::tcp("198.51.100.140", 8080, "192.0.2.7", 40000)
    })
    .build();
    let mut want = icmp_error(
        "192.0.2.1",
        "198.51.100.140",
        3,
        4,
        mtu,
        &ip_of(&theirs)[..28],
    );
    want[..6].copy_from_slice(&GW_MAC);
    want[6..12].copy_from_slice(&n.mac);
    assert_eq!(
        out, want,
        "fragmentation needed (a 28-byte quote), translated"
    );

    // IPv6: packet too big from the client's side, a whole quote.
    let ours = checked(Frame {
        tcp_flags: ACK,
        ..Frame::tcp("2001:db8:f::20", 80, "2001:db8:c::7", 40000)
    })
    .build();
    let mtu6 = 1280u32.to_be_bytes();
    let err = icmp_error("2001:db8:c::1", "2001:db8:f::20", 2, 0, mtu6, &ip_of(&ours));
    let (v, out) = run(&err);
    assert_eq!(v, XDP_TX);
    let theirs = checked(Frame {
        tcp_flags: ACK,
        ..Frame::tcp("2001:db8:2::140", 8080, "2001:db8:c::7", 40000)
    })
    .build();
    let mut want = icmp_error(
        "2001:db8:c::1",
        "2001:db8:2::140",
        2,
        0,
        mtu6,
        &ip_of(&theirs),
    );
    want[..6].copy_from_slice(&GW_MAC);
    want[6..12].copy_from_slice(&n.mac);
    assert_eq!(out, want, "packet too big, translated");
    assert_eq!(reason(&h, Reason::FwdNatIcmp), 3);

    // ICMP about no connection, and an echo request, pass untouched.
    let unknown = checked(Frame::udp("192.0.2.9", 5000, "198.51.100.141", 5353)).build();
    let err = icmp_error(
        "198.51.100.141",
        "192.0.2.9",
        3,
        3,
        [0; 4],
        &ip_of(&unknown),
    );
    assert_eq!(run(&err), (XDP_PASS, err.clone()), "no connection: passed");
    let echo = icmp_error("192.0.2.7", "203.0.113.20", 8, 0, [0, 1, 0, 1], b"ping");
    assert_eq!(run(&echo), (XDP_PASS, echo.clone()), "not an error: passed");
}

#[test]
fn idle_connections_expire_by_their_timeout_and_come_back() {
    use lb_user::agent::nat_sweep::{now_ns, sweep};
    if !require::root("idle_connections_expire_by_their_timeout_and_come_back") {
        return;
    }
    let n = net();
    let _in = Entered::new(&n.ns.name).expect("enter");
    let h = harness();
    let up0 = ifindex("up0");
    let run = |f: &Frame| {
        h.run_on(lb_common::names::PROG_LB, &checked(f.clone()).build(), up0)
            .expect("run")
    };
    // Three connections: TCP open, TCP closing (the client sent FIN), UDP.
    run(&Frame::tcp("192.0.2.7", 40000, "203.0.113.20", 80));
    run(&Frame::tcp("192.0.2.7", 40001, "203.0.113.20", 80));
    run(&Frame {
        tcp_flags: 0x11, // FIN, ACK
        ..Frame::tcp("192.0.2.7", 40001, "203.0.113.20", 80)
    });
    run(&Frame::udp("192.0.2.7", 5000, "203.0.113.20", 53));
    let pin = lb_user::maps::loader::layout_dir(h.pin_dir()).join(lb_common::names::NAT);
    let data = aya::maps::MapData::from_pin(&pin).expect("NAT pinned");
    let mut map: aya::maps::HashMap<_, lb_common::FlowKey, lb_common::nat::NatEntry> =
        aya::maps::Map::from_map_data(data)
            .expect("map")
            .try_into()
            .expect("hash map");
    let cfg = NatCfg::default();
    let mut cursor = None;
    let now = now_ns();
    let count = |m: &aya::maps::HashMap<_, _, _>| m.keys().count();
    assert_eq!(count(&map), 3);
    assert_eq!(
        sweep(&mut map, &cfg, &mut cursor, 100, now),
        (3, 0),
        "none idle yet"
    );
    // 200 s later: past TCP closing's 120 s only.
    let s = |secs: u64| now + secs * 1_000_000_000;
    assert_eq!(sweep(&mut map, &cfg, &mut cursor, 100, s(200)).1, 1);
    // 400 s: UDP's 300 s too; 1000 s: TCP's 900 s.
    assert_eq!(sweep(&mut map, &cfg, &mut cursor, 100, s(400)).1, 1);
    // A bounded round: one entry looked at, the next round goes on.
    assert_eq!(sweep(&mut map, &cfg, &mut cursor, 1, s(1000)), (1, 1));
    assert_eq!(count(&map), 0);
    // The backend's reply to an expired connection passes untouched...
    let reply = checked(Frame {
        tcp_flags: ACK,
        ..Frame::tcp("198.51.100.140", 8080, "192.0.2.7", 40000)
    });
    assert_eq!(run(&reply).0, XDP_PASS);
    // ...until the client's next packet, which the flow table still maps,
    // brings the way back again.
    run(&Frame {
        tcp_flags: ACK,
        ..Frame::tcp("192.0.2.7", 40000, "203.0.113.20", 80)
    });
    assert_eq!(run(&reply).0, XDP_TX);
}
