//! A minimal HTTP/1.1 client for lab tests: new-connection GETs and one
//! long-lived keep-alive connection. Every call has a timeout.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use anyhow::{Context, Result, bail};

pub const TIMEOUT: Duration = Duration::from_secs(2);

/// GET `path` on a new connection with `accept` (or none), the whole
/// answer read until the server closes: (status code, headers, body).
pub fn fetch(addr: SocketAddr, path: &str, accept: Option<&str>) -> Result<(u16, String, String)> {
    let mut s =
        TcpStream::connect_timeout(&addr, TIMEOUT).with_context(|| format!("connect {addr}"))?;
    s.set_read_timeout(Some(TIMEOUT * 5))?;
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: lab\r\n{accept}Connection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    let (head, body) = answer.split_once("\r\n\r\n").context("no end of headers")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no status code")?;
    Ok((status, head.to_string(), body.to_string()))
}

/// GET / from namespace `ns`, again every 100 ms until an answer `ok`
/// accepts or `wait` has passed: the last answer, or the last error.
pub fn get_until(
    ns: &str,
    addr: SocketAddr,
    wait: Duration,
    ok: impl Fn(&str) -> bool + Send + 'static,
) -> std::result::Result<String, String> {
    crate::netns::in_ns(ns, move || {
        let deadline = std::time::Instant::now() + wait;
        loop {
            let last = get(addr).map_err(|e| format!("{e:#}"));
            if last.as_deref().is_ok_and(&ok) || std::time::Instant::now() > deadline {
                return last;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .map_err(|e| format!("{e:#}"))?
}

/// GET / on a new connection; the body (the backend's name), trimmed.
pub fn get(addr: SocketAddr) -> Result<String> {
    let mut c = Conn::open(addr)?;
    c.get()
}

pub struct Conn {
    r: BufReader<TcpStream>,
    w: TcpStream,
    pub local: SocketAddr,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> Result<Conn> {
        Self::open_from(addr, None)
    }

    /// Connect from a chosen local address (fixed source port), for
    /// tests whose outcome must not depend on ephemeral port choice.
    pub fn open_from(addr: SocketAddr, local: Option<SocketAddr>) -> Result<Conn> {
        let s = match local {
            None => TcpStream::connect_timeout(&addr, TIMEOUT)
                .with_context(|| format!("connect {addr}"))?,
            Some(l) => connect_from(addr, l)?,
        };
        s.set_read_timeout(Some(TIMEOUT))?;
        s.set_write_timeout(Some(TIMEOUT))?;
        s.set_nodelay(true)?;
        let local = s.local_addr()?;
        Ok(Conn {
            r: BufReader::new(s.try_clone()?),
            w: s,
            local,
        })
    }

    /// One GET / on this connection; the body, trimmed.
    pub fn get(&mut self) -> Result<String> {
        self.w
            .write_all(b"GET / HTTP/1.1\r\nHost: lab\r\nConnection: keep-alive\r\n\r\n")?;
        let mut status = String::new();
        self.r.read_line(&mut status)?;
        if !status.starts_with("HTTP/1.1 200") {
            bail!("bad status line {status:?}");
        }
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            if self.r.read_line(&mut h)? == 0 {
                bail!("connection closed in headers");
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse()?;
            }
            if h == "\r\n" {
                break;
            }
        }
        let mut body = vec![0u8; len];
        self.r.read_exact(&mut body)?;
        Ok(String::from_utf8_lossy(&body).trim().to_string())
    }
}

fn connect_from(addr: SocketAddr, local: SocketAddr) -> Result<TcpStream> {
    // std has no bind-before-connect; SO_REUSEADDR lets a test reuse a
    // source port that is still in TIME_WAIT.
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.set_write_timeout(Some(TIMEOUT))?;
    s.bind(&local.into())
        .with_context(|| format!("bind {local}"))?;
    s.connect(&addr.into())
        .with_context(|| format!("connect {addr} from {local}"))?;
    Ok(s.into())
}
