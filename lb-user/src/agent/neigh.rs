//! Interfaces and backend MACs from the kernel, over rtnetlink: the agent
//! never shells out to `ip`. A missing or stale neighbour entry is handed to
//! the kernel's own resolver (NTF_USE), which sends the ARP / NS itself.

use std::{collections::HashMap, net::IpAddr};

use futures::{StreamExt, TryStreamExt};
use netlink_packet_route::{
    link::LinkAttribute,
    neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourState},
};
use rtnetlink::Handle;

/// An interface as the agent needs it: where to send and what source MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkInfo {
    pub ifindex: u32,
    pub mac: [u8; 6],
}

/// A neighbour entry's MAC and whether the kernel vouches for it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Neighbour {
    pub mac: Option<[u8; 6]>,
    /// REACHABLE or PERMANENT/NOARP: no need to nudge the kernel.
    pub fresh: bool,
}

/// Where the kernel routes an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub ifindex: u32,
    /// The neighbour frames go to: a gateway, or the address itself.
    pub via: IpAddr,
}

#[derive(Clone)]
pub struct Net {
    handle: Handle,
}

impl Net {
    /// Open a netlink socket in the current network namespace.
    pub fn new() -> std::io::Result<Self> {
        let (conn, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(conn);
        Ok(Self { handle })
    }

    pub async fn link(&self, name: &str) -> Result<LinkInfo, rtnetlink::Error> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        let Some(msg) = links.try_next().await? else {
            return Err(rtnetlink::Error::RequestFailed);
        };
        let mut mac = [0u8; 6];
        for a in &msg.attributes {
            if let LinkAttribute::Address(b) = a
                && b.len() == 6
            {
                mac.copy_from_slice(b);
            }
        }
        Ok(LinkInfo {
            ifindex: msg.header.index,
            mac,
        })
    }

    /// Every neighbour entry, keyed by (ifindex, address).
    pub async fn neighbours(&self) -> Result<HashMap<(u32, IpAddr), Neighbour>, rtnetlink::Error> {
        let mut out = HashMap::new();
        let mut stream = self.handle.neighbours().get().execute();
        while let Some(msg) = stream.try_next().await? {
            let mut dst = None;
            let mut mac = None;
            for a in &msg.attributes {
                match a {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => {
                        dst = Some(IpAddr::V4(*v4))
                    }
                    NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => {
                        dst = Some(IpAddr::V6(*v6))
                    }
                    NeighbourAttribute::LinkLocalAddress(l) if l.len() == 6 => {
                        let mut m = [0u8; 6];
                        m.copy_from_slice(l);
                        mac = Some(m);
                    }
                    _ => {}
                }
            }
            let Some(dst) = dst else { continue };
            let state = msg.header.state;
            let usable = matches!(
                state,
                NeighbourState::Reachable
                    | NeighbourState::Stale
                    | NeighbourState::Delay
                    | NeighbourState::Probe
                    | NeighbourState::Permanent
                    | NeighbourState::Noarp
            );
            let fresh = matches!(
                state,
                NeighbourState::Reachable | NeighbourState::Permanent | NeighbourState::Noarp
            );
            out.insert(
                (msg.header.ifindex, dst),
                Neighbour {
                    mac: mac.filter(|_| usable),
                    fresh,
                },
            );
        }
        Ok(out)
    }

    /// Ask the kernel to (re)resolve `addr` on `ifindex` (NTF_USE: the kernel
    /// runs its normal ARP / neighbour-solicitation state machine).
    pub async fn resolve(&self, ifindex: u32, addr: IpAddr) -> Result<(), rtnetlink::Error> {
        self.handle
            .neighbours()
            .add(ifindex, addr)
            .flags(NeighbourFlags::Use)
            .state(NeighbourState::None)
            .replace()
            .execute()
            .await
    }

    /// An interface by its index.
    pub async fn link_by_index(&self, index: u32) -> Result<(String, LinkInfo), rtnetlink::Error> {
        let mut links = self.handle.link().get().match_index(index).execute();
        let Some(msg) = links.try_next().await? else {
            return Err(rtnetlink::Error::RequestFailed);
        };
        let mut mac = [0u8; 6];
        let mut name = String::new();
        for a in &msg.attributes {
            match a {
                LinkAttribute::Address(b) if b.len() == 6 => mac.copy_from_slice(b),
                LinkAttribute::IfName(n) => name = n.clone(),
                _ => {}
            }
        }
        Ok((
            name,
            LinkInfo {
                ifindex: msg.header.index,
                mac,
            },
        ))
    }

    /// The kernel's route to `addr` (`ip route get`): the egress interface
    /// and the next hop (the gateway, or `addr` itself when on-link). What
    /// the XDP program's FIB lookup will find, so the agent can keep that
    /// neighbour resolved.
    pub async fn route(&self, addr: IpAddr) -> Result<Route, rtnetlink::Error> {
        use netlink_packet_core::{NLM_F_REQUEST, NetlinkMessage};
        use netlink_packet_route::{
            RouteNetlinkMessage,
            route::{RouteAddress, RouteAttribute},
        };
        let len = if addr.is_ipv4() { 32 } else { 128 };
        let msg = rtnetlink::RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(addr, len)
            .map_err(|_| rtnetlink::Error::RequestFailed)?
            .build();
        let mut req = NetlinkMessage::from(RouteNetlinkMessage::GetRoute(msg));
        req.header.flags = NLM_F_REQUEST;
        let mut handle = self.handle.clone();
        let mut replies = handle.request(req)?;
        while let Some(reply) = replies.next().await {
            let netlink_packet_core::NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(m)) =
                reply.payload
            else {
                continue;
            };
            let mut ifindex = 0;
            let mut via = addr;
            for a in &m.attributes {
                match a {
                    RouteAttribute::Oif(i) => ifindex = *i,
                    RouteAttribute::Gateway(RouteAddress::Inet(g)) => via = IpAddr::V4(*g),
                    RouteAttribute::Gateway(RouteAddress::Inet6(g)) => via = IpAddr::V6(*g),
                    _ => {}
                }
            }
            if ifindex != 0 {
                return Ok(Route { ifindex, via });
            }
        }
        Err(rtnetlink::Error::RequestFailed)
    }

    /// A clone of the netlink handle, for tasks of their own (VRRP).
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// The addresses on `ifindex`, in the kernel's order (the primary first).
    pub async fn addresses(&self, ifindex: u32) -> Result<Vec<IpAddr>, rtnetlink::Error> {
        let mut out = Vec::new();
        let mut s = self
            .handle
            .address()
            .get()
            .set_link_index_filter(ifindex)
            .execute();
        while let Some(m) = s.try_next().await? {
            for a in &m.attributes {
                if let netlink_packet_route::address::AddressAttribute::Address(ip) = a {
                    out.push(*ip);
                }
            }
        }
        Ok(out)
    }
}
