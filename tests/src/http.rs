//! A minimal HTTP/1.1 client for lab tests: new-connection GETs and one
//! long-lived keep-alive connection. Every call has a timeout.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use anyhow::{Context, Result, bail};

pub const TIMEOUT: Duration = Duration::from_secs(2);

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
    // std has no bind-before-connect; a raw socket with SO_REUSEADDR does it.
    use std::os::fd::FromRawFd;
    let domain = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    unsafe {
        let fd = libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            bail!("socket: {}", std::io::Error::last_os_error());
        }
        let s = TcpStream::from_raw_fd(fd);
        let one: libc::c_int = 1;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            &one as *const _ as *const _,
            4,
        );
        let tv = libc::timeval {
            tv_sec: TIMEOUT.as_secs() as i64,
            tv_usec: 0,
        };
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            &tv as *const _ as *const _,
            std::mem::size_of::<libc::timeval>() as u32,
        );
        let (l, ll) = raw(&local);
        if libc::bind(fd, &l as *const _ as *const libc::sockaddr, ll) != 0 {
            bail!("bind {local}: {}", std::io::Error::last_os_error());
        }
        let (a, al) = raw(&addr);
        if libc::connect(fd, &a as *const _ as *const libc::sockaddr, al) != 0 {
            bail!(
                "connect {addr} from {local}: {}",
                std::io::Error::last_os_error()
            );
        }
        Ok(s)
    }
}

/// A `sockaddr_storage` and its length for `sa`.
pub fn raw(sa: &SocketAddr) -> (libc::sockaddr_storage, u32) {
    let mut s: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match sa {
        SocketAddr::V4(v4) => {
            let a = unsafe { &mut *(&mut s as *mut _ as *mut libc::sockaddr_in) };
            a.sin_family = libc::AF_INET as u16;
            a.sin_port = v4.port().to_be();
            a.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
            (s, std::mem::size_of::<libc::sockaddr_in>() as u32)
        }
        SocketAddr::V6(v6) => {
            let a = unsafe { &mut *(&mut s as *mut _ as *mut libc::sockaddr_in6) };
            a.sin6_family = libc::AF_INET6 as u16;
            a.sin6_port = v6.port().to_be();
            a.sin6_addr.s6_addr = v6.ip().octets();
            (s, std::mem::size_of::<libc::sockaddr_in6>() as u32)
        }
    }
}
