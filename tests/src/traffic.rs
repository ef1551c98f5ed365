//! Client traffic for lab tests: a new HTTP connection to the VIP every few
//! milliseconds from the client namespace, each result time-stamped, bounded
//! in count and time.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::Result;

use crate::{http, netns};

#[derive(Debug, Clone)]
pub struct Sample {
    pub at: Instant,
    /// When the answer (or the error) came.
    pub done: Instant,
    /// The answering backend's name, or the error.
    pub result: Result<String, String>,
}

pub struct Traffic {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Result<Vec<Sample>>>,
}

/// Never more than this many connections per run.
const MAX_SAMPLES: usize = 20_000;

impl Traffic {
    /// From namespace `ns`, one GET on a new connection to `vip` every
    /// `every`, for at most `max` (or until `stop`).
    pub fn start(ns: &str, vip: SocketAddr, every: Duration, max: Duration) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let ns = ns.to_string();
        let handle = std::thread::spawn(move || {
            netns::in_ns(&ns, move || {
                let end = Instant::now() + max;
                let mut out = Vec::new();
                while !flag.load(Ordering::Relaxed)
                    && Instant::now() < end
                    && out.len() < MAX_SAMPLES
                {
                    let at = Instant::now();
                    let result = http::get(vip).map_err(|e| format!("{e:#}"));
                    out.push(Sample {
                        at,
                        done: Instant::now(),
                        result,
                    });
                    if let Some(rest) = every.checked_sub(at.elapsed()) {
                        std::thread::sleep(rest);
                    }
                }
                out
            })
        });
        Traffic { stop, handle }
    }

    pub fn stop(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        match self.handle.join() {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => panic!("client traffic could not run: {e:#}"),
            Err(_) => panic!("client traffic thread panicked"),
        }
    }
}

/// Samples in [from, to).
pub fn between(s: &[Sample], from: Instant, to: Instant) -> Vec<&Sample> {
    s.iter().filter(|x| x.at >= from && x.at < to).collect()
}

/// Share of `samples` answered by `name`.
pub fn share(samples: &[&Sample], name: &str) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples
        .iter()
        .filter(|s| s.result.as_deref() == Ok(name))
        .count() as f64
        / samples.len() as f64
}

/// The longest time without a successful answer: between consecutive
/// answers, however the requests in between failed or waited.
pub fn longest_silence(s: &[Sample]) -> std::time::Duration {
    let mut done: Vec<Instant> = s
        .iter()
        .filter(|x| x.result.is_ok())
        .map(|x| x.done)
        .collect();
    done.sort();
    done.windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default()
}
