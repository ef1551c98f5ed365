//! The lab's shape: a bridge namespace, and a namespace per host with its
//! veth on the bridge, LAN addresses, and (backends) the DR real-server
//! set-up.

use anyhow::Result;

use super::{
    BACKEND_NET4, BACKEND_NET6, LAN4, LAN6, Lab, NAT_GW4, NAT_GW6, ROUTER4, ROUTER6, VIP4, VIP6,
};
use crate::netns::{self, ip, sysctl};

impl Lab {
    pub(super) fn build(&mut self) -> Result<()> {
        let sw = self.ns("sw");
        ip("", &format!("netns add {sw}"))?;
        ip(&sw, "link add br0 type bridge")?;
        ip(&sw, "link set br0 up")?;
        ip(&sw, "link set lo up")?;
        if !self.spec.bgp {
            self.host("c", 2, false)?;
        }
        for n in 1..=self.spec.balancers {
            self.host(&format!("lb{n}"), 4 + n, false)?;
            let ns = self.ns(&format!("lb{n}"));
            if !self.spec.vrrp && !self.spec.bgp {
                // The VIP lives on the balancer, statically (with BGP, on
                // the agent's device).
                ip(&ns, &format!("addr add {VIP4}/32 dev eth0"))?;
                ip(&ns, &format!("addr add {VIP6}/128 dev eth0 nodad"))?;
            }
            // XDP_TX out of a veth is dropped unless the peer runs XDP too.
            self.attach_pass(&format!("lb{n}"))?;
        }
        let backends = self.spec.backends.clone();
        if self.spec.nat {
            let sw = self.ns("sw");
            ip(&sw, "link add br1 type bridge")?;
            ip(&sw, "link set br1 up")?;
            for n in 1..=self.spec.balancers {
                self.inside(n)?;
            }
            for b in &backends {
                self.routed_backend(&b.name, b)?;
            }
        } else if self.spec.bgp {
            self.router()?;
            self.plug(
                "c",
                "br1",
                &format!("{}/25", super::BGP_CLIENT4),
                &format!("{}/64", super::BGP_CLIENT6),
            )?;
            for b in &backends {
                self.host(&b.name, b.host, true)?;
            }
            self.bgp_build()?;
        } else if self.spec.routed {
            self.router()?;
            for n in 1..=self.spec.balancers {
                let ns = self.ns(&format!("lb{n}"));
                ip(&ns, &format!("route add {BACKEND_NET4} via {ROUTER4}"))?;
                ip(&ns, &format!("-6 route add {BACKEND_NET6} via {ROUTER6}"))?;
            }
            for b in &backends {
                self.routed_backend(&b.name, b)?;
            }
        } else {
            for b in &backends {
                self.host(&b.name, b.host, true)?;
            }
        }
        let c = self.ns("c");
        // A veth hands on TCP/UDP with only a partial checksum (offload);
        // after XDP_TX re-sends the frame that state is lost and the backend
        // drops it as corrupt. Real NICs put full checksums on the wire.
        netns::exec(&c, &["ethtool", "-K", "eth0", "tx", "off"])?;
        if !self.spec.bgp {
            ip(&c, "route add 203.0.113.0/24 dev eth0")?;
            ip(&c, "-6 route add 2001:db8:f::/64 dev eth0")?;
        }
        Ok(())
    }

    /// Attach `xdp_pass` to port `port` of the bridge namespace, pinned so
    /// it outlives this process (detached labs); removed with the lab's pins.
    fn attach_pass(&self, port: &str) -> Result<()> {
        use aya::programs::{XdpMode, links::FdLink};
        let pin = self.pin_dir(&format!("sw-{port}"));
        let port = port.to_string();
        netns::in_ns(&self.ns("sw"), move || -> Result<()> {
            let tiny = lb_user::maps::loader::Sizes {
                flows: 1024,
                max_services: 1,
                max_backends: 1,
                table_size: 7,
            };
            let mut bpf = lb_user::maps::loader::load(&pin, tiny)?;
            let prog = lb_user::maps::loader::program(&mut bpf, lb_common::names::PROG_XDP_PASS)?;
            let id = prog.attach(&port, XdpMode::Driver)?;
            let link = FdLink::try_from(prog.take_link(id)?)?;
            link.pin(pin.join(lb_common::names::LINK_PIN))?;
            Ok(())
        })?
    }

