//! `lb drain` (SIGUSR1): the routes are withdrawn; the agent keeps
//! forwarding what still arrives (flows the router had sent here, packets
//! in flight) until no VIP packet has come for `drain_idle`, or
//! `drain_timeout` has passed, and then stops. The flow table never
//! empties by itself (an LRU without expiry), so the packet counters are
//! what tells the traffic has gone.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use crate::maps::Pinned;

/// How often the counters are read while draining.
pub const TICK: Duration = Duration::from_millis(100);

pub struct Drain {
    pins: Option<Pinned>,
    idle: Duration,
    deadline: Instant,
    packets: u64,
    last_packet: Instant,
    /// When the counters are read next.
    pub next: Instant,
}

impl Drain {
    pub fn start(layout_dir: &Path, idle: Duration, timeout: Duration) -> Drain {
        let pins = Pinned::open(layout_dir)
            .inspect_err(|e| tracing::warn!(error = %e, "draining without the packet counters: stopping at drain_timeout"))
            .ok();
        let now = Instant::now();
        let packets = pins.as_ref().map_or(0, vip_packets);
        Drain {
            pins,
            idle,
            deadline: now + timeout,
            packets,
            last_packet: now,
            next: now + TICK,
        }
    }

    /// Why the drain is over, if it is.
    pub fn done(&mut self, now: Instant) -> Option<&'static str> {
        self.next = now + TICK;
        if let Some(p) = &self.pins {
            let n = vip_packets(p);
            if n != self.packets {
                self.packets = n;
                self.last_packet = now;
            }
            if now.duration_since(self.last_packet) >= self.idle {
                return Some("no VIP packet for drain_idle");
            }
        }
        (now >= self.deadline).then_some("drain_timeout reached")
    }
}

/// Packets forwarded for every service, all CPUs.
fn vip_packets(p: &Pinned) -> u64 {
    p.services()
        .map(|s| s.iter().map(|(_, m)| p.service_stats(m.id).packets).sum())
        .unwrap_or(0)
}
