//! `lb show sync`: flow-state sync with each peer.

use serde::Serialize;

use super::{
    View,
    render::{self, Col, Row, ago, left, now_ms, right},
};
use crate::maps::Pinned;

#[derive(Serialize)]
pub struct PeerRow {
    /// None: batches from no configured peer (dropped).
    pub peer: Option<String>,
    pub batches_sent: u64,
    pub flows_sent: u64,
    pub batches_received: u64,
    pub flows_received: u64,
    pub flows_skipped: u64,
    pub bad_auth: u64,
    pub malformed: u64,
    pub last_received_unix_ms: u64,
    pub lag_us: u64,
    pub dumps_asked: u64,
    pub dumps_served: u64,
}

#[derive(Serialize)]
pub struct Sync {
    pub peers: Vec<PeerRow>,
    /// Flow events the data plane could not report (the ring was full).
    pub sync_dropped: u64,
}

impl Sync {
    pub fn read(p: &Pinned) -> Self {
        let peers = p
            .sync()
            .into_iter()
            .map(|(a, s)| PeerRow {
                peer: a.map(|a| a.to_string()),
                batches_sent: s.batches_sent,
                flows_sent: s.flows_sent,
                batches_received: s.batches_received,
                flows_received: s.flows_received,
                flows_skipped: s.flows_skipped,
                bad_auth: s.bad_auth,
                malformed: s.malformed,
                last_received_unix_ms: s.last_received_ms,
                lag_us: s.lag_us,
                dumps_asked: s.dumps_asked,
                dumps_served: s.dumps_served,
            })
            .collect();
        Sync {
            peers,
            sync_dropped: p.reason(lb_common::Reason::SyncDropped),
        }
    }
}

impl Row for PeerRow {
    const COLS: &'static [Col] = &[
        left("Peer", 26),
        right("SentB", 8),
        right("SentFlows", 10),
        right("RecvB", 8),
        right("RecvFlows", 10),
        right("Skipped", 8),
        right("BadAuth", 8),
        right("Malformed", 9),
        right("LastRecv", 10),
        right("Lag", 9),
        right("Dumps a/s", 10),
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.peer.clone().unwrap_or_else(|| "(no peer)".into()),
            self.batches_sent.to_string(),
            self.flows_sent.to_string(),
            self.batches_received.to_string(),
            self.flows_received.to_string(),
            self.flows_skipped.to_string(),
            self.bad_auth.to_string(),
            self.malformed.to_string(),
            if self.last_received_unix_ms == 0 {
                "-".into()
            } else {
                ago(self.last_received_unix_ms, now_ms())
            },
            format!("{:.1}ms", self.lag_us as f64 / 1000.0),
            format!("{}/{}", self.dumps_asked, self.dumps_served),
        ]
    }
}

impl View for Sync {
    fn text(&self) -> String {
        let mut s = render::text(&self.peers);
        if self.peers.is_empty() {
            s.push_str("(no [sync] peers)\n");
        }
        s.push_str(&format!(
            "flow events lost (ring full): {}\n",
            self.sync_dropped
        ));
        s
    }
}
