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

#[derive(Serialize)]
pub struct Flows {
    pub flows: Vec<FlowRow>,
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
        Ok(Flows { flows, limit })
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
        if self.flows.len() == self.limit {
            s.push_str(&format!(
                "(first {} flows; --limit N for more)\n",
                self.limit
            ));
        }
        s
    }
}
