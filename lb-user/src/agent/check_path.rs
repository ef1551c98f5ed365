//! The check namespace for health checks through the data path: an
//! anonymous network namespace (it lives as long as the agent holds its
//! descriptor, so nothing is left behind), joined to the balancer's by a
//! veth. Inside: the balancer's own addresses and a default route out of
//! the veth. On the veth's outer end `lb_check_out` sends each check to its
//! backend as client traffic goes; `lb_xdp` steers the answers back in.

use std::{
    fs::File,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::AsRawFd,
    sync::Arc,
};

use anyhow::{Context, Result, bail};
use aya::{
    Ebpf,
    programs::{XdpMode, links::FdLink},
};
use lb_common::{check::CheckPath, names};
use netlink_packet_route::neighbour::NeighbourState;
use rtnetlink::{LinkUnspec, LinkVeth, RouteMessageBuilder};

use super::neigh::{LinkInfo, Net};
use crate::{
    config::{Config, Probe, Via},
    health::dial::CheckNs,
    maps::loader,
    sysctl,
    vrrp::addrs,
};

/// The gateway the namespace routes through: never on any wire, its
/// neighbour entry (the veth's outer MAC) is permanent.
const GW4: Ipv4Addr = Ipv4Addr::new(169, 254, 0, 1);
const GW6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);

pub struct CheckPathHandle {
    pub ns: Arc<CheckNs>,
    pub record: CheckPath,
    /// The programs on both veth ends, detached when dropped.
    _links: Vec<FdLink>,
}

/// Whether any check of `cfg` goes through the data path.
pub fn needed(cfg: &Config) -> bool {
    cfg.services
        .iter()
        .flat_map(|s| &s.backends)
        .any(|b| b.check.via == Via::Dataplane && b.check.probe != Probe::None)
}

/// The checks' sources: the interface's first IPv4 and first global IPv6
/// address that is not a VIP.
pub async fn sources(
    net: &Net,
    cfg: &Config,
    ifindex: u32,
) -> Result<(Option<IpAddr>, Option<IpAddr>)> {
    let vips: Vec<IpAddr> = cfg
        .services
        .iter()
        .map(|s| s.vip)
        .chain(cfg.vrrp.iter().flat_map(|v| v.vips.iter().map(|x| x.addr)))
        .collect();
    let own: Vec<IpAddr> = net
        .addresses(ifindex)
        .await?
        .into_iter()
        .filter(|a| !vips.contains(a))
        .collect();
    let v4 = own.iter().find(|a| a.is_ipv4()).copied();
    let v6 = own
        .iter()
        .find(|a| matches!(a, IpAddr::V6(v) if !v.is_unicast_link_local()))
        .copied();
    if v4.is_none() && v6.is_none() {
        bail!(
            "checks through the data path need an address of the balancer's own on its interface (the checks' source)"
        );
    }
    Ok((v4, v6))
}

