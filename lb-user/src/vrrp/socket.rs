//! VRRP on the wire: raw IP protocol 112 on one interface, multicast to
//! 224.0.0.18 / ff02::12 (joined on that interface, TTL 255) or unicast to
//! configured peers. Receiving reports the IP source, destination and
//! TTL / hop limit the codec needs to validate a packet.

use std::{
    io,
    mem::MaybeUninit,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::fd::AsRawFd,
};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;

use super::codec::{MCAST_V4, MCAST_V6, PROTO_VRRP};

/// One received VRRP message.
#[derive(Debug, Clone)]
pub struct Received {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub ttl: u8,
    pub payload: Vec<u8>,
}

/// Why an IP packet could not even be read as one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

pub struct Transport {
    rx: AsyncFd<Socket>,
    tx: Socket,
    /// Our source address on this path.
    pub src: IpAddr,
    /// Unicast peers; empty = multicast.
    pub peers: Vec<IpAddr>,
    v6: bool,
    ifindex: u32,
}

/// A socket address for `a`, with the interface as scope where IPv6 needs
/// one (link-local and link-scope multicast).
fn scoped(a: IpAddr, ifindex: u32) -> SocketAddr {
    match a {
        IpAddr::V6(v) if v.is_unicast_link_local() || v.is_multicast() => {
            SocketAddr::V6(std::net::SocketAddrV6::new(v, 0, 0, ifindex))
        }
        a => SocketAddr::new(a, 0),
    }
}

