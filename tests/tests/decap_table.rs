//! The backend's decapsulation program through BPF_PROG_TEST_RUN: every
//! encapsulation the balancer sends comes out as the exact inner frame;
//! anything else (other inner destinations, malformed outer or inner
//! headers, plain traffic, another UDP port) passes untouched, each counted.

use std::net::IpAddr;

use aya::{
    Ebpf,
    maps::{MapData, PerCpuArray},
    programs::{TestRun, TestRunOptions, Xdp},
};
use lb_common::{
    decap::{DECAP_REASON_COUNT, DecapReason},
    names,
};
use lb_tests::{
    bpf::unique_pin_dir,
    frame::{Frame, Outer, encapsulate},
    require,
};
use lb_user::realserver::decap;

const XDP_PASS: u32 = 2;
const GUE_PORT: u16 = 6080;
const BACKEND_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x21];
const ROUTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

struct Decap {
    ebpf: Ebpf,
    pin_dir: std::path::PathBuf,
}

impl Decap {
    fn new() -> Decap {
        let pin_dir = unique_pin_dir("decap");
        let vips: Vec<IpAddr> = vec![
            "203.0.113.10".parse().unwrap(),
            "2001:db8:f::10".parse().unwrap(),
        ];
        let loaded = decap::load(&pin_dir, &vips, GUE_PORT).and_then(|mut ebpf| {
            let p: &mut Xdp = ebpf
                .program_mut(names::PROG_DECAP)
                .ok_or_else(|| anyhow::anyhow!("no decap program"))?
                .try_into()?;
            p.load()?;
            Ok(ebpf)
        });
        match loaded {
            Ok(ebpf) => Decap { ebpf, pin_dir },
            Err(e) => {
                // Its maps were pinned before the program failed.
                decap::down(&pin_dir);
                panic!("the decap program loads and passes the verifier: {e:#}");
            }
        }
    }

    fn run(&self, frame: &[u8]) -> (u32, Vec<u8>) {
        let p: &Xdp = self
            .ebpf
            .program(names::PROG_DECAP)
            .unwrap()
            .try_into()
            .unwrap();
        let mut out = vec![0u8; frame.len() + 256];
        let r = p
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ..Default::default()
            })
            .expect("test run");
        out.truncate(r.data_size_out as usize);
        (r.return_value, out)
    }

    fn counts(&self) -> [u64; DECAP_REASON_COUNT as usize] {
        let m: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(self.ebpf.map(names::DECAP_STATS).unwrap()).unwrap();
        let mut out = [0; DECAP_REASON_COUNT as usize];
        for r in DecapReason::ALL {
            out[r as usize] = m.get(&(r as u32), 0).unwrap().iter().sum();
        }
        out
    }
}

impl Drop for Decap {
    fn drop(&mut self) {
        decap::down(&self.pin_dir);
    }
}

fn outer(src: &str, dst: &str, gue: Option<u16>) -> Outer {
    Outer {
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        gue: gue.map(|p| (0xc123, p)),
        flow_label: 0x12345,
        dst_mac: BACKEND_MAC,
        src_mac: ROUTER_MAC,
    }
}

/// The inner frame as the backend's stack should see it: the outer frame's
/// MACs (and tag) in front of the inner IP packet.
fn inner_frame(f: &Frame) -> Vec<u8> {
    let mut b = f.build();
    b[..6].copy_from_slice(&BACKEND_MAC);
    b[6..12].copy_from_slice(&ROUTER_MAC);
    b
}

