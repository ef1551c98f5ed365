//! Flow sync: lag and CPU at 1,000 and 10,000 new flows per second. Two
//! sync tasks of the agent (`lb_user::sync::Sync`), each in a namespace of
//! its own joined by a veth, each on its own single-threaded runtime so its
//! thread's CPU time is its cost. The sender is fed flows from another
//! thread, as the agent feeds it from the ring buffer; the receiver writes every flow into a
//! real flow table (an LRU hash map, as the agent does). Each flow carries
//! its creation time, so the lag is creation to written, per flow.

use std::{
    sync::mpsc as std_mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use aya::maps::{HashMap, MapData};
use lb_common::{FlowKey, FlowValue, PROTO_TCP, ServiceKey, names, sync::FLOW_OPENED};
use lb_tests::{
    bpf::{Harness, TEST_SIZES},
    netns::{self, Entered, Netns},
};
use lb_user::{
    config::SyncCfg,
    sync::{Incoming, Outgoing, Sync, codec::Entry},
};

const PORT: u16 = 8848;
const SECONDS: u64 = 5;

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn micros(t0: Instant) -> u64 {
    t0.elapsed().as_micros() as u64
}

fn entry(i: u32, born_us: u64) -> Entry {
    let mut flow = FlowKey {
        sport: (i % 60000) as u16 + 1024,
        dport: 80,
        proto: PROTO_TCP,
        family: 4,
        ..Default::default()
    };
    // The client address is the flow's number; its birth time rides in the
    // IPv4 key's unused bytes (the receiver only reads it back).
    flow.src[..4].copy_from_slice(&(0x0a00_0000 | (i & 0xff_ffff)).to_be_bytes());
    flow.src[4..12].copy_from_slice(&born_us.to_le_bytes());
    flow.dst[..4].copy_from_slice(&[203, 0, 113, 10]);
    let mut service = ServiceKey {
        port: 80,
        proto: PROTO_TCP,
        family: 4,
        ..Default::default()
    };
    service.addr = flow.dst;
    let mut backend = [0u8; 16];
    backend[..4].copy_from_slice(&[198, 51, 100, 11]);
    Entry {
        flow,
        service,
        backend,
        backend_family: 4,
        kind: FLOW_OPENED,
        snat_port: 0,
    }
}

fn cfg(peer: &str, interval: Duration) -> SyncCfg {
    SyncCfg {
        peers: vec![peer.parse().unwrap()],
        port: PORT,
        key: Some(b"bench sync key, 24 bytes".to_vec()),
        interval,
    }
}

struct Side {
    cpu: Duration,
    /// Receiver only: per-flow lag, µs.
    lags: Vec<u64>,
}

/// Run a sync task in `ns` on a thread of its own; `body` drives it.
fn side<F>(ns: &str, cfg: SyncCfg, body: F) -> std::thread::JoinHandle<Result<Side>>
where
    F: FnOnce(
            tokio::sync::mpsc::Sender<Outgoing>,
            tokio::sync::mpsc::Receiver<Incoming>,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<u64>>>>
        + Send
        + 'static,
{
    let ns = ns.to_string();
    std::thread::spawn(move || -> Result<Side> {
        let _in = Entered::new(&ns)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let sync = Sync::new(&cfg)?;
            let (out_tx, out_rx) = tokio::sync::mpsc::channel(1024);
            let (in_tx, in_rx) = tokio::sync::mpsc::channel(1024);
            let task = tokio::spawn(sync.run(out_rx, in_tx));
            let cpu0 = thread_cpu();
            let lags = body(out_tx, in_rx).await;
            let cpu = thread_cpu() - cpu0;
            task.abort();
            Ok(Side { cpu, lags })
        })
    })
}

