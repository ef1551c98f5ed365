//! `script`: run a program (argv, no shell); exit 0 = healthy. It runs in
//! its own process group, and the whole group is killed when the attempt is
//! dropped at its timeout, so a hanging script and its children never pile up.

use std::{net::SocketAddr, os::unix::process::ExitStatusExt, process::Stdio};

use futures::future::BoxFuture;
use tokio::process::Command;

use super::{CheckError, Checker};

pub struct Script {
    pub command: Vec<String>,
    pub target: SocketAddr,
}

/// Kills the process group unless the script was reaped first.
struct GroupGuard {
    pgid: Option<i32>,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid {
            // SAFETY: plain kill(2) of a group we created.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
    }
}

impl Checker for Script {
    fn check(&self) -> BoxFuture<'_, Result<(), CheckError>> {
        Box::pin(async move {
            let mut child = Command::new(&self.command[0])
                .args(&self.command[1..])
                .env("LB_BACKEND_ADDRESS", self.target.ip().to_string())
                .env("LB_BACKEND_PORT", self.target.port().to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                // Reaped in the background if the attempt is dropped.
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| CheckError::Spawn(format!("{}: {e}", self.command[0])))?;
            let mut guard = GroupGuard {
                pgid: child.id().map(|p| p as i32),
            };
            let status = child
                .wait()
                .await
                .map_err(|e| CheckError::Spawn(e.to_string()))?;
            // The leader is reaped: its pgid may be reused, so never kill it now.
            guard.pgid = None;
            match (status.code(), status.signal()) {
                (Some(0), _) => Ok(()),
                (Some(c), _) => Err(CheckError::Exit(c)),
                (None, Some(s)) => Err(CheckError::Signal(s)),
                (None, None) => Err(CheckError::Exit(-1)),
            }
        })
    }
}
