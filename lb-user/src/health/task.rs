//! The loop of one backend's checks: wait as the state machine says, run one
//! attempt bounded by the timeout, report. A panicking checker counts as a
//! failed attempt; it never ends the loop or touches other backends.

use std::{
    panic::AssertUnwindSafe,
    sync::Arc,
    time::{Duration, SystemTime},
};

use futures::FutureExt;
use tokio::{sync::mpsc, time::Instant};

use super::{CheckError, Checker, Key, Machine, Status};

/// One finished attempt.
#[derive(Debug, Clone)]
pub struct Report {
    pub key: Key,
    pub status: Status,
    /// The attempt changed `status`.
    pub changed: bool,
    /// Consecutive passes and failures, this one included.
    pub ok: u32,
    pub fail: u32,
    pub rtt: Duration,
    pub error: Option<CheckError>,
    pub at: SystemTime,
}

pub async fn run(
    key: Key,
    checker: Arc<dyn Checker>,
    timeout: Duration,
    mut machine: Machine,
    tx: mpsc::Sender<Report>,
) {
    let mut wait = Duration::ZERO;
    loop {
        tokio::time::sleep(wait).await;
        let started = Instant::now();
        let attempt = AssertUnwindSafe(checker.check()).catch_unwind();
        let result = match tokio::time::timeout(timeout, attempt).await {
            Err(_) => Err(CheckError::Timeout(timeout)),
            Ok(Err(_)) => Err(CheckError::Panicked),
            Ok(Ok(r)) => r,
        };
        let rtt = started.elapsed();
        let step = machine.on_result(result.is_ok());
        wait = step.next_in;
        let (ok, fail) = machine.counts();
        let report = Report {
            key,
            status: machine.status(),
            changed: step.changed.is_some(),
            ok,
            fail,
            rtt,
            error: result.err(),
            at: SystemTime::now(),
        };
        if tx.send(report).await.is_err() {
            return; // the agent is stopping
        }
    }
}
