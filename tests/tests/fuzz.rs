//! The XDP program against hostile frames, through BPF_PROG_TEST_RUN with a
//! realistic config: every truncation and single-field mutation of a set of
//! valid VIP frames, then random frames (200,000 by default; `cargo xtask
//! fuzz --frames N` runs more). Checked as properties, not snapshots,
//! against a reference parser written here from the rules in DESIGN.md:
//! nothing passes changed; a forwarded frame differs only in its MACs and
//! goes to a backend of the service the reference finds, for a well-formed
//! packet; nothing aborts; every verdict is the reference's; the program's
//! counters equal this test's tally, reason by reason.

use std::{collections::BTreeMap, net::IpAddr, time::Instant};

use lb_common::{Forward, HashFields, Reason, Scheduler};
use lb_tests::{
    bpf::{Harness, TEST_SIZES},
    frame::{ACK, Frame, LB_MAC},
    require,
};
use lb_user::{
    addr,
    plan::{DesiredBackend, DesiredService},
};

const XDP_ABORTED: u32 = 0;
const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const LO: u32 = 1;
const DEFAULT_FRAMES: u64 = 200_000;

fn mac(i: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, 0x10, i]
}

/// The config: (service, backends' MACs, usable, standby).
struct Svc {
    name: &'static str,
    macs: Vec<[u8; 6]>,
    usable: bool,
    standby: bool,
}

fn services() -> Vec<Svc> {
    let s = |name, macs: &[u8], usable, standby| Svc {
        name,
        macs: macs.iter().map(|&i| mac(i)).collect(),
        usable,
        standby,
    };
    vec![
        s("203.0.113.10:80/tcp", &[1, 2, 3], true, false),
        s("203.0.113.10:53/udp", &[4], true, false),
        s("[2001:db8:f::10]:80/tcp", &[6, 7], true, false),
        s("[2001:db8:f::10]:53/udp", &[8], true, false),
        s("203.0.113.20:0/tcp", &[1], true, false),
        s("203.0.113.20:0/udp", &[4], true, false),
        s("203.0.113.11:80/tcp", &[9], false, false),
        s("203.0.113.30:80/tcp", &[1], true, true),
    ]
}

fn desired(svcs: &[Svc]) -> Vec<DesiredService> {
    svcs.iter()
        .map(|s| {
            let key = addr::parse_service_name(s.name).unwrap();
            let v6 = key.family == lb_common::FAMILY_V6;
            DesiredService {
                key,
                scheduler: Scheduler::Maglev,
                forward: Forward::Dr,
                hash: HashFields::FiveTuple,
                virtual_nodes: 160,
                standby: s.standby,
                backends: s
                    .macs
                    .iter()
                    .map(|m| DesiredBackend {
                        port: 0,
                        addr: if v6 {
                            format!("2001:db8:1::{:x}", 0x10 + m[5]).parse().unwrap()
                        } else {
                            format!("198.51.100.{}", 10 + m[5]).parse().unwrap()
                        },
                        weight: 1 + m[5] as u32 % 3,
                        effective: (1 + m[5] as u32 % 3) * 1000,
                        ifindex: LO,
                        src_mac: LB_MAC,
                        // The unusable service's backend has no MAC yet.
                        mac: s.usable.then_some(*m),
                        via: None,
                        check_port: None,
                        healthy: true,
                        warming: false,
                        rtt_ms: 0,
                    })
                    .collect(),
            }
        })
        .collect()
}

/// What the reference expects of a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Want {
    Pass(Reason),
    Drop,
    /// Forward to one of these MACs.
    Forward(Vec<[u8; 6]>),
}

fn be16(f: &[u8], at: usize) -> usize {
    u16::from_be_bytes([f[at], f[at + 1]]) as usize
}

/// IPv6 extension headers (RFC 8200 section 4, IANA's list).
const IPV6_EXT: [u8; 9] = [0, 43, 44, 50, 51, 60, 135, 139, 140];

