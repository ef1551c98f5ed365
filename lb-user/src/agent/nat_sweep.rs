//! NAT connection expiry: the XDP program stamps each reverse entry with
//! the time of the connection's last packet and marks it closing at a FIN
//! or RST; this thread deletes the entries idle longer than their timeout
//! (IPVS's three: TCP, TCP closing, UDP), so full-NAT's ports come back and
//! the table holds live connections. Each round walks a bounded number of
//! entries from where the last stopped: the work per second is fixed
//! whatever the table's size.

use std::{
    os::fd::{AsFd, AsRawFd},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use aya::maps::{HashMap, IterableMap, MapData};
use lb_common::{FlowKey, nat::NAT_CLOSING, nat::NatEntry};

use crate::{config::NatCfg, maps::elem::next_key};

/// Entries looked at per round, and how often rounds run.
const BATCH: usize = 65_536;
const ROUND: Duration = Duration::from_secs(1);

pub struct Sweeper {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Sweeper {
    pub fn start(mut map: HashMap<MapData, FlowKey, NatEntry>, cfg: NatCfg) -> Sweeper {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = thread::Builder::new()
            .name("nat-sweep".into())
            .spawn(move || {
                let mut cursor = None;
                while !s.load(Ordering::Relaxed) {
                    let (seen, gone) = sweep(&mut map, &cfg, &mut cursor, BATCH, now_ns());
                    if gone > 0 {
                        tracing::debug!(seen, expired = gone, "NAT connections swept");
                    }
                    thread::sleep(ROUND);
                }
            })
            .expect("spawning the NAT sweeper");
        Sweeper {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// CLOCK_MONOTONIC in ns: bpf_ktime_get_ns's clock.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Whether an entry last seen at `e.last_seen_ns` has expired at `now`.
pub fn expired(e: &NatEntry, proto: u8, cfg: &NatCfg, now: u64) -> bool {
    let idle = now.saturating_sub(e.last_seen_ns);
    idle > cfg.timeout(proto, e.flags & NAT_CLOSING != 0).as_nanos() as u64
}

/// One round: up to `batch` entries after `cursor` (None: from the start),
/// the expired deleted. Returns (looked at, deleted); `cursor` is where the
/// next round starts.
pub fn sweep(
    map: &mut HashMap<MapData, FlowKey, NatEntry>,
    cfg: &NatCfg,
    cursor: &mut Option<FlowKey>,
    batch: usize,
    now: u64,
) -> (usize, usize) {
    let fd = map.map().fd().as_fd().as_raw_fd();
    let (mut seen, mut gone) = (0, 0);
    let mut doomed = Vec::new();
    while seen < batch {
        // From the cursor: aya's iterators start over from the first key.
        let mut key = FlowKey::default();
        let after = cursor.as_ref().map(bytemuck::bytes_of);
        // An error (none expected) ends the walk as the last key does.
        if !next_key(fd, after, bytemuck::bytes_of_mut(&mut key)).unwrap_or(false) {
            // The end: the next round starts over.
            *cursor = None;
            break;
        }
        seen += 1;
        *cursor = Some(key);
        if let Ok(e) = map.get(&key, 0)
            && expired(&e, key.proto, cfg, now)
        {
            doomed.push(key);
        }
    }
    // Deleted after the walk: a deleted cursor would restart it.
    for k in doomed {
        if map.remove(&k).is_ok() {
            gone += 1;
        }
    }
    (seen, gone)
}
