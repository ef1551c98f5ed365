//! `tcp`: the backend accepts a connection. It is then reset rather than
//! closed (as HAProxy's checks do): no FIN handshake, no TIME_WAIT.

use std::{net::SocketAddr, time::Duration};

use futures::future::BoxFuture;

use super::{CheckError, Checker, dial::Dialer};

pub struct Tcp {
    pub target: SocketAddr,
    pub dial: Dialer,
    pub timeout: Duration,
}

impl Checker for Tcp {
    fn check(&self) -> BoxFuture<'_, Result<(), CheckError>> {
        Box::pin(async move {
            let s = self
                .dial
                .connect(self.target, self.timeout)
                .await
                .map_err(CheckError::connect)?;
            let _ = s.set_zero_linger();
            Ok(())
        })
    }
}
