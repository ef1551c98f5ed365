//! The agent's TUN device: made with TUNSETIFF on /dev/net/tun and not
//! persistent, so it exists exactly as long as the agent's descriptor.
//! Nothing is ever read from it; it only holds addresses for BIRD.

use std::{
    fs::{File, OpenOptions},
    io,
    os::fd::AsRawFd,
};

use anyhow::{Context, Result, bail};

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;

#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _rest: [u8; 22],
}

/// The open device: dropping it deletes the interface.
pub struct Device {
    _fd: File,
    pub name: String,
}

impl Device {
    /// Make TUN device `name`. Fails if an interface of that name exists
    /// (another agent's device, or anything else).
    pub fn create(name: &str) -> Result<Device> {
        let fd = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")
            .context("opening /dev/net/tun (is the tun module available?)")?;
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            flags: IFF_TUN | IFF_NO_PI,
            _rest: [0; 22],
        };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        // SAFETY: TUNSETIFF reads and writes an ifreq, which `req` is.
        if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF, &mut req) } != 0 {
            let e = io::Error::last_os_error();
            match (e.raw_os_error(), owner(name)) {
                (Some(libc::EBUSY), Some(pid)) => {
                    bail!("device {name} is held by another process (pid {pid}, another agent?)")
                }
                (Some(libc::EINVAL | libc::EBUSY), _) => bail!(
                    "an interface named {name} exists and is not ours: choose another [bgp] device"
                ),
                _ => return Err(e).with_context(|| format!("creating TUN device {name}")),
            }
        }
        // No link-local address: nothing but the VIPs for BIRD to see.
        let key = crate::sysctl::conf("ipv6", name, "addr_gen_mode");
        if let Err(e) = crate::sysctl::set(&key, "1") {
            tracing::debug!(key, error = %e, "cannot turn off IPv6 link-local on the device");
        }
        Ok(Device {
            _fd: fd,
            name: name.to_string(),
        })
    }
}

/// The pid of the process whose TUN descriptor holds interface `name` in
/// this process's network namespace (the agent to signal for `lb drain`).
pub fn owner(name: &str) -> Option<u32> {
    let ours = std::fs::read_link("/proc/self/ns/net").ok()?;
    let want = format!("iff:\t{name}\n");
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let dir = entry.path();
        if std::fs::read_link(dir.join("ns/net")).ok().as_ref() != Some(&ours) {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(dir.join("fdinfo")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_to_string(fd.path()).is_ok_and(|s| s.contains(&want)) {
                return Some(pid);
            }
        }
    }
    None
}
