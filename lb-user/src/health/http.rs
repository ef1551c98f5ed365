//! `http`: GET a path with a Host header, over TLS if asked; the status must
//! be one of `expect_status` and the body, when `expect_body` is set, must
//! contain it. The connection is driven inside the attempt, so dropping the
//! attempt at its timeout closes it. Like HAProxy's checks, it ends with a
//! reset once the answer is in (no FIN handshake, no TIME_WAIT): at a
//! thousand checks a second that halves the kernel's work.

use std::{net::SocketAddr, pin::pin, time::Duration};

use futures::future::BoxFuture;
use http_body_util::{BodyExt, Empty};
use hyper::{
    Request,
    body::{Bytes, Incoming},
};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{CheckError, Checker, dial::Dialer, tls};
use crate::config::HttpProbe;

/// Read at most this much of a body; a health page is small.
const BODY_LIMIT: usize = 1 << 20;

pub struct Http {
    probe: HttpProbe,
    target: SocketAddr,
    host: String,
    dial: Dialer,
    timeout: Duration,
}

impl Http {
    pub fn new(probe: HttpProbe, target: SocketAddr, dial: Dialer, timeout: Duration) -> Self {
        let default_port = if probe.tls { 443 } else { 80 };
        let host = match &probe.host {
            Some(h) => h.clone(),
            None => {
                let ip = match target.ip() {
                    std::net::IpAddr::V6(a) => format!("[{a}]"),
                    a => a.to_string(),
                };
                if target.port() == default_port {
                    ip
                } else {
                    format!("{ip}:{}", target.port())
                }
            }
        };
        Http {
            probe,
            target,
            host,
            dial,
            timeout,
        }
    }

    async fn exchange<T>(&self, io: T) -> Result<(), CheckError>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| CheckError::Http(e.to_string()))?;
        let req = Request::get(self.probe.path.as_str())
            .header(hyper::header::HOST, &self.host)
            .header(
                hyper::header::USER_AGENT,
                concat!("lb-health/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::<Bytes>::new())
            .map_err(|e| CheckError::Http(e.to_string()))?;
        let mut work = pin!(async {
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| CheckError::Http(e.to_string()))?;
            self.judge(resp).await
        });
        let mut conn = pin!(conn);
        tokio::select! {
            r = &mut work => r,
            c = &mut conn => {
                c.map_err(|e| CheckError::Http(e.to_string()))?;
                // The connection finished cleanly; the answer is buffered.
                work.await
            }
        }
    }

    async fn judge(&self, resp: hyper::Response<Incoming>) -> Result<(), CheckError> {
        let status = resp.status().as_u16();
        if !self.probe.expect_status.contains(&status) {
            return Err(CheckError::Status(status));
        }
        let mut body = resp.into_body();
        let mut seen: Vec<u8> = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| CheckError::Http(e.to_string()))?;
            if let Some(d) = frame.data_ref() {
                let room = BODY_LIMIT.saturating_sub(seen.len());
                seen.extend_from_slice(&d[..d.len().min(room)]);
                if seen.len() >= BODY_LIMIT {
                    break;
                }
            }
        }
        match &self.probe.expect_body {
            Some(want) if !contains(&seen, want.as_bytes()) => {
                Err(CheckError::BodyMismatch(want.clone()))
            }
            _ => Ok(()),
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

impl Checker for Http {
    fn check(&self) -> BoxFuture<'_, Result<(), CheckError>> {
        Box::pin(async move {
            let stream = self
                .dial
                .connect(self.target, self.timeout)
                .await
                .map_err(CheckError::connect)?;
            let _ = stream.set_zero_linger();
            if self.probe.tls {
                let name = tls::server_name(self.probe.host.as_deref(), self.target.ip())?;
                let stream = tls::connector(self.probe.tls_verify)
                    .connect(name, stream)
                    .await
                    .map_err(|e| CheckError::Tls(e.to_string()))?;
                self.exchange(stream).await
            } else {
                self.exchange(stream).await
            }
        })
    }
}