#[test]
fn every_encapsulation_comes_out_as_the_exact_inner_frame() {
    if !require::root("every_encapsulation_comes_out_as_the_exact_inner_frame") {
        return;
    }
    let d = Decap::new();
    let tcp4 = Frame::tcp("192.0.2.7", 40000, "203.0.113.10", 80);
    let tcp6 = Frame::tcp("2001:db8:c::7", 40000, "2001:db8:f::10", 80);
    let frag4 = Frame {
        frag: 0x2000, // MF: the kernel reassembles the inner packet
        ..Frame::udp("192.0.2.7", 5353, "203.0.113.10", 53)
    };
    let cases: Vec<(&str, Frame, Outer)> = vec![
        (
            "ipip",
            tcp4.clone(),
            outer("198.51.100.2", "198.51.100.140", None),
        ),
        (
            "ip6ip6",
            tcp6.clone(),
            outer("2001:db8:1::2", "2001:db8:2::140", None),
        ),
        (
            "4in6",
            tcp4.clone(),
            outer("2001:db8:1::2", "2001:db8:2::140", None),
        ),
        (
            "gue v4",
            tcp4.clone(),
            outer("198.51.100.2", "198.51.100.140", Some(GUE_PORT)),
        ),
        (
            "gue v6",
            tcp6.clone(),
            outer("2001:db8:1::2", "2001:db8:2::140", Some(GUE_PORT)),
        ),
        (
            "gue 4in6",
            tcp4.clone(),
            outer("2001:db8:1::2", "2001:db8:2::140", Some(GUE_PORT)),
        ),
        (
            "ipip 802.1Q",
            Frame {
                vlan: Some(7),
                ..tcp4.clone()
            },
            outer("198.51.100.2", "198.51.100.140", None),
        ),
        (
            "gue v6 802.1Q",
            Frame {
                vlan: Some(9),
                ..tcp6.clone()
            },
            outer("2001:db8:1::2", "2001:db8:2::140", Some(GUE_PORT)),
        ),
        (
            "ipip, inner IP options",
            Frame {
                ip_option_words: 2,
                ..tcp4.clone()
            },
            outer("198.51.100.2", "198.51.100.140", None),
        ),
        (
            "ipip, inner fragment",
            frag4,
            outer("198.51.100.2", "198.51.100.140", None),
        ),
    ];
    let mut n = 0;
    for (name, f, o) in cases {
        let (v, out) = d.run(&encapsulate(&f.build(), &o));
        assert_eq!(v, XDP_PASS, "{name}");
        assert_eq!(
            out,
            inner_frame(&f),
            "{name}: the inner frame, byte for byte"
        );
        n += 1;
        assert_eq!(
            d.counts()[DecapReason::Decapsulated as usize],
            n,
            "{name}: counted"
        );
    }
}

#[test]
fn everything_else_passes_untouched() {
    if !require::root("everything_else_passes_untouched") {
        return;
    }
    let d = Decap::new();
    let tcp4 = Frame::tcp("192.0.2.7", 40000, "203.0.113.10", 80);
    let other_vip = Frame::tcp("192.0.2.7", 40000, "203.0.113.99", 80);
    let good = encapsulate(
        &tcp4.build(),
        &outer("198.51.100.2", "198.51.100.140", None),
    );
    let mut truncated_inner = good.clone();
    truncated_inner.truncate(good.len() - 10);
    // The outer IPv4 header claims more than the frame holds.
    let mut long_outer = good.clone();
    long_outer[16..18].copy_from_slice(&2000u16.to_be_bytes());
    // The inner header claims IHL 4.
    let mut bad_inner = good.clone();
    bad_inner[34] = 0x44;
    let mut gue_variant0 = encapsulate(
        &tcp4.build(),
        &outer("198.51.100.2", "198.51.100.140", Some(GUE_PORT)),
    );
    gue_variant0[42] = 0x00; // a GUE header, not direct IP
    let cases: Vec<(&str, Vec<u8>, DecapReason)> = vec![
        (
            "plain TCP to the VIP",
            tcp4.build(),
            DecapReason::PassNotTunnel,
        ),
        (
            "plain IPv6",
            Frame::tcp("2001:db8:c::7", 1, "2001:db8:f::10", 80).build(),
            DecapReason::PassNotTunnel,
        ),
        (
            "ARP",
            lb_tests::frame::arp_request(),
            DecapReason::PassNotTunnel,
        ),
        (
            "UDP to another port",
            encapsulate(
                &tcp4.build(),
                &outer("198.51.100.2", "198.51.100.140", Some(4789)),
            ),
            DecapReason::PassNotTunnel,
        ),
        ("GUE variant 0", gue_variant0, DecapReason::PassNotTunnel),
        (
            "inner destination is no VIP",
            encapsulate(
                &other_vip.build(),
                &outer("198.51.100.2", "198.51.100.140", None),
            ),
            DecapReason::PassNotVip,
        ),
        (
            "IPv6 inner destination is no VIP",
            encapsulate(
                &Frame::tcp("2001:db8:c::7", 1, "2001:db8:f::99", 80).build(),
                &outer("2001:db8:1::2", "2001:db8:2::140", None),
            ),
            DecapReason::PassNotVip,
        ),
        (
            "inner packet cut short",
            truncated_inner,
            DecapReason::PassMalformed,
        ),
        (
            "outer length past the frame",
            long_outer,
            DecapReason::PassMalformed,
        ),
        ("inner IHL below 5", bad_inner, DecapReason::PassMalformed),
        (
            "an IPv4 EtherType and no header",
            good[..14].to_vec(),
            DecapReason::PassMalformed,
        ),
    ];
    for (name, input, why) in cases {
        let before = d.counts();
        let (v, out) = d.run(&input);
        assert_eq!((v, &out), (XDP_PASS, &input), "{name}: passed untouched");
        let after = d.counts();
        assert_eq!(
            after[why as usize],
            before[why as usize] + 1,
            "{name}: counted as {}",
            why.name()
        );
        assert_eq!(
            after[DecapReason::Decapsulated as usize],
            0,
            "{name}: nothing decapsulated"
        );
    }
}
