//! `lb show flows`: the flow table, client to backend.

use anyhow::Result;
use serde::Serialize;

use super::{
    View,
    render::{self, Col, Row, left},
};
use crate::{addr, maps::Pinned};

#[derive(Serialize)]
pub struct FlowRow {
    pub proto: &'static str,
    pub client: String,
    pub service: String,
    pub backend: String,
    pub backend_id: u32,
}

/// A NAT connection's way back: what the backend's replies look like and
/// what they become.
#[derive(Serialize)]
pub struct NatRow {
    pub proto: &'static str,
    /// The reply as the backend sends it: backend:port -> client (NAT) or
    /// our source address and port (full-NAT).
    pub reply_from: String,
    pub reply_to: String,
    /// What it becomes: VIP:port -> client.
    pub vip: String,
    pub client: String,
    pub closing: bool,
    /// Seconds since the connection's last packet.
    pub idle_s: u64,
}

#[derive(Serialize)]
pub struct Flows {
    pub flows: Vec<FlowRow>,
    /// NAT and full-NAT connections, the reply direction.
    pub nat: Vec<NatRow>,
    /// The listing stopped at this many.
    #[serde(skip)]
    limit: usize,
}

impl Flows {
    pub fn read(p: &Pinned, limit: usize) -> Result<Self> {
        let mut list = p.flows(limit)?;
        list.sort_by_key(|(k, _)| (k.dst, k.dport, k.src, k.sport));
        let flows = list
            .iter()
            .map(|(k, v)| FlowRow {
                proto: addr::proto_name(k.proto),
                client: addr::socket(addr::from_bytes(&k.src, k.family), k.sport),
                service: addr::socket(addr::from_bytes(&k.dst, k.family), k.dport),
                backend: p
                    .backend(v.backend)
                    .map(|b| addr::from_bytes(&b.addr, b.family).to_string())
                    .unwrap_or_else(|| "?".into()),
                backend_id: v.backend,
            })
            .collect();
        let now = crate::agent::nat_sweep::now_ns();
        let mut nat: Vec<NatRow> = p
            .nat(limit)?
            .iter()
            .map(|(k, e)| NatRow {
                proto: addr::proto_name(k.proto),
                reply_from: addr::socket(addr::from_bytes(&k.src, k.family), k.sport),
                reply_to: addr::socket(addr::from_bytes(&k.dst, k.family), k.dport),
                vip: addr::socket(addr::from_bytes(&e.src, k.family), e.sport),
                client: addr::socket(addr::from_bytes(&e.dst, k.family), e.dport),
                closing: e.flags & lb_common::nat::NAT_CLOSING != 0,
                idle_s: now.saturating_sub(e.last_seen_ns) / 1_000_000_000,
            })
            .collect();
        nat.sort_by(|a, b| (&a.vip, &a.client).cmp(&(&b.vip, &b.client)));
        Ok(Flows { flows, nat, limit })
    }
}

impl Row for NatRow {
    const COLS: &'static [Col] = &[
        left("Prot", 5),
        left("Reply from", 28),
        left("Reply to", 44),
        left("Becomes from", 28),
        left("Becomes to", 44),
        left("State", 0),
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.proto.to_uppercase(),
            self.reply_from.clone(),
            self.reply_to.clone(),
            self.vip.clone(),
            self.client.clone(),
            format!(
                "{} idle {}s",
                if self.closing { "closing" } else { "open" },
                self.idle_s
            ),
        ]
    }
}

impl Row for FlowRow {
    const COLS: &'static [Col] = &[
        left("Prot", 5),
        left("Client", 44),
        left("LocalAddress:Port", 28),
        left("Backend", 0),
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.proto.to_uppercase(),
            self.client.clone(),
            self.service.clone(),
            self.backend.clone(),
        ]
    }
}

impl View for Flows {
    fn text(&self) -> String {
        let mut s = render::text(&self.flows);
        if !self.nat.is_empty() {
            s.push_str("\nNAT connections, the way back:\n");
            s.push_str(&render::text(&self.nat));
        }
        if self.flows.len() == self.limit {
            s.push_str(&format!(
                "(first {} flows; --limit N for more)\n",
                self.limit
            ));
        }
        s
    }
}
