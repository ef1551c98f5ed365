//! `lb`: the load balancer agent and its tools.

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
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
    /// Log lines as text (without timestamps under systemd's journal) or
    /// as one JSON object each, for log shippers.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    Run(cmd::run::Args),
    Check(cmd::check::Args),
    Show(cmd::show::Args),
    Drain(cmd::drain::Args),
    #[command(name = "import-keepalived")]
    ImportKeepalived(cmd::import::Args),
    Realserver(cmd::realserver::Args),
    /// Print a shell completion script.
    #[command(after_help = "Example:\n  lb completions bash > /etc/bash_completion.d/lb")]
    Completions {
        #[arg(value_enum)]
        shell: cmd::completions::For,
    },
    /// Print the man page (roff).
    #[command(hide = true)]
    Manpage,
}

/// Whether stderr is connected to systemd's journal (JOURNAL_STREAM names
/// its device and inode), which stamps every line itself.
fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(m) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    stream == format!("{}:{}", m.dev(), m.ino())
}

fn main() -> ExitCode {
    use std::io::IsTerminal;
    let cli = Cli::parse();
    // netlink-packet-route warns on every dump about kernel attributes newer than it knows.
    let filter = tracing_subscriber::EnvFilter::try_from_env("LB_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,netlink_packet_route=error"));
    let log = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter);
    match (cli.log_format, stderr_is_journal()) {
        (LogFormat::Json, _) => log.json().init(),
        (LogFormat::Text, true) => log.without_time().init(),
        (LogFormat::Text, false) => log.init(),
    }
    let result = match cli.command {
        Command::Run(a) => cmd::run::run(a),
        Command::Check(a) => cmd::check::run(a),
        Command::Show(a) => cmd::show::run(a),
        Command::Drain(a) => cmd::drain::run(a),
        Command::ImportKeepalived(a) => cmd::import::run(a),
        Command::Realserver(a) => cmd::realserver::run(a),
        Command::Completions { shell } => cmd::completions::completions(shell, Cli::command()),
        Command::Manpage => cmd::completions::manpage(Cli::command()),
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
