//! `script`: run a program (argv, no shell); exit 0 = healthy. It runs in
//! its own process group, and the whole group is killed when the attempt is
//! dropped at its timeout, so a hanging script and its children never pile up.

use std::net::SocketAddr;

use futures::future::BoxFuture;

use super::{CheckError, Checker};
use crate::exec::{self, Failure};

pub struct Script {
    pub command: Vec<String>,
    pub target: SocketAddr,
}

impl Checker for Script {
    fn check(&self) -> BoxFuture<'_, Result<(), CheckError>> {
        Box::pin(async move {
            let (addr, port) = (self.target.ip().to_string(), self.target.port().to_string());
            let env = [
                ("LB_BACKEND_ADDRESS", addr.as_str()),
                ("LB_BACKEND_PORT", port.as_str()),
            ];
            // The task's timeout drops this future, which kills the group.
            exec::run(&self.command, &[], &env)
                .await
                .map_err(|f| match f {
                    Failure::Exit(c) => CheckError::Exit(c),
                    Failure::Signal(s) => CheckError::Signal(s),
                    Failure::Spawn(e) => CheckError::Spawn(e),
                    Failure::Timeout(t) => CheckError::Timeout(t),
                })
        })
    }
}
