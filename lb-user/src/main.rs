//! `lb`: the load balancer agent and its tools.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use lb_common::names::DEFAULT_PIN_DIR;
use lb_user::{
    cmd::{self, show::View},
    config::Config,
    pinned::Pinned,
};

#[derive(Parser)]
#[command(
    name = "lb",
    version,
    about = "XDP L4 load balancer: agent, config check and map inspection"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent in the foreground: attach XDP, program the maps, follow
    /// backends. SIGHUP reloads the config; SIGINT/SIGTERM stop.
    #[command(
        after_help = "Example:\n  lb run -c /etc/lb/lb.toml\n  kill -HUP $(pidof lb)   # reload; a bad file is rejected and the old config keeps running"
    )]
    Run {
        /// The config file (TOML).
        #[arg(short, long)]
        config: PathBuf,
        /// On exit, leave the program attached and the maps pinned, so
        /// traffic keeps flowing and a restarted agent picks them up.
        #[arg(long)]
        keep_pinned: bool,
    },
    /// Validate a config and print what it would do; exit 1 on error.
    #[command(after_help = "Example:\n  lb check -c /etc/lb/lb.toml")]
    Check {
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Show the live state from the pinned maps (works while the agent is down).
    #[command(
        after_help = "Examples:\n  lb show services\n  lb show backends -c /etc/lb/lb.toml\n  lb show table 203.0.113.10:80/tcp --json\n  lb show flows --pin-dir /sys/fs/bpf/lb/v2 --limit 50"
    )]
    Show {
        #[command(subcommand)]
        what: ShowWhat,
        /// Find the pins from this agent config ([agent] pin_dir).
        #[arg(short, long, global = true)]
        config: Option<PathBuf>,
        /// The pin directory (default /sys/fs/bpf/lb/v2).
        #[arg(long, global = true, conflicts_with = "config")]
        pin_dir: Option<PathBuf>,
        /// JSON instead of a table.
        #[arg(long, global = true)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ShowWhat {
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
    /// How a service's lookup table is shared among its backends.
    #[command(after_help = "Example:\n  lb show table 203.0.113.10:80/tcp")]
    Table {
        /// VIP:PORT/PROTO, e.g. 203.0.113.10:80/tcp or [2001:db8:f::10]:80/tcp.
        service: String,
    },
}

fn main() -> ExitCode {
    use std::io::IsTerminal;
    // netlink-packet-route warns on every dump about kernel attributes newer than it knows.
    let filter = tracing_subscriber::EnvFilter::try_from_env("LB_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,netlink_packet_route=error"));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter)
        .init();
    match real_main(Cli::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<bool> {
    match cli.command {
        Command::Run {
            config,
            keep_pinned,
        } => cmd::run::run(config, keep_pinned).map(|()| true),
        Command::Check { config } => cmd::check::run(&config),
        Command::Show {
            what,
            config,
            pin_dir,
            json,
        } => {
            let dir = match (config, pin_dir) {
                (Some(c), _) => {
                    Config::load(&c)
                        .map_err(|e| anyhow::anyhow!("{e}"))?
                        .agent
                        .pin_dir
                }
                (None, Some(d)) => d,
                (None, None) => PathBuf::from(DEFAULT_PIN_DIR),
            };
            let view = match what {
                ShowWhat::Services => View::Services,
                ShowWhat::Backends => View::Backends,
                ShowWhat::Flows { limit } => View::Flows { limit },
                ShowWhat::Stats => View::Stats,
                ShowWhat::Vrrp => View::Vrrp,
                ShowWhat::Table { service } => View::Table { service },
            };
            print!("{}", cmd::show::run(&Pinned::open(&dir)?, &view, json)?);
            Ok(true)
        }
    }
}
