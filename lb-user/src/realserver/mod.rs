//! `lb realserver`: set up a backend host for a balancer. `up` puts the
//! VIPs on `lo` (a local address the packets are delivered to, never
//! announced: `arp_ignore=1`, `arp_announce=2`) and, for tunnels, attaches
//! the XDP decapsulation program to the interface (or uses the kernel's
//! tunnel modules with `--kernel-tunnel`). Every change is recorded in a
//! state file; `down` reverts exactly those, newest first; `up` again is
//! harmless (it records only what it changes).

pub mod decap;
pub mod kernel;
pub mod state;

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use lb_common::names::DEFAULT_REALSERVER_PIN_DIR;

use crate::{agent::neigh::Net, config::Vip, sysctl, vrrp::addrs};
use state::{Added, State};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Direct routing: the balancer rewrites MACs; same L2 segment.
    Dr,
    /// IP-in-IP (IPIP, IP6IP6, 4in6).
    Ipip,
    /// GUE: IP in UDP.
    Gue,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Dr => "dr",
            Mode::Ipip => "ipip",
            Mode::Gue => "gue",
        }
    }
}

/// What `up` is asked to do (its command-line arguments).
#[derive(Debug, Clone, clap::Args)]
pub struct Up {
    /// A VIP the balancer forwards here (repeat for more).
    #[arg(long = "vip", required = true)]
    pub vips: Vec<IpAddr>,
    #[arg(long, value_enum)]
    pub mode: Mode,
    /// The interface tunnelled packets arrive on (ipip, gue).
    #[arg(long)]
    pub interface: Option<String>,
    /// GUE's UDP port, as the balancer's [agent] gue_port.
    #[arg(long, default_value_t = lb_common::DEFAULT_GUE_PORT)]
    pub gue_port: u16,
    /// Decapsulate with the kernel's ipip/ip6_tunnel/fou modules instead
    /// of the XDP program.
    #[arg(long)]
    pub kernel_tunnel: bool,
    /// Pin directory of the decap program (one subdirectory per interface).
    #[arg(long)]
    pub pin_dir: Option<PathBuf>,
}

/// The decap pin directory for `interface` under `base`.
pub fn pin_dir(base: Option<&Path>, interface: &str) -> PathBuf {
    base.map_or_else(
        || PathBuf::from(DEFAULT_REALSERVER_PIN_DIR),
        Path::to_path_buf,
    )
    .join(interface)
}

fn host_prefix(a: IpAddr) -> u8 {
    if a.is_ipv4() { 32 } else { 128 }
}

pub async fn up(req: &Up, state_path: &Path) -> Result<State> {
    if req.vips.is_empty() {
        bail!("no --vip given: name each VIP the balancer sends here");
    }
    let tunnel = req.mode != Mode::Dr;
    if tunnel && !req.kernel_tunnel && req.interface.is_none() {
        bail!(
            "--mode {} needs --interface: the one the tunnelled packets arrive on (the decap program runs there)",
            req.mode.name()
        );
    }
    // Refused before anything changes: a host without the modules keeps
    // exactly what it had.
    if req.kernel_tunnel
        && tunnel
        && let Some(m) = kernel::missing(req.mode, &req.vips)
    {
        bail!(
            "--kernel-tunnel: this kernel has no {m} module; leave --kernel-tunnel out to use lb's XDP decapsulation instead"
        );
    }
    let mut st = match State::load(state_path)? {
        Some(old) if old.mode != req.mode.name() || old.interface != req.interface => bail!(
            "{}: already set up as --mode {} on {}; run `lb realserver down` first",
            state_path.display(),
            old.mode,
            old.interface.as_deref().unwrap_or("(no interface)")
        ),
        Some(old) => old,
        None => State::default(),
    };
    st.mode = req.mode.name().into();
    st.interface = req.interface.clone();
    st.gue_port = req.gue_port;
    for v in &req.vips {
        if !st.vips.contains(v) {
            st.vips.push(*v);
        }
    }
    // Whatever happens next is recorded as it happens.
    let result = apply(req, &mut st).await;
    st.save(state_path)?;
    result.map(|()| st)
}

async fn apply(req: &Up, st: &mut State) -> Result<()> {
    let net = Net::new().context("opening netlink")?;
    let lo = net.link("lo").await.context("finding lo")?;
    for v in &req.vips {
        let vip = Vip {
            addr: *v,
            prefix: host_prefix(*v),
        };
        if addrs::present(&net.handle(), lo.ifindex, *v).await {
            continue;
        }
        addrs::add(&net.handle(), lo.ifindex, vip)
            .await
            .with_context(|| format!("adding {v} to lo"))?;
        st.addresses.push(Added {
            addr: *v,
            prefix: vip.prefix,
            dev: "lo".into(),
        });
    }
    // Never answer ARP for the VIPs on lo, never source ARP from them: the
    // balancer owns them on the client side.
    let mut ifaces = vec!["all".to_string()];
    ifaces.extend(req.interface.clone());
    for i in &ifaces {
        for (name, value) in [("arp_ignore", "1"), ("arp_announce", "2")] {
            let key = sysctl::conf("ipv4", i, name);
            if let Some(old) =
                sysctl::set(&key, value).with_context(|| format!("setting /proc/sys/{key}"))?
            {
                st.changed(&key, old, value);
            }
        }
    }
    if req.mode == Mode::Dr {
        return Ok(());
    }
    let gue = if req.mode == Mode::Gue {
        req.gue_port
    } else {
        0
    };
    if req.kernel_tunnel {
        let vips = st.vips.clone();
        return kernel::up(req.mode, &vips, req.gue_port, st);
    }
    let interface = req.interface.as_deref().expect("checked in up()");
    let dir = pin_dir(req.pin_dir.as_deref(), interface);
    decap::up(&dir, interface, &st.vips, gue)?;
    st.decap_pin_dir = Some(dir);
    Ok(())
}

/// Revert what the state file records; the errors of steps that failed
/// (the others still ran).
pub async fn down(state_path: &Path) -> Result<Vec<String>> {
    let Some(st) = State::load(state_path)? else {
        return Ok(Vec::new());
    };
    let mut errors = Vec::new();
    if let Some(dir) = &st.decap_pin_dir {
        decap::down(dir);
    }
    if let Some(k) = &st.kernel {
        errors.extend(kernel::down(k));
    }
    for c in st.sysctls.iter().rev() {
        if let Err(e) = sysctl::write(&c.key, &c.old) {
            errors.push(format!("restoring /proc/sys/{} to {}: {e}", c.key, c.old));
        }
    }
    let net = Net::new().context("opening netlink")?;
    for a in st.addresses.iter().rev() {
        let removed = match net.link(&a.dev).await {
            Ok(l) => addrs::remove(
                &net.handle(),
                l.ifindex,
                Vip {
                    addr: a.addr,
                    prefix: a.prefix,
                },
            )
            .await
            .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = removed {
            errors.push(format!("removing {} from {}: {e}", a.addr, a.dev));
        }
    }
    std::fs::remove_file(state_path)
        .with_context(|| format!("removing {}", state_path.display()))?;
    Ok(errors)
}
