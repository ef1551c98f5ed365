//! Kernel settings under /proc/sys, in the calling thread's network
//! namespace (what /proc/sys/net shows is the opener's).

use std::{io, path::PathBuf};

/// Keys are paths below /proc/sys ("net/ipv4/conf/eth0/forwarding"):
/// interface names may hold dots.
fn path(key: &str) -> PathBuf {
    PathBuf::from("/proc/sys").join(key)
}

/// The key of an interface's setting: `family` is "ipv4" or "ipv6".
pub fn conf(family: &str, interface: &str, name: &str) -> String {
    format!("net/{family}/conf/{interface}/{name}")
}

/// A setting's value, trimmed.
pub fn read(key: &str) -> io::Result<String> {
    std::fs::read_to_string(path(key)).map(|s| s.trim().to_string())
}

pub fn write(key: &str, value: &str) -> io::Result<()> {
    std::fs::write(path(key), value)
}

/// Set `key` to `value`; the old value if it changed anything.
pub fn set(key: &str, value: &str) -> io::Result<Option<String>> {
    let old = read(key)?;
    if old == value {
        return Ok(None);
    }
    write(key, value)?;
    Ok(Some(old))
}
