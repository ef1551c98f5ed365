//! `--kernel-tunnel`: decapsulation by the kernel's own `ipip`,
//! `ip6_tunnel` and `fou` modules instead of the XDP program, where a host
//! has them. Driven through `modprobe` and `ip`, as an operator would (the
//! FOU netlink family has no crate); every change is recorded for `down`.

use std::{net::IpAddr, path::Path, process::Command};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::{Mode, state::State};
use crate::sysctl;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changes {
    /// Modules `up` loaded (absent before).
    pub modules: Vec<String>,
    /// Tunnel devices `up` brought up.
    pub links_up: Vec<String>,
    /// FOU receive ports `up` added, and whether for IPv6.
    pub fou: Vec<(u16, bool)>,
}

fn run(cmd: &str, args: &[&str]) -> Result<String> {
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
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn loaded(module: &str) -> bool {
    Path::new("/sys/module").join(module).exists()
}

/// The modules a mode needs for these VIPs: IPv4 VIPs arrive as IPIP
/// (tunl0) or 4in6 (ip6tnl0), IPv6 VIPs as IP6IP6 (ip6tnl0).
fn modules(mode: Mode, vips: &[IpAddr]) -> Vec<&'static str> {
    let mut m = vec!["ip6_tunnel"];
    if vips.iter().any(IpAddr::is_ipv4) {
        m.insert(0, "ipip");
    }
    if mode == Mode::Gue {
        m.extend(["fou", "fou6"]);
    }
    m
}

/// Whether every module the mode needs exists on this kernel (loaded,
/// built in, or loadable); the missing one otherwise.
pub fn missing(mode: Mode, vips: &[IpAddr]) -> Option<&'static str> {
    modules(mode, vips).into_iter().find(|m| {
        !loaded(m)
            && !Command::new("modprobe")
                .args(["-n", "-q", m])
                .status()
                .is_ok_and(|s| s.success())
    })
}

pub fn up(mode: Mode, vips: &[IpAddr], gue_port: u16, state: &mut State) -> Result<()> {
    if let Some(m) = missing(mode, vips) {
        bail!(
            "--kernel-tunnel: this kernel has no {m} module; leave --kernel-tunnel out to use lb's XDP decapsulation instead"
        );
    }
    let mut ch = state.kernel.take().unwrap_or_default();
    for m in modules(mode, vips) {
        if !loaded(m) {
            run("modprobe", &[m])?;
            ch.modules.push(m.to_string());
        }
    }
    for dev in ["tunl0", "ip6tnl0"] {
        if !Path::new("/sys/class/net").join(dev).exists() {
            continue;
        }
        let flags =
            std::fs::read_to_string(format!("/sys/class/net/{dev}/flags")).unwrap_or_default();
        let up = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16)
            .is_ok_and(|f| f & 1 != 0);
        if !up {
            run("ip", &["link", "set", dev, "up"])?;
            ch.links_up.push(dev.to_string());
        }
        // Decapsulated packets arrive on the tunnel device while replies
        // leave by the physical one: strict reverse-path filtering would
        // drop them (the effective value is the larger of all and dev).
        let key = sysctl::conf("ipv4", dev, "rp_filter");
        if dev == "tunl0"
            && let Ok(Some(old)) = sysctl::set(&key, "0")
        {
            state.changed(&key, old, "0");
        }
    }
    let all = sysctl::conf("ipv4", "all", "rp_filter");
    if sysctl::read(&all).is_ok_and(|v| v == "1")
        && let Ok(Some(old)) = sysctl::set(&all, "2")
    {
        state.changed(&all, old, "2");
    }
    if mode == Mode::Gue {
        let port = gue_port.to_string();
        for v6 in [false, true] {
            let family = if v6 { "-6" } else { "-4" };
            let shown = run("ip", &[family, "fou", "show"]).unwrap_or_default();
            if shown
                .lines()
                .any(|l| l.split_whitespace().nth(1) == Some(port.as_str()))
            {
                continue;
            }
            run("ip", &[family, "fou", "add", "port", &port, "gue"])?;
            ch.fou.push((gue_port, v6));
        }
    }
    state.kernel = Some(ch);
    Ok(())
}

/// Undo what `up` recorded, newest first.
pub fn down(ch: &Changes) -> Vec<String> {
    let mut errors = Vec::new();
    for (port, v6) in ch.fou.iter().rev() {
        let family = if *v6 { "-6" } else { "-4" };
        if let Err(e) = run("ip", &[family, "fou", "del", "port", &port.to_string()]) {
            errors.push(e.to_string());
        }
    }
    for dev in ch.links_up.iter().rev() {
        if let Err(e) = run("ip", &["link", "set", dev, "down"]) {
            errors.push(e.to_string());
        }
    }
    for m in ch.modules.iter().rev() {
        if let Err(e) = run("modprobe", &["-r", m]) {
            errors.push(e.to_string());
        }
    }
    errors
}
