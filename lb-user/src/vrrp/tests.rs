//! Codec vectors (checksums computed independently, by hand, from the RFC
//! formula) and table-driven state machine scenarios for RFC 5798 §6.4.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use tokio::time::Instant;

use super::{
    codec::{self, Advert, Auth, DropReason, Expect, Version},
    state::{Action, Event, Machine, Params, State},
};

fn v4(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// RFC 1071 by the book, independent of codec::checksum: sum 16-bit words
/// into a u64, fold, complement.
fn reference_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    for pair in bytes.chunks(2) {
        let w = if pair.len() == 2 {
            (pair[0] as u64) << 8 | pair[1] as u64
        } else {
            (pair[0] as u64) << 8
        };
        sum += w;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[test]
fn v2_advert_matches_hand_built_bytes() {
    // VRID 51, priority 150, 1 address, simple password "secret", 1 s.
    let a = Advert {
        version: Version::V2,
        vrid: 51,
        priority: 150,
        interval_cs: 100,
        addrs: vec![v4("203.0.113.10")],
    };
    let got = codec::encode(
        &a,
        &Auth::pass("secret"),
        v4("198.51.100.5"),
        IpAddr::V4(codec::MCAST_V4),
        false,
    );
    let mut want = vec![
        0x21, 51, 150, 1, 1, 1, 0, 0, 203, 0, 113, 10, b's', b'e', b'c', b'r', b'e', b't', 0, 0,
    ];
    // RFC 3768 §5.3.8: over the VRRP message only.
    let c = reference_checksum(&want);
    want[6..8].copy_from_slice(&c.to_be_bytes());
    assert_eq!(got, want);
    let e = Expect {
        version: Version::V2,
        vrid: 51,
        auth: Auth::pass("secret"),
        v3_checksum_as_v2: false,
    };
    let back = codec::decode(
        &got,
        v4("198.51.100.5"),
        IpAddr::V4(codec::MCAST_V4),
        255,
        &e,
    );
    assert_eq!(back, Ok(a));
}

#[test]
fn v3_ipv4_checksum_covers_the_pseudo_header() {
    let a = Advert {
        version: Version::V3,
        vrid: 7,
        priority: 100,
        interval_cs: 100,
        addrs: vec![v4("203.0.113.10"), v4("203.0.113.11")],
    };
    let src = v4("198.51.100.6");
    let dst = IpAddr::V4(codec::MCAST_V4);
    let got = codec::encode(&a, &Auth::None, src, dst, false);
    let mut want = vec![
        0x31, 7, 100, 2, 0x00, 100, 0, 0, 203, 0, 113, 10, 203, 0, 113, 11,
    ];
    let mut ph = vec![198, 51, 100, 6, 224, 0, 0, 18, 0, 112, 0, want.len() as u8];
    ph.extend_from_slice(&want);
    let c = reference_checksum(&ph);
    want[6..8].copy_from_slice(&c.to_be_bytes());
    assert_eq!(got, want);
    // RFC 9568 / Cisco style: the same message without the pseudo-header.
    let plain = codec::encode(&a, &Auth::None, src, dst, true);
    let mut w2 = want.clone();
    w2[6..8].copy_from_slice(&[0, 0]);
    let c2 = reference_checksum(&w2);
    assert_eq!(&plain[6..8], &c2.to_be_bytes());
    let e = |as_v2| Expect {
        version: Version::V3,
        vrid: 7,
        auth: Auth::None,
        v3_checksum_as_v2: as_v2,
    };
    assert_eq!(codec::decode(&got, src, dst, 255, &e(false)), Ok(a.clone()));
    assert_eq!(
        codec::decode(&plain, src, dst, 255, &e(true)),
        Ok(a.clone())
    );
    // Each style rejects the other.
    assert_eq!(
        codec::decode(&got, src, dst, 255, &e(true)),
        Err(DropReason::Checksum)
    );
    // A unicast copy is checked against its own destination.
    assert_eq!(
        codec::decode(&got, src, v4("198.51.100.7"), 255, &e(false)),
        Err(DropReason::Checksum)
    );
}

#[test]
fn v3_ipv6_checksum_and_round_trip() {
    let vip: IpAddr = "2001:db8:f::10".parse().unwrap();
    let src: IpAddr = "fe80::1".parse().unwrap();
    let dst = IpAddr::V6(codec::MCAST_V6);
    let a = Advert {
        version: Version::V3,
        vrid: 9,
        priority: 200,
        interval_cs: 25,
        addrs: vec![vip],
    };
    let got = codec::encode(&a, &Auth::None, src, dst, false);
    let mut want = vec![0x31, 9, 200, 1, 0x00, 25, 0, 0];
    want.extend_from_slice(&"2001:db8:f::10".parse::<Ipv6Addr>().unwrap().octets());
    let mut ph = Vec::new();
    ph.extend_from_slice(&"fe80::1".parse::<Ipv6Addr>().unwrap().octets());
    ph.extend_from_slice(&codec::MCAST_V6.octets());
    ph.extend_from_slice(&(want.len() as u32).to_be_bytes());
    ph.extend_from_slice(&[0, 0, 0, 112]);
    ph.extend_from_slice(&want);
    let c = reference_checksum(&ph);
    want[6..8].copy_from_slice(&c.to_be_bytes());
    assert_eq!(got, want);
    let e = Expect {
        version: Version::V3,
        vrid: 9,
        auth: Auth::None,
        v3_checksum_as_v2: false,
    };
    assert_eq!(codec::decode(&got, src, dst, 255, &e), Ok(a));
}

#[test]
fn malformed_and_hostile_adverts_are_rejected_with_their_reason() {
    let src = v4("198.51.100.6");
    let dst = IpAddr::V4(codec::MCAST_V4);
    let a = Advert {
        version: Version::V2,
        vrid: 51,
        priority: 100,
        interval_cs: 100,
        addrs: vec![v4("203.0.113.10")],
    };
    let good = codec::encode(&a, &Auth::pass("pw"), src, dst, false);
    let e = Expect {
        version: Version::V2,
        vrid: 51,
        auth: Auth::pass("pw"),
        v3_checksum_as_v2: false,
    };
    let dec = |m: &[u8], ttl: u8, e: &Expect| codec::decode(m, src, dst, ttl, e);
    // Re-checksum a modified message so only the intended field is wrong.
    let fix = |mut m: Vec<u8>| {
        m[6] = 0;
        m[7] = 0;
        let c = reference_checksum(&m);
        m[6..8].copy_from_slice(&c.to_be_bytes());
        m
    };
    assert_eq!(dec(&good, 255, &e), Ok(a.clone()));
    assert_eq!(dec(&good, 254, &e), Err(DropReason::Ttl));
    let mut bad = good.clone();
    bad[7] ^= 1;
    assert_eq!(dec(&bad, 255, &e), Err(DropReason::Checksum));
    let other = Expect {
        vrid: 52,
        ..e.clone()
    };
    assert_eq!(dec(&good, 255, &other), Err(DropReason::Vrid));
    let wrong_pw = Expect {
        auth: Auth::pass("guess"),
        ..e.clone()
    };
    assert_eq!(dec(&good, 255, &wrong_pw), Err(DropReason::AuthMismatch));
    let no_auth = Expect {
        auth: Auth::None,
        ..e.clone()
    };
    assert_eq!(dec(&good, 255, &no_auth), Err(DropReason::AuthType));
    for cut in [0, 3, 7, 11, 15] {
        let r = dec(&good[..cut], 255, &e);
        assert!(
            matches!(r, Err(DropReason::Truncated | DropReason::AddrCount)),
            "cut at {cut}: {r:?}"
        );
    }
    let mut m = good.clone();
    m[0] = 0x41; // version 4
    assert_eq!(dec(&fix(m), 255, &e), Err(DropReason::Version));
    let mut m = good.clone();
    m[0] = 0x22; // type 2
    assert_eq!(dec(&fix(m), 255, &e), Err(DropReason::Type));
    let mut m = good.clone();
    m[3] = 3; // three addresses announced, one present
    assert_eq!(dec(&fix(m), 255, &e), Err(DropReason::AddrCount));
    let mut m = good.clone();
    m[3] = 0;
    assert_eq!(dec(&fix(m), 255, &e), Err(DropReason::AddrCount));
    let mut m = good.clone();
    m[5] = 0; // interval 0
    assert_eq!(dec(&fix(m), 255, &e), Err(DropReason::Interval));
    // A v3 packet where v2 is configured.
    let v3 = codec::encode(
        &Advert {
            version: Version::V3,
            ..a.clone()
        },
        &Auth::None,
        src,
        dst,
        false,
    );
    assert_eq!(dec(&v3, 255, &e), Err(DropReason::Version));
    // Every reason has a distinct name for the counters.
    let names: std::collections::BTreeSet<&str> =
        DropReason::ALL.iter().map(|r| r.name()).collect();
    assert_eq!(names.len(), DropReason::ALL.len());
}

// ---- state machine ----

const LOCAL: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 5);
const PEER_HI: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 9);
const PEER_LO: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);

