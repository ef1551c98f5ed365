//! The XDP decapsulation program on a backend: loaded from the embedded
//! `lb-decap` object, its maps and link pinned in one directory so it
//! keeps running after `lb realserver up` exits, and removed with them.

use std::{net::IpAddr, path::Path};

use anyhow::{Context, Result};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, PerCpuArray},
    programs::{Xdp, XdpMode, links::FdLink},
};
use lb_common::{
    ServiceKey,
    decap::{DECAP_REASON_COUNT, DecapConfig, DecapReason},
    names,
};

use crate::{addr, maps::loader};

/// Where the link is pinned inside the pin directory.
const LINK: &str = "link";

fn vip_key(vip: IpAddr) -> ServiceKey {
    ServiceKey {
        addr: addr::to_bytes(vip),
        port: 0,
        proto: 0,
        family: addr::family(vip),
    }
}

/// Whether a decap program is pinned (so attached) in `pin_dir`.
pub fn attached(pin_dir: &Path) -> bool {
    pin_dir.join(LINK).exists()
}

/// Load the object with its maps pinned in (or re-used from) `pin_dir`,
/// and make its VIPs exactly `vips` and its GUE port `gue_port` (0: no
/// GUE). The program itself is not loaded yet.
pub fn load(pin_dir: &Path, vips: &[IpAddr], gue_port: u16) -> Result<Ebpf> {
    loader::ensure_bpffs(pin_dir)?;
    std::fs::create_dir_all(pin_dir).with_context(|| format!("creating {}", pin_dir.display()))?;
    let mut ebpf = EbpfLoader::new()
        .default_map_pin_directory(pin_dir)
        .load(loader::OBJECT_DECAP)
        .context("loading the decap program")?;
    // Borrowed, not taken: the program still needs the maps' descriptors.
    let mut cfg: Array<&mut MapData, DecapConfig> =
        Array::try_from(ebpf.map_mut(names::DECAP_CONFIG).context("DECAP_CONFIG")?)?;
    cfg.set(
        0,
        DecapConfig {
            gue_port,
            _pad: [0; 6],
        },
        0,
    )?;
    let mut map: HashMap<&mut MapData, ServiceKey, u32> =
        HashMap::try_from(ebpf.map_mut(names::DECAP_VIPS).context("DECAP_VIPS")?)?;
    let want: Vec<ServiceKey> = vips.iter().map(|v| vip_key(*v)).collect();
    let stale: Vec<ServiceKey> = map
        .keys()
        .filter_map(|k| k.ok())
        .filter(|k| !want.contains(k))
        .collect();
    for k in &want {
        map.insert(k, 1, 0)?;
    }
    for k in stale {
        map.remove(&k)?;
    }
    Ok(ebpf)
}

/// Load and attach the program to `interface` (or, when one is pinned
/// already, keep it) with `load`'s VIPs and port.
pub fn up(pin_dir: &Path, interface: &str, vips: &[IpAddr], gue_port: u16) -> Result<()> {
    let mut ebpf = load(pin_dir, vips, gue_port)?;
    if attached(pin_dir) {
        return Ok(());
    }
    let prog: &mut Xdp = ebpf
        .program_mut(names::PROG_DECAP)
        .context("the decap program")?
        .try_into()?;
    prog.load().context("verifying the decap program")?;
    let id = match prog.attach(interface, XdpMode::Driver) {
        Ok(id) => id,
        // No native XDP in the driver: the generic hook works everywhere.
        Err(_) => prog
            .attach(interface, XdpMode::Skb)
            .with_context(|| format!("attaching the decap program to {interface}"))?,
    };
    let link: FdLink = prog.take_link(id)?.try_into()?;
    link.pin(pin_dir.join(LINK))
        .with_context(|| format!("pinning the decap link in {}", pin_dir.display()))?;
    Ok(())
}

/// Detach (by removing the link's pin) and remove the maps' pins.
pub fn down(pin_dir: &Path) {
    for name in [
        LINK,
        names::DECAP_VIPS,
        names::DECAP_CONFIG,
        names::DECAP_STATS,
    ] {
        let _ = std::fs::remove_file(pin_dir.join(name));
    }
    let _ = std::fs::remove_dir(pin_dir);
    // The base directory too, once no interface's pins are left in it.
    if let Some(base) = pin_dir.parent() {
        let _ = std::fs::remove_dir(base);
    }
}

/// The program's counters, summed over CPUs, by reason.
pub fn counters(pin_dir: &Path) -> Result<Vec<(&'static str, u64)>> {
    let data = MapData::from_pin(pin_dir.join(names::DECAP_STATS))
        .with_context(|| format!("reading the decap counters in {}", pin_dir.display()))?;
    let m: PerCpuArray<MapData, u64> = PerCpuArray::try_from(aya::maps::Map::PerCpuArray(data))?;
    let mut out = Vec::with_capacity(DECAP_REASON_COUNT as usize);
    for r in DecapReason::ALL {
        out.push((r.name(), m.get(&(r as u32), 0)?.iter().sum()));
    }
    Ok(out)
}
