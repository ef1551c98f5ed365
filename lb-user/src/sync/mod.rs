//! Flow-state sync between balancers. Every node sends the flows its data
//! plane opens and closes to every configured peer, and writes the peers'
//! flows into its own flow table, so whichever node holds a VIP after a
//! failover (or several at once, active-active) sends each established
//! flow to its backend, whatever the scheduler. A starting node asks each
//! peer for a full dump. This task owns the UDP socket: it batches, signs,
//! sends, receives and checks; the agent turns entries into map writes
//! (it is the only map writer).
//!
//! Loss: a batch lost on the wire costs only its flows (at most 16, opened
//! within one interval); they are placed again by the new master's
//! scheduler after a failover, as without sync. Batches are not resent.

pub mod codec;

use std::{
    net::{IpAddr, Ipv6Addr, SocketAddr},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result};
use lb_common::sync::{MAX_SYNC_PEERS, SyncPeerStats};
use ring::hmac;
use tokio::{net::UdpSocket, sync::mpsc};

use crate::config::SyncCfg;
use codec::{Batch, Entry, KIND_DUMP_END, KIND_DUMP_REQUEST, KIND_FLOWS, MAX_ENTRIES, Reject};

/// From the agent to this task.
pub enum Outgoing {
    /// New and closed flows of this node's data plane, for every peer.
    Flows(Vec<Entry>),
    /// A full dump for one peer (it asked).
    Dump { to: IpAddr, entries: Vec<Entry> },
}

/// From this task to the agent.
pub enum Incoming {
    Flows {
        from: IpAddr,
        entries: Vec<Entry>,
    },
    DumpRequest {
        from: IpAddr,
    },
    /// A peer sent all of the dump this node asked for.
    DumpDone {
        from: IpAddr,
    },
    /// Counters for SYNC_STATS: one per peer, and batches from no peer.
    Stats {
        peers: Vec<SyncPeerStats>,
        strangers: SyncPeerStats,
    },
}

/// Batches sent per tick from a dump queue: a dump is paced, not a burst.
const DUMP_BATCHES_PER_TICK: usize = 64;
/// A starting node asks for dumps this many times, a second apart, until
/// the peer has answered with anything.
const DUMP_ASKS: u32 = 3;

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

struct Peer {
    addr: SocketAddr,
    stats: SyncPeerStats,
    heard: bool,
    asks_left: u32,
    dump: Vec<Entry>,
    /// A dump is being sent to it: its end is marked once the queue empties.
    dumping: bool,
}

pub struct Sync {
    socket: UdpSocket,
    key: Option<hmac::Key>,
    interval: Duration,
    peers: Vec<Peer>,
    /// Batches from no configured peer.
    strangers: SyncPeerStats,
    pending: Vec<Entry>,
    pending_since: Option<Instant>,
    seq: u32,
}

/// Bind the sync port (IPv6 and IPv4 on one socket where the host has IPv6).
fn bind(port: u16) -> Result<UdpSocket> {
    use socket2::{Domain, Socket, Type};
    let v6 = Socket::new(Domain::IPV6, Type::DGRAM, None).and_then(|s| {
        s.set_only_v6(false)?;
        s.set_reuse_address(true)?;
        s.bind(&SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port).into())?;
        Ok(s)
    });
    let s = match v6 {
        Ok(s) => s,
        Err(_) => {
            let s = Socket::new(Domain::IPV4, Type::DGRAM, None)?;
            s.set_reuse_address(true)?;
            s.bind(&SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), port).into())?;
            s
        }
    };
    s.set_nonblocking(true)?;
    Ok(UdpSocket::from_std(s.into())?)
}

impl Sync {
    pub fn new(cfg: &SyncCfg) -> Result<Sync> {
        let socket =
            bind(cfg.port).with_context(|| format!("binding the sync port {}", cfg.port))?;
        let peers = cfg
            .peers
            .iter()
            .take(MAX_SYNC_PEERS as usize)
            .map(|a| Peer {
                addr: SocketAddr::new(*a, cfg.port),
                stats: SyncPeerStats {
                    addr: crate::addr::to_bytes(*a),
                    family: crate::addr::family(*a),
                    set: 1,
                    ..Default::default()
                },
                heard: false,
                asks_left: DUMP_ASKS,
                dump: Vec::new(),
                dumping: false,
            })
            .collect();
        Ok(Sync {
            socket,
            key: cfg.key.as_deref().map(codec::key),
            interval: cfg.interval,
            peers,
            strangers: SyncPeerStats::default(),
            pending: Vec::new(),
            pending_since: None,
            seq: 0,
        })
    }