fn set_int(fd: i32, level: i32, name: i32, v: i32) -> io::Result<()> {
    // SAFETY: setsockopt with a valid int option on our own socket.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            &v as *const i32 as *const libc::c_void,
            std::mem::size_of::<i32>() as u32,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl Transport {
    /// Sockets on `interface` (index `ifindex`) sending from `src`.
    pub fn open(
        interface: &str,
        ifindex: u32,
        src: IpAddr,
        peers: Vec<IpAddr>,
    ) -> io::Result<Self> {
        let v6 = src.is_ipv6();
        let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
        let proto = Some(Protocol::from(PROTO_VRRP as i32));
        let rx = Socket::new(domain, Type::RAW, proto)?;
        rx.bind_device(Some(interface.as_bytes()))?;
        rx.set_nonblocking(true)?;
        let tx = Socket::new(domain, Type::RAW, proto)?;
        tx.bind_device(Some(interface.as_bytes()))?;
        // Bound to our address, so adverts carry it as their source.
        tx.bind(&SockAddr::from(scoped(src, ifindex)))?;
        tx.set_nonblocking(true)?;
        if v6 {
            rx.join_multicast_v6(&MCAST_V6, ifindex)?;
            set_int(
                rx.as_raw_fd(),
                libc::IPPROTO_IPV6,
                libc::IPV6_RECVHOPLIMIT,
                1,
            )?;
            set_int(
                rx.as_raw_fd(),
                libc::IPPROTO_IPV6,
                libc::IPV6_RECVPKTINFO,
                1,
            )?;
            tx.set_multicast_if_v6(ifindex)?;
            tx.set_multicast_hops_v6(255)?;
            tx.set_unicast_hops_v6(255)?;
            tx.set_multicast_loop_v6(false)?;
        } else {
            rx.join_multicast_v4_n(&MCAST_V4, &socket2::InterfaceIndexOrAddress::Index(ifindex))?;
            let IpAddr::V4(s4) = src else { unreachable!() };
            tx.set_multicast_if_v4(&s4)?;
            tx.set_multicast_ttl_v4(255)?;
            tx.set_ttl_v4(255)?;
            tx.set_multicast_loop_v4(false)?;
        }
        // SAFETY: the Socket owns its fd, which stays open for as long as
        // the AsyncFd (that owns the Socket) lives.
        let rx = unsafe { AsyncFd::register(rx) }.map_err(io::Error::from)?;
        Ok(Transport {
            rx,
            tx,
            src,
            peers,
            v6,
            ifindex,
        })
    }

    /// Where adverts go: the multicast group, or each unicast peer.
    pub fn destinations(&self) -> Vec<IpAddr> {
        if !self.peers.is_empty() {
            return self.peers.clone();
        }
        if self.v6 {
            vec![IpAddr::V6(MCAST_V6)]
        } else {
            vec![IpAddr::V4(MCAST_V4)]
        }
    }

    pub fn send(&self, dst: IpAddr, msg: &[u8]) -> io::Result<()> {
        self.tx
            .send_to(msg, &SockAddr::from(scoped(dst, self.ifindex)))
            .map(drop)
    }

    /// The next packet; `Err(Malformed)` inside for one that is not even IP.
    pub async fn recv(&self) -> io::Result<Result<Received, Malformed>> {
        loop {
            let mut guard = self.rx.readable().await?;
            let r = if self.v6 {
                guard.try_io(|s| recv_v6(s.get_ref()))
            } else {
                guard.try_io(|s| recv_v4(s.get_ref()))
            };
            match r {
                Ok(res) => return res,
                Err(_would_block) => continue,
            }
        }
    }
}

/// IPv4 raw sockets deliver the IP header too.
fn recv_v4(s: &Socket) -> io::Result<Result<Received, Malformed>> {
    let mut buf = [MaybeUninit::<u8>::uninit(); 2048];
    let (n, _) = s.recv_from(&mut buf)?;
    // SAFETY: recv_from initialised the first n bytes.
    let b: &[u8] = unsafe { std::slice::from_raw_parts(buf.as_ptr() as *const u8, n) };
    Ok(parse_v4(b))
}

pub fn parse_v4(b: &[u8]) -> Result<Received, Malformed> {
    if b.len() < 20 || b[0] >> 4 != 4 {
        return Err(Malformed);
    }
    let ihl = (b[0] & 0x0f) as usize * 4;
    let total = u16::from_be_bytes([b[2], b[3]]) as usize;
    if ihl < 20 || b.len() < ihl || total < ihl {
        return Err(Malformed);
    }
    let end = total.min(b.len());
    Ok(Received {
        src: IpAddr::V4(Ipv4Addr::new(b[12], b[13], b[14], b[15])),
        dst: IpAddr::V4(Ipv4Addr::new(b[16], b[17], b[18], b[19])),
        ttl: b[8],
        payload: b[ihl..end].to_vec(),
    })
}

/// IPv6 raw sockets give the payload; hop limit and destination arrive as
/// control messages.
fn recv_v6(s: &Socket) -> io::Result<Result<Received, Malformed>> {
    let mut buf = [0u8; 2048];
    // u64s: control messages must be aligned for cmsghdr.
    let mut ctrl = [0u64; 32];
    // SAFETY: a zeroed sockaddr_in6 / msghdr are valid starting values.
    let mut from: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = &mut from as *mut _ as *mut libc::c_void;
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_in6>() as u32;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctrl.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = std::mem::size_of_val(&ctrl);
    // SAFETY: every pointer in msg points at live buffers of the stated sizes.
    let n = unsafe { libc::recvmsg(s.as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut hops = None;
    let mut dst = None;
    // SAFETY: walking the control buffer the kernel filled, with libc's macros.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            let data = libc::CMSG_DATA(c);
            match ((*c).cmsg_level, (*c).cmsg_type) {
                (libc::IPPROTO_IPV6, libc::IPV6_HOPLIMIT) => {
                    hops = Some(std::ptr::read_unaligned(data as *const i32) as u8)
                }
                (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) => {
                    let pi = std::ptr::read_unaligned(data as *const libc::in6_pktinfo);
                    dst = Some(Ipv6Addr::from(pi.ipi6_addr.s6_addr))
                }
                _ => {}
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    let (Some(ttl), Some(dst)) = (hops, dst) else {
        return Ok(Err(Malformed));
    };
    Ok(Ok(Received {
        src: IpAddr::V6(Ipv6Addr::from(from.sin6_addr.s6_addr)),
        dst: IpAddr::V6(dst),
        ttl,
        payload: buf[..n as usize].to_vec(),
    }))
}
