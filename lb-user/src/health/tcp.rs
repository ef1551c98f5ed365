//! `tcp`: the backend accepts a connection. It is then reset rather than
//! closed (as HAProxy's checks do): no FIN handshake, no TIME_WAIT.

use std::net::SocketAddr;

use futures::future::BoxFuture;
use tokio::net::TcpStream;

use super::{CheckError, Checker};

pub struct Tcp {
    pub target: SocketAddr,
}

impl Checker for Tcp {
    fn check(&self) -> BoxFuture<'_, Result<(), CheckError>> {
        Box::pin(async move {
            let s = TcpStream::connect(self.target)
                .await
                .map_err(CheckError::connect)?;
            let _ = s.set_zero_linger();
            Ok(())
        })
    }
}
