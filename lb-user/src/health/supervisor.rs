//! Keeps one check task running per (service, backend) with a check, as the
//! config says: starts new ones, restarts changed or dead ones (resuming
//! their status, so a reload does not flap them), stops removed ones.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use lb_common::ServiceKey;
use tokio::{sync::mpsc, task::JoinHandle};

use super::{
    Machine, Report, Status, Timing, checker,
    dial::{CheckNs, Dialer},
};
use crate::config::{Check, Config, Probe, Via};

pub type Key = (ServiceKey, IpAddr);

struct Running {
    check: Check,
    target: SocketAddr,
    /// First check port (dataplane checks).
    port: Option<u16>,
    handle: JoinHandle<()>,
}

pub struct Supervisor {
    tx: mpsc::Sender<Report>,
    tasks: HashMap<Key, Running>,
    /// Where dataplane checks dial from, once the agent has built it.
    check_ns: Option<Arc<CheckNs>>,
}

impl Supervisor {
    pub fn new(tx: mpsc::Sender<Report>) -> Self {
        Supervisor {
            tx,
            tasks: HashMap::new(),
            check_ns: None,
        }
    }

    pub fn set_check_ns(&mut self, ns: Arc<CheckNs>) {
        self.check_ns = Some(ns);
    }

    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Match the running tasks to `cfg`. `current` is the status the agent
    /// holds for a backend; returns the backends whose task (re)started, with
    /// the status it starts from.
    pub fn sync(
        &mut self,
        cfg: &Config,
        current: impl Fn(&Key) -> Option<Status>,
    ) -> Vec<(Key, Status)> {
        let ports = crate::plan::check_ports(cfg);
        let mut wanted: HashMap<Key, (&Check, SocketAddr, Option<u16>)> = HashMap::new();
        for s in &cfg.services {
            for b in &s.backends {
                if b.check.probe == Probe::None {
                    continue;
                }
                let key = (s.key(), b.address);
                // Through the data path the check asks the VIP.
                let (target, port) = match b.check.via {
                    Via::Direct => (SocketAddr::new(b.address, b.port.unwrap_or(s.port)), None),
                    Via::Dataplane => (SocketAddr::new(s.vip, s.port), ports.get(&key).copied()),
                };
                wanted.insert(key, (&b.check, target, port));
            }
        }
        self.tasks.retain(|k, r| {
            let keep = wanted.contains_key(k);
            if !keep {
                r.handle.abort();
            }
            keep
        });
        let mut started = Vec::new();
        for (key, (check, target, port)) in wanted {
            if let Some(r) = self.tasks.get(&key)
                && r.check == *check
                && r.target == target
                && r.port == port
                && !r.handle.is_finished()
            {
                continue;
            }
            if let Some(old) = self.tasks.remove(&key) {
                old.handle.abort();
            }
            let timing = Timing::from(check);
            let machine = match current(&key) {
                Some(status) => Machine::resume(timing, status),
                None => Machine::new(timing, check.initial),
            };
            let status = machine.status();
            let dial = match (check.via, &self.check_ns, port) {
                (Via::Dataplane, Some(ns), Some(base)) => Dialer::dataplane(ns.clone(), base),
                (Via::Dataplane, _, _) => {
                    // Validated at load; a reload that adds the first one
                    // needs a restart (refused there).
                    tracing::warn!(backend = %key.1, "no check path: checking directly");
                    Dialer::Direct
                }
                (Via::Direct, _, _) => Dialer::Direct,
            };
            let handle = tokio::spawn(super::run_task(
                key,
                checker(check, target, dial),
                check.timeout,
                machine,
                self.tx.clone(),
            ));
            self.tasks.insert(
                key,
                Running {
                    check: check.clone(),
                    target,
                    port,
                    handle,
                },
            );
            started.push((key, status));
        }
        started
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        for r in self.tasks.values() {
            r.handle.abort();
        }
    }
}
