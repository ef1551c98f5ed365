//! How a check reaches its backend: straight to the backend's address, or
//! through the data path (`via = "dataplane"`): from the agent's check
//! namespace, bound to the balancer's own address and one of the backend's
//! check ports, to the VIP. The XDP program on the namespace's veth sends
//! it to that backend as client traffic would go.

use std::{
    fs::File,
    io,
    net::{IpAddr, SocketAddr},
    os::fd::AsRawFd,
    sync::{
        Arc,
        atomic::{AtomicU16, Ordering},
    },
    time::Duration,
};

use lb_common::check::CHECK_BLOCK;
use socket2::{Domain, Socket, Type};
use tokio::net::TcpStream;

/// The agent's check namespace (see agent/check_path.rs).
#[derive(Debug)]
pub struct CheckNs {
    /// Keeps the namespace alive; sockets are made in it.
    pub ns: File,
    /// The balancer's own addresses, the checks' sources.
    pub src4: Option<IpAddr>,
    pub src6: Option<IpAddr>,
}

pub enum Dialer {
    Direct,
    Dataplane {
        ns: Arc<CheckNs>,
        /// First of the backend's CHECK_BLOCK source ports.
        base: u16,
        next: AtomicU16,
    },
}

impl Dialer {
    pub fn dataplane(ns: Arc<CheckNs>, base: u16) -> Self {
        Dialer::Dataplane {
            ns,
            base,
            next: AtomicU16::new(0),
        }
    }

    /// Connect to `target` (bounded by `timeout`).
    pub async fn connect(&self, target: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        let Dialer::Dataplane { ns, base, next } = self else {
            return TcpStream::connect(target).await;
        };
        let src = if target.is_ipv4() { ns.src4 } else { ns.src6 }.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                "the balancer's interface has no address of the VIP's family",
            )
        })?;
        // Each attempt takes the next port; one still busy (a hung check)
        // is skipped.
        let start = next.fetch_add(1, Ordering::Relaxed);
        let ns = ns.ns.try_clone()?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let base = *base;
        // A thread of its own: it joins the namespace, which a pooled
        // thread must never do.
        std::thread::Builder::new()
            .name("lb-check-dial".into())
            .spawn(move || {
                let r = (|| {
                    // SAFETY: affects only this short-lived thread.
                    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    let mut last = None;
                    for i in 0..CHECK_BLOCK {
                        let port = base + (start.wrapping_add(i) % CHECK_BLOCK);
                        match connect_from(SocketAddr::new(src, port), target, timeout) {
                            Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = Some(e),
                            r => return r,
                        }
                    }
                    Err(last.unwrap_or_else(|| io::Error::other("no free check port")))
                })();
                let _ = tx.send(r);
            })?;
        let s = rx
            .await
            .map_err(|_| io::Error::other("check dial thread died"))??;
        s.set_nonblocking(true)?;
        TcpStream::from_std(s)
    }
}

fn connect_from(
    local: SocketAddr,
    target: SocketAddr,
    timeout: Duration,
) -> io::Result<std::net::TcpStream> {
    let s = Socket::new(Domain::for_address(target), Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.bind(&local.into())?;
    s.connect_timeout(&target.into(), timeout)?;
    Ok(s.into())
}