/// The reference: what DESIGN.md says the data plane does with `f`.
fn reference(f: &[u8], svcs: &[Svc]) -> Want {
    use Reason::*;
    let len = f.len();
    if len < 14 {
        return Want::Pass(PassTruncated);
    }
    if f[..6] != LB_MAC {
        return Want::Pass(PassNotOurs);
    }
    let (mut ethertype, mut l3) = (be16(f, 12), 14);
    if ethertype == 0x8100 {
        if len < 18 {
            return Want::Pass(PassTruncated);
        }
        ethertype = be16(f, 16);
        l3 = 18;
    }
    let (proto, l4, l4_len, dst): (u8, usize, usize, IpAddr) = match ethertype {
        0x0800 => {
            if len < l3 + 20 {
                return Want::Pass(PassTruncated);
            }
            let ihl = (f[l3] & 0x0f) as usize * 4;
            let total = be16(f, l3 + 2);
            if f[l3] >> 4 != 4 || ihl < 20 || total < ihl {
                return Want::Pass(PassMalformed);
            }
            if l3 + total > len {
                return Want::Pass(PassTruncated);
            }
            if be16(f, l3 + 6) & 0x3fff != 0 {
                return Want::Pass(PassFragment);
            }
            let a = |at: usize| IpAddr::from(<[u8; 4]>::try_from(&f[at..at + 4]).unwrap());
            (f[l3 + 9], l3 + ihl, total - ihl, a(l3 + 16))
        }
        0x86dd => {
            if len < l3 + 40 {
                return Want::Pass(PassTruncated);
            }
            if f[l3] >> 4 != 6 {
                return Want::Pass(PassMalformed);
            }
            let payload = be16(f, l3 + 4);
            if l3 + 40 + payload > len {
                return Want::Pass(PassTruncated);
            }
            if IPV6_EXT.contains(&f[l3 + 6]) {
                return Want::Pass(PassIpv6Ext);
            }
            let a = |at: usize| IpAddr::from(<[u8; 16]>::try_from(&f[at..at + 16]).unwrap());
            (f[l3 + 6], l3 + 40, payload, a(l3 + 24))
        }
        _ => return Want::Pass(PassNotIp),
    };
    let proto_name = match proto {
        6 => {
            if l4_len < 20 {
                return Want::Pass(PassMalformed);
            }
            let doff = (f[l4 + 12] >> 4) as usize * 4;
            if doff < 20 || doff > l4_len {
                return Want::Pass(PassMalformed);
            }
            "tcp"
        }
        17 => {
            if l4_len < 8 {
                return Want::Pass(PassMalformed);
            }
            let ulen = be16(f, l4 + 4);
            if !(8..=l4_len).contains(&ulen) {
                return Want::Pass(PassMalformed);
            }
            "udp"
        }
        _ => return Want::Pass(PassUnknownL4),
    };
    let dport = be16(f, l4 + 2) as u16;
    let find = |port: u16| {
        let name = format!("{}/{proto_name}", addr::socket(dst, port));
        svcs.iter().find(|s| s.name == name)
    };
    let Some(s) = find(dport).or_else(|| find(0)) else {
        return Want::Pass(PassNotVip);
    };
    if s.standby {
        Want::Pass(PassStandby)
    } else if !s.usable {
        Want::Drop
    } else {
        Want::Forward(s.macs.clone())
    }
}

/// The valid VIP frames every mutation starts from.
fn seeds() -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    for vlan in [None, Some(100)] {
        for f in [
            Frame::tcp("198.51.100.2", 40000, "203.0.113.10", 80),
            Frame {
                tcp_flags: ACK,
                ..Frame::tcp("198.51.100.2", 40001, "203.0.113.10", 80)
            },
            Frame {
                ip_option_words: 2,
                ..Frame::tcp("198.51.100.2", 40002, "203.0.113.10", 80)
            },
            Frame::udp("198.51.100.2", 5353, "203.0.113.10", 53),
            Frame::tcp("2001:db8:1::2", 40000, "2001:db8:f::10", 80),
            Frame::udp("2001:db8:1::2", 5353, "2001:db8:f::10", 53),
            Frame::tcp("198.51.100.2", 40003, "203.0.113.20", 8443),
            Frame::udp("198.51.100.2", 5354, "203.0.113.20", 4500),
        ] {
            v.push(Frame { vlan, ..f }.build());
        }
    }
    v
}

/// xorshift64*: deterministic, seeded, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Every truncation and every single-field mutation (each byte to its
/// boundary and neighbouring values, each 16-bit word likewise) of each
/// seed.
fn mutations(seeds: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    for s in seeds {
        for n in 0..s.len() {
            v.push(s[..n].to_vec());
        }
        for i in 0..s.len() {
            let b = s[i];
            for x in [
                0,
                0xff,
                b ^ 1,
                b ^ 0x80,
                b.wrapping_add(1),
                b.wrapping_sub(1),
            ] {
                if x != b {
                    let mut m = s.clone();
                    m[i] = x;
                    v.push(m);
                }
            }
        }
        for i in 0..s.len() - 1 {
            let w = u16::from_be_bytes([s[i], s[i + 1]]);
            for x in [
                0u16,
                1,
                7,
                8,
                19,
                20,
                0xffff,
                w.wrapping_add(1),
                w.wrapping_sub(1),
            ] {
                if x != w {
                    let mut m = s.clone();
                    m[i..i + 2].copy_from_slice(&x.to_be_bytes());
                    v.push(m);
                }
            }
        }
        // Padding after a valid packet stays valid.
        let mut padded = s.clone();
        padded.resize(s.len().max(60) + 4, 0xa5);
        v.push(padded);
    }
    v
}

/// A random frame: a seed with a few random bytes changed and a random
/// length, or random bytes (sent to our MAC half the time).
fn random_frame(r: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    if r.below(4) == 0 {
        let mut f: Vec<u8> = (0..r.below(130)).map(|_| r.next() as u8).collect();
        if f.len() >= 6 && r.below(2) == 0 {
            f[..6].copy_from_slice(&LB_MAC);
        }
        return f;
    }
    let mut f = seeds[r.below(seeds.len())].clone();
    for _ in 0..1 + r.below(3) {
        let i = r.below(f.len());
        f[i] = r.next() as u8;
    }
    match r.below(4) {
        0 => f.truncate(r.below(f.len() + 1)),
        1 => f.resize(f.len() + r.below(40), r.next() as u8),
        _ => {}
    }
    // Fresh 5-tuples keep the flow table from remembering every flow.
    if f.len() > 40 && r.below(2) == 0 {
        let at = 26 + r.below(12);
        f[at] = r.next() as u8;
    }
    f
}