    /// The router `r`: eth0 on the LAN (host 1), eth1 on a second bridge
    /// with the backends' subnet; it forwards and does not filter by
    /// reverse path (backends answer clients from the VIP, direct).
    fn router(&self) -> Result<()> {
        self.host("r", 1, false)?;
        let (r, sw) = (self.ns("r"), self.ns("sw"));
        ip(&sw, "link add br1 type bridge")?;
        ip(&sw, "link set br1 up")?;
        ip(
            &r,
            &format!("link add eth1 type veth peer name r1 netns {sw}"),
        )?;
        ip(&sw, "link set r1 master br1 up")?;
        ip(&r, "addr add 198.51.100.129/25 dev eth1")?;
        ip(&r, "addr add 2001:db8:2::1/64 dev eth1 nodad")?;
        ip(&r, "link set eth1 up")?;
        for key in ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"] {
            sysctl(&r, key, "1")?;
        }
        for dev in ["all", "default", "eth0", "eth1"] {
            sysctl(&r, &format!("net.ipv4.conf.{dev}.rp_filter"), "0")?;
        }
        Ok(())
    }

    /// NAT: balancer `n`'s eth1 on the backends' bridge. Without VRRP, lb1
    /// holds the backends' gateway address there; with it, each balancer
    /// has its own and VRRP moves the gateway.
    fn inside(&self, n: u8) -> Result<()> {
        let (ns, sw) = (self.ns(&format!("lb{n}")), self.ns("sw"));
        let port = format!("lb{n}i");
        ip(
            &ns,
            &format!("link add eth1 type veth peer name {port} netns {sw}"),
        )?;
        ip(&sw, &format!("link set {port} master br1 up"))?;
        if self.spec.vrrp {
            ip(&ns, &format!("addr add 198.51.100.{}/25 dev eth1", 250 + n))?;
            ip(
                &ns,
                &format!("addr add 2001:db8:2::{:x}/64 dev eth1 nodad", 0xf0 + n),
            )?;
        } else {
            ip(&ns, &format!("addr add {NAT_GW4}/25 dev eth1"))?;
            ip(&ns, &format!("addr add {NAT_GW6}/64 dev eth1 nodad"))?;
        }
        ip(&ns, "link set eth1 up")?;
        // Redirected frames leave by eth1: its peer must run XDP too.
        self.attach_pass(&port)?;
        Ok(())
    }

    /// A backend on the router's second bridge, default routes via it.
    fn routed_backend(&self, role: &str, b: &super::BackendSpec) -> Result<()> {
        let v4 = format!("{}/25", self.backend_addr(b));
        let v6 = format!("{}/64", self.backend_addr6(b));
        let ns = self.plug(role, "br1", &v4, &v6)?;
        // Its answers to checks through the data path are redirected by XDP
        // into the balancer's check namespace: they need full checksums.
        netns::exec(&ns, &["ethtool", "-K", "eth0", "tx", "off"])?;
        ip(&ns, "route add default via 198.51.100.129")?;
        ip(&ns, "-6 route add default via 2001:db8:2::1")?;
        Ok(())
    }

    /// A namespace `role` whose eth0 is a port of `bridge` with addresses
    /// `v4` and `v6` (with prefix lengths); its name.
    fn plug(&self, role: &str, bridge: &str, v4: &str, v6: &str) -> Result<String> {
        let (ns, sw) = (self.ns(role), self.ns("sw"));
        ip("", &format!("netns add {ns}"))?;
        ip(
            &ns,
            &format!("link add eth0 type veth peer name {role} netns {sw}"),
        )?;
        ip(&sw, &format!("link set {role} master {bridge} up"))?;
        ip(&ns, "link set lo up")?;
        ip(&ns, &format!("addr add {v4} dev eth0"))?;
        ip(&ns, &format!("addr add {v6} dev eth0 nodad"))?;
        ip(&ns, "link set eth0 up")?;
        Ok(ns)
    }

    /// A namespace `role` with eth0 on the bridge at LAN host number `host`.
    fn host(&self, role: &str, host: u8, backend: bool) -> Result<()> {
        let v4 = format!("{LAN4}.{host}/24");
        let v6 = format!("{LAN6}::{host:x}/64");
        let ns = self.plug(role, "br0", &v4, &v6)?;
        if backend {
            // Full checksums (see routed_backend).
            netns::exec(&ns, &["ethtool", "-K", "eth0", "tx", "off"])?;
            // LVS-DR real server: the VIP on lo, never answered for or announced on eth0.
            ip(&ns, &format!("addr add {VIP4}/32 dev lo"))?;
            ip(&ns, &format!("addr add {VIP6}/128 dev lo"))?;
            for dev in ["all", "eth0"] {
                sysctl(&ns, &format!("net.ipv4.conf.{dev}.arp_ignore"), "1")?;
                sysctl(&ns, &format!("net.ipv4.conf.{dev}.arp_announce"), "2")?;
            }
        }
        Ok(())
    }
}
