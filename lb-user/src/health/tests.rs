//! The check loop under paused tokio time (every timing rule), and each
//! checker against real loopback servers and processes.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use futures::future::BoxFuture;
use lb_common::ServiceKey;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    sync::mpsc,
    time::Instant,
};

use super::*;
use crate::config::{Check, HttpProbe, Initial, Probe};

const T: Timing = Timing {
    interval: Duration::from_secs(2),
    retries: 3,
    retry_delay: Duration::from_millis(500),
    rise: 2,
};
const TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug)]
enum Act {
    Pass,
    Fail,
    Hang,
    Panic,
}

/// Plays `acts` in order, then passes forever.
struct Scripted {
    acts: Vec<Act>,
    n: AtomicUsize,
}

impl Checker for Scripted {
    fn check(&self) -> BoxFuture<'_, Result<(), CheckError>> {
        let act = self
            .acts
            .get(self.n.fetch_add(1, Ordering::SeqCst))
            .copied()
            .unwrap_or(Act::Pass);
        Box::pin(async move {
            match act {
                Act::Pass => Ok(()),
                Act::Fail => Err(CheckError::Status(503)),
                Act::Hang => std::future::pending().await,
                Act::Panic => panic!("checker bug"),
            }
        })
    }
}

fn key(n: u8) -> Key {
    (
        ServiceKey::default(),
        IpAddr::V4(Ipv4Addr::new(198, 51, 100, n)),
    )
}

/// Run the loop for `acts` and collect (ms since start, status, changed, error).
async fn play(
    acts: Vec<Act>,
    initial: Initial,
    reports: usize,
) -> Vec<(u128, Status, bool, Option<CheckError>)> {
    let (tx, mut rx) = mpsc::channel(64);
    let start = Instant::now();
    let checker = Arc::new(Scripted {
        acts,
        n: AtomicUsize::new(0),
    });
    let task = tokio::spawn(run_task(
        key(1),
        checker,
        TIMEOUT,
        Machine::new(T, initial),
        tx,
    ));
    let mut out = Vec::new();
    for _ in 0..reports {
        let r = rx.recv().await.expect("report");
        let at = (Instant::now() - start).as_millis();
        out.push((at, r.status, r.changed, r.error));
    }
    task.abort();
    out
}

#[tokio::test(start_paused = true)]
async fn up_goes_down_after_retries_spaced_by_retry_delay_then_rises() {
    use Act::*;
    let r = play(
        vec![Pass, Fail, Fail, Fail, Pass, Fail, Pass, Pass],
        Initial::Up,
        8,
    )
    .await;
    let brief: Vec<(u128, Status, bool)> = r.iter().map(|(t, s, c, _)| (*t, *s, *c)).collect();
    assert_eq!(
        brief,
        vec![
            (0, Status::Up, false),
            (2000, Status::Up, false),
            (2500, Status::Up, false),
            (3000, Status::Down, true),
            (5000, Status::Down, false),
            (7000, Status::Down, false),
            (9000, Status::Down, false),
            (11000, Status::Up, true),
        ]
    );
    assert_eq!(r[3].3, Some(CheckError::Status(503)));
}

