//! Network namespace plumbing for labs: run `ip`, run code or children
//! inside a namespace (network namespace only, so pins stay in the host's
//! bpffs), and remove namespaces.

use std::{
    fs::File,
    os::{fd::AsRawFd, unix::process::CommandExt},
    process::{Command, Output},
};

use anyhow::{Context, Result, bail};

pub fn netns_path(ns: &str) -> String {
    format!("/run/netns/{ns}")
}

/// Run a command to completion; fail with its stderr.
pub fn run(cmd: &str, args: &[&str]) -> Result<Output> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .with_context(|| format!("running {cmd}"))?;
    if !out.status.success() {
        bail!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

/// `ip -n NS ARGS...` (or plain `ip ARGS` when ns is empty).
pub fn ip(ns: &str, args: &str) -> Result<Output> {
    let mut v: Vec<&str> = Vec::new();
    if !ns.is_empty() {
        v.extend(["-n", ns]);
    }
    v.extend(args.split_whitespace());
    run("ip", &v)
}

/// `ip netns exec NS CMD...`, for tools that need the namespace's /sys too.
pub fn exec(ns: &str, args: &[&str]) -> Result<Output> {
    let mut v = vec!["netns", "exec", ns];
    v.extend_from_slice(args);
    run("ip", &v)
}

pub fn sysctl(ns: &str, key: &str, value: &str) -> Result<()> {
    exec(ns, &["sysctl", "-qw", &format!("{key}={value}")]).map(|_| ())
}

/// Make `cmd` start inside network namespace `ns` (mount namespace untouched).
pub fn enter(cmd: &mut Command, ns: &str) -> Result<()> {
    let f = File::open(netns_path(ns)).with_context(|| format!("opening namespace {ns}"))?;
    let fd = f.as_raw_fd();
    // SAFETY: setns is async-signal-safe; `f` outlives the spawn (the closure
    // owns it), so the fd is valid in the child.
    unsafe {
        cmd.pre_exec(move || {
            let _keep = &f;
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(())
}

/// Run `f` on a new thread that has joined namespace `ns`.
pub fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    let file = File::open(netns_path(ns)).with_context(|| format!("opening namespace {ns}"))?;
    std::thread::spawn(move || {
        // SAFETY: affects only this thread.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(anyhow::anyhow!(
                "setns: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(f())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("thread in namespace panicked"))?
}

/// The calling thread inside namespace `ns` until the guard drops (then
/// back where it was). Test functions run on threads of their own.
pub struct Entered {
    home: File,
}

impl Entered {
    pub fn new(ns: &str) -> Result<Self> {
        let home =
            File::open("/proc/thread-self/ns/net").context("opening this thread's namespace")?;
        let target =
            File::open(netns_path(ns)).with_context(|| format!("opening namespace {ns}"))?;
        // SAFETY: affects only this thread.
        if unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!("setns {ns}: {}", std::io::Error::last_os_error());
        }
        Ok(Self { home })
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { libc::setns(self.home.as_raw_fd(), libc::CLONE_NEWNET) };
    }
}

/// Every namespace whose name starts with `prefix`.
pub fn list(prefix: &str) -> Vec<String> {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

pub fn delete(ns: &str) {
    let _ = Command::new("ip").args(["netns", "delete", ns]).output();
}

/// A namespace that exists for the guard's lifetime (removed on drop, also on panic).
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Result<Self> {
        let name = format!("{}-{tag}", crate::lab::unique_prefix());
        ip("", &format!("netns add {name}"))?;
        Ok(Self { name })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        delete(&self.name);
    }
}

/// Interface `dev` of namespace `ns`: (ifindex, MAC), as `ip -j link` says.
pub fn link(ns: &str, dev: &str) -> Result<(u32, [u8; 6])> {
    let out = ip(ns, &format!("-j link show {dev}"))?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let text = v[0]["address"]
        .as_str()
        .with_context(|| format!("{dev}'s address"))?;
    let mut mac = [0u8; 6];
    for (m, h) in mac.iter_mut().zip(text.split(':')) {
        *m = u8::from_str_radix(h, 16)?;
    }
    let ifindex = v[0]["ifindex"]
        .as_u64()
        .with_context(|| format!("{dev}'s ifindex"))?;
    Ok((ifindex as u32, mac))
}
