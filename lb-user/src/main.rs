//! `lb`: the load balancer agent and its tools.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use lb_user::cmd;

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
    Run(cmd::run::Args),
    Check(cmd::check::Args),
    Show(cmd::show::Args),
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
    let result = match Cli::parse().command {
        Command::Run(a) => cmd::run::run(a),
        Command::Check(a) => cmd::check::run(a),
        Command::Show(a) => cmd::show::run(a),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