#[tokio::test(start_paused = true)]
async fn new_backend_joins_on_its_first_pass() {
    use Act::*;
    let r = play(vec![Pass], Initial::Down, 1).await;
    assert_eq!((r[0].0, r[0].1, r[0].2), (0, Status::Up, true));
    let r = play(vec![Fail, Pass, Pass], Initial::Down, 3).await;
    let brief: Vec<(u128, Status, bool)> = r.iter().map(|(t, s, c, _)| (*t, *s, *c)).collect();
    assert_eq!(
        brief,
        vec![
            (0, Status::Down, true),
            (2000, Status::Down, false),
            (4000, Status::Up, true),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_hanging_check_fails_at_the_timeout() {
    use Act::*;
    let r = play(vec![Hang, Hang, Hang], Initial::Up, 3).await;
    // Each attempt lasts the timeout; retries follow retry_delay later.
    let times: Vec<u128> = r.iter().map(|x| x.0).collect();
    assert_eq!(times, vec![1000, 2500, 4000]);
    assert_eq!(r[2].1, Status::Down);
    assert_eq!(r[0].3, Some(CheckError::Timeout(TIMEOUT)));
    assert_eq!(r[0].3.as_ref().unwrap().to_string(), "timeout after 1s");
}

#[tokio::test(start_paused = true)]
async fn a_panicking_checker_is_a_failure_and_others_keep_running() {
    use Act::*;
    let (tx, mut rx) = mpsc::channel(64);
    let bad = Arc::new(Scripted {
        acts: vec![Panic; 100],
        n: AtomicUsize::new(0),
    });
    let good = Arc::new(Scripted {
        acts: vec![],
        n: AtomicUsize::new(0),
    });
    let t1 = tokio::spawn(run_task(
        key(1),
        bad,
        TIMEOUT,
        Machine::new(T, Initial::Up),
        tx.clone(),
    ));
    let t2 = tokio::spawn(run_task(
        key(2),
        good,
        TIMEOUT,
        Machine::new(T, Initial::Up),
        tx,
    ));
    let mut seen = std::collections::HashMap::<Key, Vec<Status>>::new();
    for _ in 0..20 {
        let r = rx.recv().await.expect("both tasks keep reporting");
        if r.key == key(1) {
            assert_eq!(r.error, Some(CheckError::Panicked));
        }
        seen.entry(r.key).or_default().push(r.status);
    }
    assert_eq!(seen[&key(1)].last(), Some(&Status::Down));
    assert!(seen[&key(2)].iter().all(|s| *s == Status::Up));
    assert!(seen[&key(2)].len() >= 4, "{seen:?}");
    t1.abort();
    t2.abort();
}

/// A loopback HTTP server that answers every request with `answer` (raw),
/// or never answers when it is None.
async fn server(answer: Option<&'static str>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                match answer {
                    Some(a) => {
                        let _ = s.write_all(a.as_bytes()).await;
                    }
                    None => tokio::time::sleep(Duration::from_secs(30)).await,
                }
            });
        }
    });
    addr
}

fn http(expect_body: Option<&str>) -> Check {
    Check {
        probe: Probe::Http(HttpProbe {
            path: "/healthz".into(),
            host: None,
            expect_status: vec![200, 204],
            expect_body: expect_body.map(String::from),
            tls: false,
            tls_verify: true,
            port: None,
        }),
        ..Check::default()
    }
}

async fn once(check: &Check, target: SocketAddr) -> Result<(), CheckError> {
    let c = checker(check, target, crate::health::dial::Dialer::Direct);
    match tokio::time::timeout(Duration::from_millis(500), c.check()).await {
        Ok(r) => r,
        Err(_) => Err(CheckError::Timeout(Duration::from_millis(500))),
    }
}

const OK: &str = "HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nhealthy\n";

#[tokio::test]
async fn http_checks_status_body_and_timeout() {
    let ok = server(Some(OK)).await;
    assert_eq!(once(&http(None), ok).await, Ok(()));
    assert_eq!(once(&http(Some("healthy")), ok).await, Ok(()));
    assert_eq!(
        once(&http(Some("ready")), ok).await,
        Err(CheckError::BodyMismatch("ready".into()))
    );
    let e503 = server(Some(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n",
    ))
    .await;
    let r = once(&http(None), e503).await;
    assert_eq!(r, Err(CheckError::Status(503)));
    assert_eq!(r.unwrap_err().to_string(), "status 503");
    // A bodiless 204 passes; a close-delimited body is read to the end.
    let empty = server(Some("HTTP/1.1 204 No Content\r\n\r\n")).await;
    assert_eq!(once(&http(None), empty).await, Ok(()));
    let close = server(Some("HTTP/1.0 200 OK\r\n\r\nall healthy here")).await;
    assert_eq!(once(&http(Some("healthy")), close).await, Ok(()));
    let hang = server(None).await;
    assert!(matches!(
        once(&http(None), hang).await,
        Err(CheckError::Timeout(_))
    ));
    let garbage = server(Some("SSH-2.0-OpenSSH\r\n\r\n")).await;
    assert!(matches!(
        once(&http(None), garbage).await,
        Err(CheckError::Http(_))
    ));
}

