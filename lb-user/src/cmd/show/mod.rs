//! `lb show services|backends|flows|stats|table SERVICE|vrrp|sync|bgp`: the pinned
//! maps as a person (ipvsadm -Ln style) or a script (--json) wants them.
//! Each view is one serializable value; its text comes from the same value.

mod backends;
mod bgp;
mod flows;
mod render;
mod services;
mod stats;
mod sync;
mod table;
mod vrrp;

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use lb_common::names::DEFAULT_PIN_DIR;
use serde::Serialize;

use crate::{
    config::{BgpCfg, Config},
    maps::Pinned,
};

pub use backends::{Backends, backend_state, effective_milli};
pub use services::Services;
pub use vrrp::Vrrp;

/// Show the live state from the pinned maps (works while the agent is down).
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  lb show services\n  lb show backends -c /etc/lb/lb.toml\n  lb show table 203.0.113.10:80/tcp --json\n  lb show flows --pin-dir /sys/fs/bpf/lb --limit 50"
)]
pub struct Args {
    #[command(subcommand)]
    what: What,
    /// Find the pins from this agent config ([agent] pin_dir).
    #[arg(short, long, global = true)]
    config: Option<PathBuf>,
    /// The agent's pin directory (default /sys/fs/bpf/lb; its layout
    /// subdirectory is found), or a layout directory itself.
    #[arg(long, global = true, conflicts_with = "config")]
    pin_dir: Option<PathBuf>,
    /// JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand, Debug, Clone)]
pub enum What {
    /// Virtual services, with backend counts and traffic.
    #[command(after_help = "Example:\n  lb show services")]
    Services,
    /// Backends per service: weights, state, health checks, MAC, traffic.
    #[command(after_help = "Example:\n  lb show backends --json")]
    Backends,
    /// VRRP instances: state, priorities, master, last advert, drops.
    #[command(after_help = "Example:\n  lb show vrrp")]
    Vrrp,
    /// Flows in the flow table and the backend each is pinned to.
    #[command(after_help = "Example:\n  lb show flows --limit 20")]
    Flows {
        /// At most this many flows.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Counters: verdict reasons, packets and bytes per service.
    #[command(after_help = "Example:\n  lb show stats")]
    Stats,
    /// Flow-state sync: per peer, batches and flows sent and received, drops, lag.
    #[command(after_help = "Example:\n  lb show sync")]
    Sync,
    /// BGP: each VIP, announced through BIRD or not, and why.
    #[command(after_help = "Example:\n  lb show bgp -c /etc/lb/lb.toml")]
    Bgp,
    /// How a service's lookup table is shared among its backends.
    #[command(after_help = "Example:\n  lb show table 203.0.113.10:80/tcp")]
    Table {
        /// VIP:PORT/PROTO, e.g. 203.0.113.10:80/tcp or [2001:db8:f::10]:80/tcp.
        service: String,
    },
}

/// A view: what `--json` prints, and its table.
pub trait View: Serialize {
    fn text(&self) -> String;
}

pub fn run(args: Args) -> Result<bool> {
    let cfg = match &args.config {
        Some(c) => Some(Config::load(c).map_err(|e| anyhow::anyhow!("{e}"))?),
        None => None,
    };
    let dir = match (&cfg, args.pin_dir) {
        (Some(c), _) => c.agent.pin_dir.clone(),
        (None, Some(d)) => d,
        (None, None) => PathBuf::from(DEFAULT_PIN_DIR),
    };
    let bgp = cfg.as_ref().and_then(|c| c.bgp.as_ref());
    print!(
        "{}",
        show(&Pinned::open(&dir)?, &args.what, bgp, args.json)?
    );
    Ok(true)
}

fn render_view(v: impl View, json: bool) -> Result<String> {
    Ok(if json {
        serde_json::to_string_pretty(&v)? + "\n"
    } else {
        v.text()
    })
}

/// The view `what` of the maps `p`, as text or JSON; `bgp` is the agent's
/// [bgp] when its config is known (its device and min_backends).
pub fn show(p: &Pinned, what: &What, bgp: Option<&BgpCfg>, json: bool) -> Result<String> {
    match what {
        What::Services => render_view(Services::read(p)?, json),
        What::Backends => render_view(Backends::read(p)?, json),
        What::Flows { limit } => render_view(flows::Flows::read(p, *limit)?, json),
        What::Stats => render_view(stats::Stats::read(p)?, json),
        What::Table { service } => render_view(table::Table::read(p, service)?, json),
        What::Vrrp => render_view(Vrrp::read(p), json),
        What::Sync => render_view(sync::Sync::read(p), json),
        What::Bgp => render_view(bgp::Bgp::read(p, bgp)?, json),
    }
}
