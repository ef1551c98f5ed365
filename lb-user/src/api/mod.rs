//! The agent's HTTP API on `[agent] api`: `GET /metrics` (Prometheus: the
//! classic text format, or OpenMetrics when the scraper asks for it),
//! `GET /status` (the JSON of `lb show services`, `backends` and `vrrp` in
//! one document, from the same row types), `GET /healthz` (200 while the
//! agent serves, 503 while it starts or stops). It only reads the pinned
//! maps, on the blocking pool: the map writer never waits for it.

pub mod metrics;

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode,
    body::{Bytes, Incoming},
    header::{ACCEPT, CONTENT_TYPE},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio::net::TcpListener;

use crate::{
    cmd::show::{Backends, Services, Vrrp},
    maps::Pinned,
};
pub use metrics::Checks;
use metrics::FromMaps;

struct Shared {
    registry: Registry,
    maps: Arc<FromMaps>,
    serving: AtomicBool,
}

/// The running API, as the agent holds it.
pub struct Api {
    shared: Arc<Shared>,
    pub checks: Checks,
}

impl Api {
    /// Listen on `addr`; `/metrics` and `/status` answer 503 until the
    /// maps are handed over (`set_maps`), `/healthz` until `set_serving`.
    pub async fn start(addr: SocketAddr, flow_capacity: u32) -> std::io::Result<Api> {
        let listener = TcpListener::bind(addr).await?;
        let maps = Arc::new(FromMaps {
            pins: Default::default(),
            flow_capacity,
        });
        let (registry, checks) = metrics::registry(maps.clone());
        let shared = Arc::new(Shared {
            registry,
            maps,
            serving: AtomicBool::new(false),
        });
        let s = shared.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let s = s.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(s.clone(), req));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        tracing::info!(%addr, "API listening: /metrics /status /healthz");
        Ok(Api { shared, checks })
    }

    /// The agent's maps, read at each request.
    pub fn set_maps(&self, pins: Pinned) {
        let _ = self.shared.maps.pins.set(pins);
    }

    pub fn set_serving(&self, serving: bool) {
        self.shared.serving.store(serving, Ordering::Relaxed);
    }
}

/// `/status`: one document, the rows `lb show` prints.
#[derive(Serialize)]
struct Status {
    #[serde(flatten)]
    services: Services,
    #[serde(flatten)]
    backends: Backends,
    #[serde(flatten)]
    vrrp: Vrrp,
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(CONTENT_TYPE, v);
    }
    r
}

const TEXT: &str = "text/plain; charset=utf-8";

async fn handle(
    s: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::GET {
        return Ok(reply(
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            "GET only\n".into(),
        ));
    }
    let openmetrics = req
        .headers()
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    let path = req.uri().path().to_string();
    let r = tokio::task::spawn_blocking(move || match path.as_str() {
        "/healthz" => {
            if s.serving.load(Ordering::Relaxed) {
                reply(StatusCode::OK, TEXT, "serving\n".into())
            } else {
                reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    TEXT,
                    "starting or stopping\n".into(),
                )
            }
        }
        "/metrics" => {
            let mut body = String::new();
            let (encoded, kind) = if openmetrics {
                (
                    prometheus_client::encoding::text::encode(&mut body, &s.registry),
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )
            } else {
                (
                    prometheus_client::encoding::prometheus_text::encode(&mut body, &s.registry),
                    "text/plain; version=0.0.4; charset=utf-8",
                )
            };
            match encoded {
                Ok(()) => reply(StatusCode::OK, kind, body),
                Err(_) => reply(StatusCode::INTERNAL_SERVER_ERROR, TEXT, "encoding\n".into()),
            }
        }
        "/status" => match s.maps.pins.get().map(status) {
            Some(Ok(body)) => reply(StatusCode::OK, "application/json", body),
            Some(Err(e)) => reply(StatusCode::INTERNAL_SERVER_ERROR, TEXT, format!("{e:#}\n")),
            None => reply(StatusCode::SERVICE_UNAVAILABLE, TEXT, "starting\n".into()),
        },
        _ => reply(
            StatusCode::NOT_FOUND,
            TEXT,
            "try /metrics, /status or /healthz\n".into(),
        ),
    })
    .await
    .unwrap_or_else(|_| reply(StatusCode::INTERNAL_SERVER_ERROR, TEXT, "panicked\n".into()));
    Ok(r)
}

fn status(p: &Pinned) -> anyhow::Result<String> {
    let doc = Status {
        services: Services::read(p)?,
        backends: Backends::read(p)?,
        vrrp: Vrrp::read(p),
    };
    Ok(serde_json::to_string_pretty(&doc)? + "\n")
}