#[tokio::test]
async fn http_sends_host_and_path() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(String::new()));
    let s2 = seen.clone();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).await.unwrap();
        *s2.lock().unwrap() = String::from_utf8_lossy(&buf[..n]).to_string();
        s.write_all(OK.as_bytes()).await.unwrap();
    });
    let mut c = http(None);
    if let Probe::Http(h) = &mut c.probe {
        h.host = Some("www.example.com".into());
    }
    assert_eq!(once(&c, addr).await, Ok(()));
    let req = seen.lock().unwrap().to_ascii_lowercase();
    assert!(req.starts_with("get /healthz http/1.1\r\n"), "{req}");
    assert!(req.contains("host: www.example.com\r\n"), "{req}");
}

#[tokio::test]
async fn tcp_check_passes_on_accept_and_fails_refused() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let open = l.local_addr().unwrap();
    let tcp = Check {
        probe: Probe::Tcp { port: None },
        ..Check::default()
    };
    assert_eq!(once(&tcp, open).await, Ok(()));
    drop(l);
    let r = once(&tcp, open).await;
    assert_eq!(r, Err(CheckError::Refused));
    assert_eq!(r.unwrap_err().to_string(), "connection refused");
    // A port override wins over the service port.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let over = Check {
        probe: Probe::Tcp { port: Some(port) },
        ..Check::default()
    };
    assert_eq!(once(&over, open).await, Ok(()));
}

fn script(cmd: &str) -> Check {
    Check {
        probe: Probe::Script {
            command: vec!["/bin/sh".into(), "-c".into(), cmd.into()],
        },
        ..Check::default()
    }
}

#[tokio::test]
async fn script_follows_the_exit_code_and_sees_the_backend() {
    let target: SocketAddr = "198.51.100.12:8080".parse().unwrap();
    assert_eq!(once(&script("exit 0"), target).await, Ok(()));
    let r = once(&script("exit 2"), target).await;
    assert_eq!(r, Err(CheckError::Exit(2)));
    assert_eq!(r.unwrap_err().to_string(), "exit 2");
    let env = r#"test "$LB_BACKEND_ADDRESS" = 198.51.100.12 && test "$LB_BACKEND_PORT" = 8080"#;
    assert_eq!(once(&script(env), target).await, Ok(()));
    let missing = Check {
        probe: Probe::Script {
            command: vec!["/nonexistent/check".into()],
        },
        ..Check::default()
    };
    assert!(matches!(
        once(&missing, target).await,
        Err(CheckError::Spawn(_))
    ));
}

#[tokio::test]
async fn a_hanging_script_and_its_children_are_killed_at_the_timeout() {
    let dir = std::env::temp_dir().join(format!("lb-script-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pidfile = dir.join("pid");
    let cmd = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
    let target: SocketAddr = "198.51.100.12:80".parse().unwrap();
    let started = std::time::Instant::now();
    assert!(matches!(
        once(&script(&cmd), target).await,
        Err(CheckError::Timeout(_))
    ));
    assert!(started.elapsed() < Duration::from_secs(5));
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let alive = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
    };
    while alive(pid) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!alive(pid), "the script's child {pid} outlived the timeout");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn https_check_with_and_without_verification() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let der = cert.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![der], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(s).await else {
                    return;
                };
                let mut buf = vec![0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(OK.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    let tls = |verify: bool| {
        let mut c = http(Some("healthy"));
        if let Probe::Http(h) = &mut c.probe {
            h.tls = true;
            h.tls_verify = verify;
            h.host = Some("localhost".into());
        }
        c
    };
    assert_eq!(once(&tls(false), addr).await, Ok(()));
    // Self-signed: not trusted by the system roots.
    let r = once(&tls(true), addr).await;
    assert!(
        matches!(&r, Err(CheckError::Tls(m)) if m.contains("certificate")),
        "{r:?}"
    );
}