    /// Run until the agent goes away.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Outgoing>, tx: mpsc::Sender<Incoming>) {
        let mut buf = vec![0u8; 2048];
        let mut tick = tokio::time::interval(self.interval);
        let mut asks = tokio::time::interval(Duration::from_secs(1));
        let mut stats_at = Instant::now();
        loop {
            tokio::select! {
                r = self.socket.recv_from(&mut buf) => {
                    if let Ok((n, from)) = r {
                        self.received(&buf[..n], from.ip().to_canonical(), &tx).await;
                    }
                }
                m = rx.recv() => match m {
                    None => return,
                    Some(Outgoing::Flows(e)) => {
                        if self.pending.is_empty() {
                            self.pending_since = Some(Instant::now());
                        }
                        self.pending.extend(e);
                        // Full batches go at once; the rest waits for the tick.
                        while self.pending.len() >= MAX_ENTRIES {
                            let rest = self.pending.split_off(MAX_ENTRIES);
                            let full = std::mem::replace(&mut self.pending, rest);
                            self.send_flows(full).await;
                        }
                    }
                    Some(Outgoing::Dump { to, entries }) => {
                        if let Some(p) = self.peers.iter_mut().find(|p| p.addr.ip() == to) {
                            p.dump.extend(entries);
                            p.dumping = true;
                            p.stats.dumps_served += 1;
                        }
                    }
                },
                _ = tick.tick() => {
                    if !self.pending.is_empty() {
                        let all = std::mem::take(&mut self.pending);
                        self.send_flows(all).await;
                    }
                    self.send_dumps().await;
                    if stats_at.elapsed() >= Duration::from_millis(250) {
                        stats_at = Instant::now();
                        let _ = tx.try_send(Incoming::Stats {
                            peers: self.peers.iter().map(|p| p.stats).collect(),
                            strangers: self.strangers,
                        });
                    }
                }
                _ = asks.tick() => self.ask_dumps().await,
            }
        }
    }

    fn batch(&mut self, kind: u8, entries: Vec<Entry>, oldest_wait_us: u32) -> Vec<u8> {
        self.seq = self.seq.wrapping_add(1);
        codec::encode(
            &Batch {
                kind,
                seq: self.seq,
                sent_us: now_us(),
                oldest_wait_us,
                entries,
            },
            self.key.as_ref(),
        )
    }

    async fn send_flows(&mut self, entries: Vec<Entry>) {
        let waited = self
            .pending_since
            .take()
            .map_or(0, |t| t.elapsed().as_micros().min(u32::MAX as u128) as u32);
        for chunk in entries.chunks(MAX_ENTRIES) {
            let bytes = self.batch(KIND_FLOWS, chunk.to_vec(), waited);
            for p in &mut self.peers {
                if self.socket.send_to(&bytes, p.addr).await.is_ok() {
                    p.stats.batches_sent += 1;
                    p.stats.flows_sent += chunk.len() as u64;
                }
            }
        }
    }

    async fn send_dumps(&mut self) {
        for i in 0..self.peers.len() {
            let mut sent = 0;
            while sent < DUMP_BATCHES_PER_TICK && !self.peers[i].dump.is_empty() {
                let n = self.peers[i].dump.len().min(MAX_ENTRIES);
                let chunk: Vec<Entry> = self.peers[i].dump.drain(..n).collect();
                let bytes = self.batch(KIND_FLOWS, chunk, 0);
                let p = &mut self.peers[i];
                if self.socket.send_to(&bytes, p.addr).await.is_ok() {
                    p.stats.batches_sent += 1;
                    p.stats.flows_sent += n as u64;
                }
                sent += 1;
            }
            if self.peers[i].dumping && self.peers[i].dump.is_empty() {
                self.peers[i].dumping = false;
                let bytes = self.batch(KIND_DUMP_END, Vec::new(), 0);
                let _ = self.socket.send_to(&bytes, self.peers[i].addr).await;
            }
        }
    }

    async fn ask_dumps(&mut self) {
        let bytes = self.batch(KIND_DUMP_REQUEST, Vec::new(), 0);
        for p in &mut self.peers {
            if p.asks_left > 0 && !p.heard {
                p.asks_left -= 1;
                if self.socket.send_to(&bytes, p.addr).await.is_ok() {
                    p.stats.dumps_asked += 1;
                }
            }
        }
    }

    async fn received(&mut self, buf: &[u8], from: IpAddr, tx: &mpsc::Sender<Incoming>) {
        let Some(p) = self.peers.iter_mut().find(|p| p.addr.ip() == from) else {
            // Only configured peers are heard; the rest is counted.
            self.strangers.bad_auth += 1;
            return;
        };
        match codec::decode(buf, self.key.as_ref()) {
            Err(Reject::Malformed) => p.stats.malformed += 1,
            Err(Reject::BadAuth) => p.stats.bad_auth += 1,
            Ok(b) => {
                p.heard = true;
                p.stats.batches_received += 1;
                p.stats.last_received_ms = now_us() / 1000;
                match b.kind {
                    KIND_DUMP_REQUEST => {
                        let _ = tx.send(Incoming::DumpRequest { from }).await;
                    }
                    KIND_DUMP_END => {
                        let _ = tx.send(Incoming::DumpDone { from }).await;
                    }
                    _ => {
                        p.stats.flows_received += b.entries.len() as u64;
                        p.stats.lag_us =
                            now_us().saturating_sub(b.sent_us) + b.oldest_wait_us as u64;
                        if !b.entries.is_empty() {
                            let _ = tx
                                .send(Incoming::Flows {
                                    from,
                                    entries: b.entries,
                                })
                                .await;
                        }
                    }
                }
            }
        }
    }
}
