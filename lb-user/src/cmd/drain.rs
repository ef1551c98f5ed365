//! `lb drain -c FILE`: take this node out of a BGP scale-out gracefully.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{bgp::device, config::Config};

/// Withdraw this node's BGP routes and stop the agent once traffic has
/// gone: it keeps forwarding until no VIP packet has arrived for [bgp]
/// drain_idle (or drain_timeout passes). The same as `kill -USR1` on the
/// agent.
#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  lb drain -c /etc/lb/lb.toml\n  systemctl kill -s USR1 lb   # the same, through systemd"
)]
pub struct Args {
    /// The running agent's config (its [bgp] device finds the agent).
    #[arg(short, long)]
    config: PathBuf,
    /// Return once the agent has been told, without waiting for it to stop.
    #[arg(long)]
    no_wait: bool,
}

pub fn run(args: Args) -> Result<bool> {
    let cfg = Config::load(&args.config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let Some(b) = cfg.bgp else {
        bail!(
            "{}: no [bgp]: there is no route to withdraw; stop the agent with SIGTERM",
            args.config.display()
        );
    };
    let pid = device::owner(&b.device).with_context(|| {
        format!(
            "no agent holds device {} in this network namespace (is `lb run` running here?)",
            b.device
        )
    })?;
    // SAFETY: kill(2) with a pid read from /proc.
    if unsafe { libc::kill(pid as i32, libc::SIGUSR1) } != 0 {
        return Err(std::io::Error::last_os_error()).context("signalling the agent");
    }
    println!(
        "agent {pid}: routes withdrawn; it stops after {:?} without VIP packets (at most {:?})",
        b.drain_idle, b.drain_timeout
    );
    if args.no_wait {
        return Ok(true);
    }
    let start = Instant::now();
    let limit = b.drain_timeout + Duration::from_secs(30);
    while alive(pid) && start.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(50));
    }
    if alive(pid) {
        bail!("agent {pid} still runs after {limit:?}");
    }
    println!(
        "agent {pid} stopped after {:.1} s",
        start.elapsed().as_secs_f64()
    );
    Ok(true)
}

/// Whether process `pid` still runs (a zombie has stopped: only its
/// parent has not collected it yet).
fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // "pid (comm) S ...": the state follows the last parenthesis.
    stat.rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next())
        .is_some_and(|state| state != 'Z' && state != 'X')
}
