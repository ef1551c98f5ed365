//! `lb show services`: one line per virtual service.

use anyhow::Result;
use lb_common::{Forward, Scheduler, ServiceKey};
use serde::Serialize;

use super::{
    View,
    backends::state,
    render::{self, Col, Row, left, right},
};
use crate::{addr, maps::Pinned};

#[derive(Serialize)]
pub struct ServiceRow {
    #[serde(skip)]
    pub key: ServiceKey,
    pub service: String,
    pub id: u32,
    pub scheduler: &'static str,
    pub forward: &'static str,
    pub backends: usize,
    pub backends_up: usize,
    pub packets: u64,
    pub bytes: u64,
    pub active_slot: u32,
}

#[derive(Serialize)]
pub struct Services {
    pub services: Vec<ServiceRow>,
}

pub fn scheduler_name(id: u8) -> &'static str {
    Scheduler::from_id(id).map_or("?", Scheduler::name)
}

/// "TCP" and "203.0.113.10:80": ipvsadm's first two columns.
pub fn prot_and_vip(k: &ServiceKey) -> [String; 2] {
    [
        addr::proto_name(k.proto).to_uppercase(),
        addr::socket(addr::from_bytes(&k.addr, k.family), k.port),
    ]
}

impl Services {
    pub fn read(p: &Pinned) -> Result<Self> {
        let mut services = Vec::new();
        for (key, m) in p.services()? {
            let bs = p.backends(m.id)?;
            let st = p.service_stats(m.id);
            services.push(ServiceRow {
                key,
                service: addr::service_name(&key),
                id: m.id,
                scheduler: scheduler_name(m.scheduler),
                forward: Forward::from_id(m.forward).map_or("?", Forward::name),
                backends: bs.len(),
                backends_up: bs.iter().filter(|(_, b)| state(b) == "up").count(),
                packets: st.packets,
                bytes: st.bytes,
                active_slot: m.active_slot,
            });
        }
        Ok(Services { services })
    }
}

impl Row for ServiceRow {
    const COLS: &'static [Col] = &[
        left("Prot", 5),
        left("LocalAddress:Port", 28),
        left("Scheduler", 9),
        left("Forward", 7),
        right("Backends", 8),
        right("Packets", 12),
        right("Bytes", 14),
    ];
    fn cells(&self) -> Vec<String> {
        let [prot, vip] = prot_and_vip(&self.key);
        vec![
            prot,
            vip,
            self.scheduler.into(),
            self.forward.into(),
            format!("{}/{}", self.backends_up, self.backends),
            self.packets.to_string(),
            self.bytes.to_string(),
        ]
    }
}

impl View for Services {
    fn text(&self) -> String {
        render::text(&self.services)
    }
}
