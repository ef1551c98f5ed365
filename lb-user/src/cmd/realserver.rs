//! `lb realserver up|down|status`: set up (and undo) a backend host.

use std::path::PathBuf;

use anyhow::Result;
use serde::Serialize;

use crate::realserver::{self, Up, decap, state::State};

/// Set up this host as a backend of a balancer (VIPs on lo, ARP settings,
/// the decapsulation program), or undo it.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  lb realserver up --vip 203.0.113.10 --mode dr\n  lb realserver up --vip 203.0.113.10 --vip 2001:db8:f::10 --mode ipip --interface eth0\n  lb realserver status\n  lb realserver down"
)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
    /// Where `up` records what it changed, for `down` and `status`.
    #[arg(long, global = true, default_value = realserver::state::DEFAULT_STATE)]
    state: PathBuf,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Configure the VIPs and what the mode needs; running it again is harmless.
    Up(Up),
    /// Revert exactly what `up` changed.
    Down,
    /// What is configured, and the decap program's counters.
    Status {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Serialize)]
struct Status {
    #[serde(flatten)]
    state: State,
    decap: Option<Vec<(String, u64)>>,
}

pub fn run(args: Args) -> Result<bool> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match args.action {
        Action::Up(req) => {
            let st = rt.block_on(realserver::up(&req, &args.state))?;
            println!(
                "up: {} VIP(s) on lo, mode {}{}",
                st.vips.len(),
                st.mode,
                st.decap_pin_dir
                    .as_ref()
                    .map(|d| format!(", decap pinned in {}", d.display()))
                    .unwrap_or_default()
            );
            Ok(true)
        }
        Action::Down => {
            let errors = rt.block_on(realserver::down(&args.state))?;
            for e in &errors {
                eprintln!("down: {e}");
            }
            Ok(errors.is_empty())
        }
        Action::Status { json } => {
            let Some(state) = State::load(&args.state)? else {
                println!("not set up ({} does not exist)", args.state.display());
                return Ok(true);
            };
            let decap = match &state.decap_pin_dir {
                Some(d) => Some(
                    decap::counters(d)?
                        .into_iter()
                        .map(|(n, v)| (n.to_string(), v))
                        .collect(),
                ),
                None => None,
            };
            let s = Status { state, decap };
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                print!("{}", text(&s));
            }
            Ok(true)
        }
    }
}

fn text(s: &Status) -> String {
    let st = &s.state;
    let mut out = format!(
        "mode {} on {}\n",
        st.mode,
        st.interface.as_deref().unwrap_or("(any interface)")
    );
    let vips: Vec<String> = st.vips.iter().map(ToString::to_string).collect();
    out += &format!("VIPs on lo: {}\n", vips.join(", "));
    if st.mode == "gue" {
        out += &format!("GUE port: {}\n", st.gue_port);
    }
    if let Some(d) = &st.decap_pin_dir {
        out += &format!("decap: XDP program pinned in {}\n", d.display());
    }
    if let Some(k) = &st.kernel {
        out += &format!(
            "decap: kernel tunnels (modules loaded: {:?}, devices up: {:?}, fou ports: {:?})\n",
            k.modules, k.links_up, k.fou
        );
    }
    if let Some(c) = &s.decap {
        for (name, v) in c {
            out += &format!("  {name:<16} {v}\n");
        }
    }
    for c in &st.sysctls {
        out += &format!("changed /proc/sys/{}: {} -> {}\n", c.key, c.old, c.new);
    }
    for a in &st.addresses {
        out += &format!("added {}/{} on {}\n", a.addr, a.prefix, a.dev);
    }
    out
}