/// Run every frame; return the failures (at most 20 kept) and the
/// reference's tally of reasons.
fn check(
    h: &Harness,
    svcs: &[Svc],
    frames: impl Iterator<Item = Vec<u8>>,
    tally: &mut BTreeMap<&'static str, u64>,
    failures: &mut Vec<String>,
) -> u64 {
    let mut n = 0;
    // BPF_PROG_TEST_RUN refuses frames shorter than an Ethernet header, as
    // no driver hands XDP one.
    for f in frames.filter(|f| f.len() >= 14) {
        n += 1;
        let want = reference(&f, svcs);
        let (verdict, out) = h.run(lb_common::names::PROG_LB, &f).unwrap();
        let mut fail = |why: String| {
            if failures.len() < 20 {
                failures.push(format!("{why}\n  frame {f:02x?}"));
            }
        };
        if verdict == XDP_ABORTED {
            fail("XDP_ABORTED".into());
        }
        match (&want, verdict) {
            (Want::Pass(r), XDP_PASS) => {
                *tally.entry(r.name()).or_default() += 1;
                if out != f {
                    fail(format!("passed changed ({r:?})"));
                }
            }
            (Want::Drop, XDP_DROP) => {
                *tally.entry(Reason::DropNoBackend.name()).or_default() += 1;
                if out != f {
                    fail("dropped frame changed".into());
                }
            }
            (Want::Forward(macs), XDP_TX) => {
                *tally.entry("forwarded").or_default() += 1;
                let to: [u8; 6] = out[..6].try_into().unwrap();
                if out.len() != f.len() || out[6..12] != LB_MAC || out[12..] != f[12..] {
                    fail("forwarded frame changed beyond its MACs".into());
                } else if !macs.contains(&to) {
                    fail(format!(
                        "forwarded to {to:02x?}, not a backend of its service"
                    ));
                }
            }
            _ => fail(format!("verdict {verdict}, reference says {want:?}")),
        }
    }
    n
}

#[test]
fn hostile_frames_are_passed_untouched_or_forwarded_well_formed() {
    if !require::root("hostile_frames_are_passed_untouched_or_forwarded_well_formed") {
        return;
    }
    let frames: u64 = std::env::var("FUZZ_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_FRAMES);
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_1b0a_7c3d_91e5);
    let svcs = services();
    let mut h = Harness::new(TEST_SIZES).unwrap();
    h.dp.apply(&desired(&svcs)).unwrap();
    let seeds = seeds();
    // The seeds themselves are what the reference calls forwarded.
    for s in &seeds {
        assert!(
            matches!(reference(s, &svcs), Want::Forward(_)),
            "seed not valid: {s:02x?}"
        );
    }
    // The mutations run first: the flows their valid frames open are then
    // remembered, as on a live balancer, when random frames hit them.
    let before = h.reasons().unwrap();
    let t0 = Instant::now();
    let mut tally = BTreeMap::new();
    let mut failures = Vec::new();
    let mutated = check(
        &h,
        &svcs,
        mutations(&seeds).into_iter(),
        &mut tally,
        &mut failures,
    );
    let mut r = Rng(seed | 1);
    // Frames shorter than an Ethernet header cannot be run; draw until
    // `frames` could be.
    let random = check(
        &h,
        &svcs,
        std::iter::repeat_with(|| random_frame(&mut r, &seeds))
            .filter(|f| f.len() >= 14)
            .take(frames as usize),
        &mut tally,
        &mut failures,
    );
    let after = h.reasons().unwrap();
    println!(
        "fuzz: {mutated} mutations + {random} random frames (seed {seed:#x}) in {:?}",
        t0.elapsed()
    );
    println!("fuzz: reference tally {tally:?}");
    if !failures.is_empty() {
        println!("fuzz: rerun with FUZZ_SEED={seed} (cargo xtask fuzz --seed {seed})");
    }
    assert!(
        failures.is_empty(),
        "{} failure(s), first ones:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The program's counters, reason by reason, equal the reference's tally.
    let moved = |r: Reason| after[r as usize] - before[r as usize];
    for r in Reason::ALL {
        let want = match r {
            Reason::FwdFlowHit | Reason::FwdFlowMiss => continue,
            // Side counts: no one drains this harness's sync ring.
            r if !r.verdict() => continue,
            _ => tally.get(r.name()).copied().unwrap_or(0),
        };
        assert_eq!(moved(r), want, "counter {}", r.name());
    }
    assert_eq!(
        moved(Reason::FwdFlowHit) + moved(Reason::FwdFlowMiss),
        tally.get("forwarded").copied().unwrap_or(0),
        "forwarded counters"
    );
    assert!(random == frames && mutated > 10_000);
}