pub fn run() -> Result<()> {
    let a = Netns::new("synca")?;
    let b = Netns::new("syncb")?;
    netns::ip(
        &a.name,
        &format!("link add s0 type veth peer name s1 netns {}", b.name),
    )?;
    for (ns, dev, addr) in [
        (&a.name, "s0", "192.0.2.1/24"),
        (&b.name, "s1", "192.0.2.2/24"),
    ] {
        netns::ip(ns, &format!("addr add {addr} dev {dev}"))?;
        netns::ip(ns, &format!("link set {dev} up"))?;
        netns::ip(ns, "link set lo up")?;
    }
    println!(
        "\nFlow sync, {SECONDS} s per rate, HMAC on, 10 ms batching; lag = flow created -> written into the peer's flow table:"
    );
    println!(
        "  {:>13} {:>10} {:>22} {:>12} {:>12}",
        "flows/s", "received", "lag p50/p99/max ms", "sender CPU", "receiver CPU"
    );
    for rate in [1_000u32, 10_000] {
        let h = Harness::new(TEST_SIZES).context("a flow table to write into")?;
        let flows_pin = lb_user::maps::loader::layout_dir(h.pin_dir()).join(names::FLOWS);
        let t0 = Instant::now();
        let total = rate * SECONDS as u32;
        let (ready_tx, ready_rx) = std_mpsc::channel::<()>();
        let receiver = side(
            &b.name,
            cfg("192.0.2.1", Duration::from_millis(10)),
            move |tx, mut rx| {
                Box::pin(async move {
                    // Held: the sync task ends when the agent's side goes.
                    let _agent = tx;
                    let data = MapData::from_pin(&flows_pin).expect("pinned FLOWS");
                    let mut flows: HashMap<MapData, FlowKey, FlowValue> =
                        HashMap::try_from(aya::maps::Map::LruHashMap(data)).expect("FLOWS");
                    let _ = ready_tx.send(());
                    let mut lags = Vec::with_capacity(total as usize);
                    let deadline = tokio::time::Instant::now() + Duration::from_secs(SECONDS + 3);
                    while lags.len() < total as usize {
                        let m = tokio::select! {
                            m = rx.recv() => m,
                            _ = tokio::time::sleep_until(deadline) => None,
                        };
                        let Some(m) = m else { break };
                        if let Incoming::Flows { entries, .. } = m {
                            for e in entries {
                                let _ = flows.insert(
                                    e.flow,
                                    FlowValue {
                                        backend: 1,
                                        service: 0,
                                        flags: 0,
                                        ..Default::default()
                                    },
                                    0,
                                );
                                let born =
                                    u64::from_le_bytes(e.flow.src[4..12].try_into().unwrap());
                                lags.push(micros(t0).saturating_sub(born));
                            }
                        }
                    }
                    lags
                })
            },
        );
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .context("receiver ready")?;
        let sender = side(
            &a.name,
            cfg("192.0.2.2", Duration::from_millis(10)),
            move |tx, _rx| {
                Box::pin(async move {
                    // The flows are made on a thread of their own, so this
                    // thread's CPU is the sync task's alone. As the agent
                    // does: whatever the ring held, every millisecond.
                    let feeder = std::thread::spawn(move || {
                        let per_ms = (rate / 1000).max(1);
                        let mut i = 0u32;
                        let start = Instant::now();
                        while i < total {
                            let due = start + Duration::from_millis((i / per_ms) as u64);
                            std::thread::sleep(due.saturating_duration_since(Instant::now()));
                            let n = per_ms.min(total - i);
                            let batch: Vec<Entry> =
                                (i..i + n).map(|k| entry(k, micros(t0))).collect();
                            i += n;
                            if tx.blocking_send(Outgoing::Flows(batch)).is_err() {
                                break;
                            }
                        }
                        std::thread::sleep(Duration::from_millis(200));
                    });
                    while !feeder.is_finished() {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Vec::new()
                })
            },
        );
        let s = sender
            .join()
            .map_err(|_| anyhow::anyhow!("sender panicked"))??;
        let r = receiver
            .join()
            .map_err(|_| anyhow::anyhow!("receiver panicked"))??;
        let mut lags = r.lags;
        lags.sort_unstable();
        let pct = |p: f64| {
            lags.get(((lags.len() as f64 - 1.0) * p) as usize)
                .copied()
                .unwrap_or(0) as f64
                / 1000.0
        };
        let wall = SECONDS as f64;
        println!(
            "  {rate:>13} {:>10} {:>22} {:>11.2}% {:>11.2}%",
            lags.len(),
            format!("{:.1} / {:.1} / {:.1}", pct(0.5), pct(0.99), pct(1.0)),
            100.0 * s.cpu.as_secs_f64() / wall,
            100.0 * r.cpu.as_secs_f64() / wall,
        );
    }
    Ok(())
}
