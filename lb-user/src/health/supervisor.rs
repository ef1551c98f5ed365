//! Keeps one check task running per (service, backend) with a check, as the
//! config says: starts new ones, restarts changed or dead ones (resuming
//! their status, so a reload does not flap them), stops removed ones.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
};

use lb_common::ServiceKey;
use tokio::{sync::mpsc, task::JoinHandle};

use super::{Machine, Report, Status, Timing, checker};
use crate::config::{Check, Config, Probe};

pub type Key = (ServiceKey, IpAddr);

struct Running {
    check: Check,
    target: SocketAddr,
    handle: JoinHandle<()>,
}

pub struct Supervisor {
    tx: mpsc::Sender<Report>,
    tasks: HashMap<Key, Running>,
}

impl Supervisor {
    pub fn new(tx: mpsc::Sender<Report>) -> Self {
        Supervisor {
            tx,
            tasks: HashMap::new(),
        }
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
        let mut wanted: HashMap<Key, (&Check, SocketAddr)> = HashMap::new();
        for s in &cfg.services {
            for b in &s.backends {
                if b.check.probe != Probe::None {
                    wanted.insert(
                        (s.key(), b.address),
                        (&b.check, SocketAddr::new(b.address, s.port)),
                    );
                }
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
        for (key, (check, target)) in wanted {
            if let Some(r) = self.tasks.get(&key)
                && r.check == *check
                && r.target == target
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
            let handle = tokio::spawn(super::run_task(
                key,
                checker(check, target),
                check.timeout,
                machine,
                self.tx.clone(),
            ));
            self.tasks.insert(
                key,
                Running {
                    check: check.clone(),
                    target,
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
