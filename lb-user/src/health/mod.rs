//! Health checks: one task per (service, backend) runs its checker on the
//! state machine's schedule and reports every result to the agent, which
//! alone turns transitions into map writes.

pub mod dial;
mod http;
mod script;
mod supervisor;
mod task;
mod tcp;
mod tls;

pub mod state;
#[cfg(test)]
mod tests;

use std::{fmt, net::SocketAddr, sync::Arc, time::Duration};

use futures::future::BoxFuture;

pub use state::{Machine, Status, Timing};
pub use supervisor::{Key, Supervisor};
pub use task::{Report, run as run_task};

use crate::config::{Check, Probe};

/// Why a check failed, in the words a log line or `lb show` uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckError {
    Refused,
    Connect(String),
    Timeout(Duration),
    Status(u16),
    BodyMismatch(String),
    Http(String),
    Tls(String),
    Exit(i32),
    Signal(i32),
    Spawn(String),
    Panicked,
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckError::Refused => write!(f, "connection refused"),
            CheckError::Connect(e) => write!(f, "connect: {e}"),
            CheckError::Timeout(t) => write!(f, "timeout after {}", humantime::format_duration(*t)),
            CheckError::Status(s) => write!(f, "status {s}"),
            CheckError::BodyMismatch(want) => write!(f, "body mismatch: no {want:?}"),
            CheckError::Http(e) => write!(f, "http: {e}"),
            CheckError::Tls(e) => write!(f, "tls: {e}"),
            CheckError::Exit(c) => write!(f, "exit {c}"),
            CheckError::Signal(s) => write!(f, "killed by signal {s}"),
            CheckError::Spawn(e) => write!(f, "cannot run: {e}"),
            CheckError::Panicked => write!(f, "checker panicked"),
        }
    }
}

impl CheckError {
    fn connect(e: std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::ConnectionRefused => CheckError::Refused,
            _ => CheckError::Connect(e.to_string()),
        }
    }
}

/// The shared checker interface: one attempt, no timeout of its own (the
/// task bounds every attempt with the configured timeout).
pub trait Checker: Send + Sync {
    fn check(&self) -> BoxFuture<'_, Result<(), CheckError>>;
}

/// Always passes.
struct NoCheck;

impl Checker for NoCheck {
    fn check(&self) -> BoxFuture<'_, Result<(), CheckError>> {
        Box::pin(async { Ok(()) })
    }
}

/// The checker for `check` against `target` (the backend's address, or the
/// VIP through `dial`, with the service port; a check's own `port`
/// overrides it).
pub fn checker(check: &Check, target: SocketAddr, dial: dial::Dialer) -> Arc<dyn Checker> {
    let with_port = |p: Option<u16>| SocketAddr::new(target.ip(), p.unwrap_or(target.port()));
    match &check.probe {
        Probe::None => Arc::new(NoCheck),
        Probe::Tcp { port } => Arc::new(tcp::Tcp {
            target: with_port(*port),
            dial,
            timeout: check.timeout,
        }),
        Probe::Http(h) => Arc::new(http::Http::new(
            h.clone(),
            with_port(h.port),
            dial,
            check.timeout,
        )),
        Probe::Script { command } => Arc::new(script::Script {
            command: command.clone(),
            target,
        }),
    }
}
