//! `lb import-keepalived FILE [-o lb.toml] [--router-id ID]`: the
//! equivalent lb.toml on stdout (or in a file), and on stderr a report
//! `FILE:LINE: what and why` of everything it could not map. Exit 1 only
//! when something essential cannot be expressed, after naming every such
//! line.

use std::path::PathBuf;

use crate::{config::Config, import};

/// Translate a keepalived.conf into lb.toml.
#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  lb import-keepalived /etc/keepalived/keepalived.conf -o /etc/lb/lb.toml\n  lb check -c /etc/lb/lb.toml"
)]
pub struct Args {
    /// The keepalived.conf to read (includes are followed).
    file: PathBuf,
    /// Write lb.toml here instead of stdout.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Keep the conditional lines (`@ID ...`) for this router id, as
    /// keepalived -i ID does.
    #[arg(long)]
    router_id: Option<String>,
    /// This balancer's address, the outer source of `lb_kind TUN` services
    /// (repeat for IPv4 and IPv6; default: the file's unicast_src_ip).
    #[arg(long)]
    tunnel_source: Vec<std::net::IpAddr>,
}

pub fn run(args: Args) -> anyhow::Result<bool> {
    let imported = import::import(&args.file, args.router_id.as_deref(), &args.tunnel_source)?;
    for n in &imported.notes {
        let mark = if n.essential {
            " (cannot be imported)"
        } else {
            ""
        };
        eprintln!("{}: {}{mark}", n.at, n.what);
    }
    if imported.failed() {
        eprintln!("not imported: the lines marked above have no equivalent yet");
        return Ok(false);
    }
    // What we write must be what we accept.
    let name = args.output.clone().unwrap_or_else(|| "lb.toml".into());
    if let Err(e) = Config::parse(&name, &imported.toml) {
        eprintln!("the translation is not a valid lb.toml (a bug in the importer):\n{e}");
        return Ok(false);
    }
    match &args.output {
        Some(p) => std::fs::write(p, &imported.toml)?,
        None => print!("{}", imported.toml),
    }
    Ok(true)
}