fn params(priority: u8, preempt: bool) -> Params {
    Params {
        version: Version::V3,
        priority,
        advert_cs: 100,
        preempt,
        preempt_delay: Duration::ZERO,
        primary: IpAddr::V4(LOCAL),
    }
}

fn advert(from: Ipv4Addr, priority: u8) -> Event {
    Event::Advert {
        from: IpAddr::V4(from),
        priority,
        interval_cs: 100,
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Drive `m` through `(at_ms, event)` and return the state after each.
fn run(m: &mut Machine, t0: Instant, steps: &[(u64, Event)]) -> Vec<(State, Vec<Action>)> {
    steps
        .iter()
        .map(|(at, ev)| {
            let a = m.step(*ev, t0 + ms(*at));
            (m.state(), a)
        })
        .collect()
}

fn tr(from: State, to: State) -> Action {
    Action::Transition { from, to }
}

#[test]
fn timers_follow_rfc_5798_formulas() {
    let m = Machine::new(params(100, true));
    // Skew = (256 - 100) * 100 cs / 256 = 60.9375 cs.
    assert_eq!(m.skew(), Duration::from_micros(609_375));
    assert_eq!(m.master_down_interval(), Duration::from_micros(3_609_375));
    let owner = Machine::new(params(255, true));
    assert_eq!(owner.skew(), Duration::from_micros(3_906));
    let v2 = Machine::new(Params {
        version: Version::V2,
        ..params(100, true)
    });
    // RFC 3768: (256 - 100) / 256 s, independent of the interval.
    assert_eq!(v2.skew(), Duration::from_micros(609_375));
}

#[test]
fn startup_backup_then_master_when_nobody_advertises() {
    let t0 = Instant::now();
    let mut m = Machine::new(params(100, true));
    let r = run(&mut m, t0, &[(0, Event::Startup)]);
    assert_eq!(r[0], (State::Backup, vec![tr(State::Init, State::Backup)]));
    assert_eq!(m.deadline(), Some(t0 + Duration::from_micros(3_609_375)));
    // Too early: nothing.
    assert!(m.step(Event::Timer, t0 + ms(3000)).is_empty());
    let a = m.step(Event::Timer, t0 + ms(3610));
    assert_eq!(
        a,
        vec![
            Action::TakeVips,
            Action::SendAdvert { priority: 100 },
            tr(State::Backup, State::Master)
        ]
    );
    assert_eq!(m.deadline(), Some(t0 + ms(4610)));
    // Master adverts every interval.
    assert_eq!(
        m.step(Event::Timer, t0 + ms(4610)),
        vec![Action::SendAdvert { priority: 100 }]
    );
    assert_eq!(m.master(), Some(IpAddr::V4(LOCAL)));
}

#[test]
fn address_owner_is_master_at_once() {
    let t0 = Instant::now();
    let mut m = Machine::new(params(255, true));
    let a = m.step(Event::Startup, t0);
    assert_eq!(m.state(), State::Master);
    assert_eq!(a[0], Action::TakeVips);
    assert_eq!(a[1], Action::SendAdvert { priority: 255 });
}

#[test]
fn backup_follows_a_higher_master_and_its_interval() {
    let t0 = Instant::now();
    let mut m = Machine::new(params(100, true));
    m.step(Event::Startup, t0);
    let r = run(
        &mut m,
        t0,
        &[(
            500,
            Event::Advert {
                from: IpAddr::V4(PEER_HI),
                priority: 150,
                interval_cs: 50,
            },
        )],
    );
    assert_eq!(r[0], (State::Backup, vec![]));
    // Master_Down_Interval now from the master's 50 cs: 3 x 0.5 + skew.
    let down = 3 * ms(500) + Duration::from_micros(156 * 500_000 / 256);
    assert_eq!(m.deadline(), Some(t0 + ms(500) + down));
    assert_eq!(m.master(), Some(IpAddr::V4(PEER_HI)));
}

#[test]
fn preempt_takes_over_from_a_lower_master_nopreempt_does_not() {
    let t0 = Instant::now();
    // preempt: lower adverts are discarded, the down timer fires.
    let mut m = Machine::new(params(150, true));
    m.step(Event::Startup, t0);
    m.step(advert(PEER_LO, 100), t0 + ms(100));
    let first_deadline = m.deadline().unwrap();
    m.step(advert(PEER_LO, 100), t0 + ms(1100));
    assert_eq!(m.deadline(), Some(first_deadline), "discarded, not reset");
    m.step(Event::Timer, first_deadline);
    assert_eq!(m.state(), State::Master);

    // nopreempt: the lower master keeps the role.
    let mut m = Machine::new(params(150, false));
    m.step(Event::Startup, t0);
    for i in 0..10 {
        m.step(advert(PEER_LO, 100), t0 + ms(100 + i * 1000));
        m.step(Event::Timer, t0 + ms(150 + i * 1000));
    }
    assert_eq!(m.state(), State::Backup);
    assert_eq!(m.master(), Some(IpAddr::V4(PEER_LO)));
}

#[test]
fn preempt_delay_holds_off_preemption() {
    let t0 = Instant::now();
    let mut m = Machine::new(Params {
        preempt_delay: Duration::from_secs(5),
        ..params(150, true)
    });
    m.step(Event::Startup, t0);
    // A lower master advertises every second; within 5 s it is accepted.
    let mut became = None;
    for i in 0..20u64 {
        let now = t0 + ms(100 + i * 1000);
        if m.deadline().is_some_and(|d| d <= now) {
            m.step(Event::Timer, m.deadline().unwrap());
        }
        if m.state() == State::Master {
            became = Some(now - t0);
            break;
        }
        m.step(advert(PEER_LO, 100), now);
    }
    let became = became.expect("preempts eventually");
    // Not before the delay; after it, within one Master_Down_Interval.
    assert!(became >= Duration::from_secs(5), "{became:?}");
    assert!(
        became <= Duration::from_secs(5) + ms(3200) + ms(1000),
        "{became:?}"
    );
}

#[test]
fn master_yields_to_higher_priority_and_to_higher_address_on_a_tie() {
    let t0 = Instant::now();
    let mut m = Machine::new(params(100, true));
    m.step(Event::Startup, t0);
    m.step(Event::Timer, t0 + ms(4000));
    assert_eq!(m.state(), State::Master);
    // Lower priority: discarded.
    assert!(m.step(advert(PEER_HI, 50), t0 + ms(4100)).is_empty());
    // Equal priority, lower address: we stay.
    assert!(m.step(advert(PEER_LO, 100), t0 + ms(4200)).is_empty());
    assert_eq!(m.state(), State::Master);
    // Equal priority, higher address: we yield.
    let a = m.step(advert(PEER_HI, 100), t0 + ms(4300));
    assert_eq!(
        a,
        vec![Action::RemoveVips, tr(State::Master, State::Backup)]
    );
    // And to a higher priority.
    let mut m = Machine::new(params(100, true));
    m.step(Event::Startup, t0);
    m.step(Event::Timer, t0 + ms(4000));
    m.step(advert(PEER_LO, 200), t0 + ms(4100));
    assert_eq!(m.state(), State::Backup);
    assert_eq!(m.master(), Some(IpAddr::V4(PEER_LO)));
}

#[test]
fn priority_zero_means_take_over_after_skew_time() {
    let t0 = Instant::now();
    let mut m = Machine::new(params(100, true));
    m.step(Event::Startup, t0);
    m.step(advert(PEER_HI, 150), t0 + ms(100));
    m.step(advert(PEER_HI, 0), t0 + ms(1000));
    assert_eq!(m.deadline(), Some(t0 + ms(1000) + m.skew()));
    m.step(Event::Timer, t0 + ms(1000) + m.skew());
    assert_eq!(m.state(), State::Master);
    // A master hearing priority 0 re-asserts at once.
    assert_eq!(
        m.step(advert(PEER_HI, 0), t0 + ms(2000)),
        vec![Action::SendAdvert { priority: 100 }]
    );
}

#[test]
fn shutdown_from_master_sends_priority_zero_and_releases_the_vips() {
    let t0 = Instant::now();
    let mut m = Machine::new(params(100, true));
    m.step(Event::Startup, t0);
    m.step(Event::Timer, t0 + ms(4000));
    let a = m.step(Event::Shutdown, t0 + ms(5000));
    assert_eq!(
        a,
        vec![
            Action::SendAdvert { priority: 0 },
            Action::RemoveVips,
            tr(State::Master, State::Init)
        ]
    );
    assert_eq!(m.deadline(), None);
    // From backup: just stop.
    let mut b = Machine::new(params(100, true));
    b.step(Event::Startup, t0);
    assert_eq!(
        b.step(Event::Shutdown, t0),
        vec![tr(State::Backup, State::Init)]
    );
}

#[test]
fn fault_gives_up_mastership_and_recovery_starts_as_backup() {
    let t0 = Instant::now();
    let mut m = Machine::new(params(100, true));
    m.step(Event::Startup, t0);
    m.step(Event::Timer, t0 + ms(4000));
    let a = m.step(Event::Fault(true), t0 + ms(4500));
    assert_eq!(
        a,
        vec![
            Action::SendAdvert { priority: 0 },
            Action::RemoveVips,
            tr(State::Master, State::Fault)
        ]
    );
    // Adverts and timers mean nothing in FAULT.
    assert!(m.step(advert(PEER_LO, 50), t0 + ms(5000)).is_empty());
    assert!(m.step(Event::Timer, t0 + ms(9000)).is_empty());
    let a = m.step(Event::Fault(false), t0 + ms(10_000));
    assert_eq!(a, vec![tr(State::Fault, State::Backup)]);
}

#[test]
fn lowered_priority_is_advertised_so_the_peer_can_preempt() {
    let t0 = Instant::now();
    let mut m = Machine::new(params(150, true));
    m.step(Event::Startup, t0);
    m.step(Event::Timer, t0 + ms(4000));
    assert_eq!(
        m.step(Event::Priority(50), t0 + ms(4100)),
        vec![Action::SendAdvert { priority: 50 }]
    );
    assert_eq!(m.priority(), 50);
    // The peer at 100 then preempts, and we yield to its advert.
    m.step(advert(PEER_LO, 100), t0 + ms(4200));
    assert_eq!(m.state(), State::Backup);
    // Same priority again: nothing to send.
    assert!(m.step(Event::Priority(50), t0 + ms(4300)).is_empty());
}
