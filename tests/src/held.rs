//! Held keep-alive connections, the way a user feels a restart or a
//! failover: opened from the client namespace before the event, each asked
//! again after it, and each must still be answered by the same backend.

use std::net::SocketAddr;

use anyhow::Result;

use crate::{http::Conn, netns};

pub struct Held {
    conns: Vec<Conn>,
    /// The backend that answered each connection when it was opened.
    pub first: Vec<String>,
}

impl Held {
    /// Open `n` connections to `vip` from namespace `ns` and ask each once.
    pub fn open(ns: &str, vip: SocketAddr, n: usize) -> Result<Held> {
        // A socket stays in the namespace it was made in; it can be used
        // from any thread afterwards.
        let mut conns = netns::in_ns(ns, move || {
            (0..n).map(|_| Conn::open(vip)).collect::<Result<Vec<_>>>()
        })??;
        let first = conns
            .iter_mut()
            .map(|c| c.get())
            .collect::<Result<Vec<_>>>()?;
        Ok(Held { conns, first })
    }

    /// Ask every connection again: how many failed, and how many were
    /// answered by a backend other than their first.
    pub fn ask(&mut self) -> (usize, usize, Vec<String>) {
        let (mut failed, mut moved, mut notes) = (0, 0, Vec::new());
        for (c, first) in self.conns.iter_mut().zip(&self.first) {
            match c.get() {
                Ok(b) if b == *first => {}
                Ok(b) => {
                    moved += 1;
                    notes.push(format!("{}: {first} -> {b}", c.local));
                }
                Err(e) => {
                    failed += 1;
                    notes.push(format!("{}: {e:#}", c.local));
                }
            }
        }
        (failed, moved, notes)
    }
}