pub async fn build(
    bpf: &mut Ebpf,
    net: &Net,
    iface: LinkInfo,
    src: (Option<IpAddr>, Option<IpAddr>),
) -> Result<CheckPathHandle> {
    let ns = std::thread::spawn(|| -> std::io::Result<File> {
        // SAFETY: this thread only makes the namespace and opens it.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        File::open("/proc/thread-self/ns/net")
    })
    .join()
    .map_err(|_| anyhow::anyhow!("namespace thread panicked"))?
    .context("making the check namespace")?;
    let outer = format!("lbc{}", iface.ifindex);
    let inner = format!("lbc{}n", iface.ifindex);
    let h = net.handle();
    if let Ok(old) = net.link(&outer).await {
        // A crashed agent's: its namespace is gone, so is this pair soon.
        let _ = h.link().del(old.ifindex).execute().await;
    }
    h.link()
        .add(LinkVeth::new(&outer, &inner).build())
        .execute()
        .await
        .context("creating the check veth")?;
    let peer = net.link(&inner).await.context("the check veth's peer")?;
    h.link()
        .set(
            LinkUnspec::new_with_index(peer.ifindex)
                .setns_by_fd(ns.as_raw_fd())
                .build(),
        )
        .execute()
        .await
        .context("moving the check veth into its namespace")?;
    let out = net.link(&outer).await.context("the check veth")?;
    h.link()
        .set(LinkUnspec::new_with_index(out.ifindex).up().build())
        .execute()
        .await?;
    // Tunnelled checks ask the FIB with this veth as the ingress.
    for family in ["ipv4", "ipv6"] {
        let _ = sysctl::set(&sysctl::conf(family, &outer, "forwarding"), "1");
    }

    let pass = loader::program(bpf, names::PROG_XDP_PASS)?;
    let ns_ref = &ns;
    let inner_name = inner.clone();
    let (inner_mac, pass_link) = tokio::task::block_in_place(|| {
        std::thread::scope(|s| {
            s.spawn(move || -> Result<([u8; 6], FdLink)> {
                // SAFETY: affects only this scoped thread.
                if unsafe { libc::setns(ns_ref.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    bail!("setns: {}", std::io::Error::last_os_error());
                }
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                let mac = rt.block_on(inside(&inner_name, out.mac, src))?;
                tx_checksum_off(&inner_name)
                    .context("turning off the check veth's checksum offload")?;
                // Frames redirected into a veth are taken only by a peer running XDP.
                let id = pass
                    .attach(&inner_name, XdpMode::Driver)
                    .or_else(|_| pass.attach(&inner_name, XdpMode::Skb))
                    .context("attaching xdp_pass in the check namespace")?;
                Ok((mac, FdLink::try_from(pass.take_link(id)?)?))
            })
            .join()
            .map_err(|_| anyhow::anyhow!("check namespace thread panicked"))?
        })
    })?;
    let check_out = loader::program(bpf, names::PROG_CHECK_OUT)?;
    let id = check_out
        .attach(&outer, XdpMode::Driver)
        .or_else(|_| check_out.attach(&outer, XdpMode::Skb))
        .context("attaching lb_check_out to the check veth")?;
    let out_link = FdLink::try_from(check_out.take_link(id)?)?;
    let to_bytes = |a: Option<IpAddr>| a.map(crate::addr::to_bytes).unwrap_or_default();
    let mut src4 = [0u8; 4];
    src4.copy_from_slice(&to_bytes(src.0)[..4]);
    let record = CheckPath {
        ifindex: out.ifindex,
        ns_mac: inner_mac,
        our_mac: out.mac,
        src4,
        src6: to_bytes(src.1),
        set: 1,
        _pad: [0; 3],
    };
    tracing::info!(veth = %outer, src4 = ?src.0, src6 = ?src.1, "check namespace ready for checks through the data path");
    Ok(CheckPathHandle {
        ns: Arc::new(CheckNs {
            ns,
            src4: src.0,
            src6: src.1,
        }),
        record,
        _links: vec![pass_link, out_link],
    })
}

/// A veth leaves TCP checksums partial for the receiver to trust; once XDP
/// forwards the frame that promise is lost and the backend drops it. The
/// checks' segments must carry full checksums (`ethtool -K DEV tx off`).
fn tx_checksum_off(dev: &str) -> std::io::Result<()> {
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    const ETHTOOL_STXCSUM: u32 = 0x17;
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    #[repr(C)]
    struct IfReq {
        name: [u8; libc::IFNAMSIZ],
        data: *mut EthtoolValue,
        _pad: [u8; 16],
    }
    let mut value = EthtoolValue {
        cmd: ETHTOOL_STXCSUM,
        data: 0,
    };
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        data: &mut value,
        _pad: [0; 16],
    };
    let n = dev.len().min(libc::IFNAMSIZ - 1);
    req.name[..n].copy_from_slice(&dev.as_bytes()[..n]);
    // SAFETY: a plain socket for the ioctl, closed below; the request and
    // its value outlive the call.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let rc = libc::ioctl(fd, SIOCETHTOOL, &mut req);
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if rc != 0 {
            return Err(err);
        }
    }
    Ok(())
}

/// Inside the namespace: lo and the veth up, the balancer's addresses,
/// default routes to a gateway that is the veth's outer MAC. The veth's MAC.
async fn inside(
    veth: &str,
    gw_mac: [u8; 6],
    src: (Option<IpAddr>, Option<IpAddr>),
) -> Result<[u8; 6]> {
    let net = Net::new()?;
    let h = net.handle();
    let lo = net.link("lo").await?;
    let v = net.link(veth).await?;
    for idx in [lo.ifindex, v.ifindex] {
        h.link()
            .set(LinkUnspec::new_with_index(idx).up().build())
            .execute()
            .await?;
    }
    for a in [src.0, src.1].into_iter().flatten() {
        let prefix = if a.is_ipv4() { 32 } else { 128 };
        addrs::add(&h, v.ifindex, crate::config::Vip { addr: a, prefix }).await?;
    }
    for gw in [IpAddr::V4(GW4), IpAddr::V6(GW6)] {
        h.neighbours()
            .add(v.ifindex, gw)
            .link_local_address(&gw_mac)
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await?;
    }
    if src.0.is_some() {
        let r = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(GW4)
            .output_interface(v.ifindex)
            .onlink()
            .build();
        h.route()
            .add(r)
            .execute()
            .await
            .context("IPv4 default route")?;
    }
    if src.1.is_some() {
        let r = RouteMessageBuilder::<Ipv6Addr>::new()
            .gateway(GW6)
            .output_interface(v.ifindex)
            .build();
        h.route()
            .add(r)
            .execute()
            .await
            .context("IPv6 default route")?;
    }
    Ok(v.mac)
}
