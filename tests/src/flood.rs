//! A SYN flood for lab tests: TCP SYNs to a VIP from random sources in
//! TEST-NET-1 (192.0.2.0/24) and random ports, written straight onto an
//! interface of a namespace the test made (AF_PACKET), as fast as the
//! socket takes them, bounded in count and time.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::{frame::Frame, netns};

/// Send up to `count` SYNs to `vip:port` out of `dev` in namespace `ns`,
/// framed to `dst_mac` from `src_mac`, for at most `max`: how many went.
pub fn syn_flood(
    ns: &str,
    dev: &str,
    (src_mac, dst_mac): ([u8; 6], [u8; 6]),
    (vip, port): (&str, u16),
    count: u64,
    max: Duration,
) -> Result<u64> {
    let (dev, vip) = (dev.to_string(), vip.to_string());
    netns::in_ns(ns, move || -> Result<u64> {
        // SAFETY: plain socket calls on a descriptor owned here.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW,
                (libc::ETH_P_ALL as u16).to_be() as i32,
            )
        };
        if fd < 0 {
            bail!("AF_PACKET socket: {}", std::io::Error::last_os_error());
        }
        let name = std::ffi::CString::new(dev.as_str())?;
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = ifindex as i32;
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&dst_mac);
        let t0 = Instant::now();
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut sent = 0;
        while sent < count && t0.elapsed() < max {
            // xorshift: a new source and port per SYN.
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let src = format!("192.0.2.{}", 1 + (rng % 254));
            let sport = 1024 + ((rng >> 8) % 60000) as u16;
            let mut f = Frame::tcp(&src, sport, &vip, port).build();
            f[..6].copy_from_slice(&dst_mac);
            f[6..12].copy_from_slice(&src_mac);
            let n = unsafe {
                libc::sendto(
                    fd,
                    f.as_ptr().cast(),
                    f.len(),
                    0,
                    (&sll as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::ENOBUFS) {
                    std::thread::yield_now();
                    continue;
                }
                unsafe { libc::close(fd) };
                bail!("sending a SYN: {e}");
            }
            sent += 1;
        }
        unsafe { libc::close(fd) };
        Ok(sent)
    })?
}
