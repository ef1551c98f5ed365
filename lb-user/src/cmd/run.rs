//! `lb run -c FILE`: the agent, in the foreground.

use std::path::PathBuf;

use crate::agent;

/// Run the agent in the foreground: attach XDP, program the maps, follow
/// backends. SIGHUP reloads the config; SIGINT/SIGTERM stop.
#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  lb run -c /etc/lb/lb.toml\n  kill -HUP $(pidof lb)   # reload; a bad file is rejected and the old config keeps running"
)]
pub struct Args {
    /// The config file (TOML).
    #[arg(short, long)]
    config: PathBuf,
    /// On exit, leave the program attached and the maps pinned, so
    /// traffic keeps flowing and a restarted agent picks them up.
    #[arg(long)]
    keep_pinned: bool,
}

pub fn run(args: Args) -> anyhow::Result<bool> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(agent::run(agent::Options {
        config: args.config,
        keep_pinned: args.keep_pinned,
    }))?;
    Ok(true)
}
