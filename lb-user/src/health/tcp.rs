//! `tcp`: the backend accepts a connection.

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
            TcpStream::connect(self.target)
                .await
                .map(drop)
                .map_err(CheckError::connect)
        })
    }
}
