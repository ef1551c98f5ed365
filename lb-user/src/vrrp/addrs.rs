//! Moving the VIPs: add or remove them on the interface over rtnetlink, and
//! announce them: gratuitous ARP for IPv4 (an ARP request from and for the
//! VIP, as keepalived sends) and an unsolicited neighbour advertisement with
//! the override flag for IPv6, so neighbours' caches move to our MAC.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::AsRawFd,
};

use futures::TryStreamExt;
use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, NetlinkMessage};
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    address::{AddressAttribute, AddressFlags, AddressMessage},
};
use rtnetlink::Handle;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::config::Vip;

fn message(ifindex: u32, v: Vip) -> AddressMessage {
    let mut m = AddressMessage::default();
    m.header.prefix_len = v.prefix;
    m.header.index = ifindex;
    m.header.family = match v.addr {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    m.attributes.push(AddressAttribute::Address(v.addr));
    m.attributes.push(AddressAttribute::Local(v.addr));
    // A VIP is never tentative: duplicate detection would hold IPv6 VIPs
    // back for a second after a failover.
    m.attributes
        .push(AddressAttribute::Flags(AddressFlags::Nodad));
    m
}

/// Add `v` to `ifindex`; an address already there is fine.
pub async fn add(handle: &Handle, ifindex: u32, v: Vip) -> Result<(), rtnetlink::Error> {
    let mut req = NetlinkMessage::from(RouteNetlinkMessage::NewAddress(message(ifindex, v)));
    req.header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_EXCL | NLM_F_CREATE;
    let mut handle = handle.clone();
    let mut resp = handle.request(req)?;
    while let Some(msg) = futures::StreamExt::next(&mut resp).await {
        if let netlink_packet_core::NetlinkPayload::Error(e) = msg.payload
            && e.code.is_some()
        {
            if e.raw_code() == -libc::EEXIST {
                return Ok(());
            }
            return Err(rtnetlink::Error::NetlinkError(e));
        }
    }
    Ok(())
}

/// Remove `v` from `ifindex`, if it is there.
pub async fn remove(handle: &Handle, ifindex: u32, v: Vip) -> Result<(), rtnetlink::Error> {
    let mut found = handle
        .address()
        .get()
        .set_link_index_filter(ifindex)
        .set_address_filter(v.addr)
        .execute();
    while let Some(m) = found.try_next().await? {
        handle.address().del(m).execute().await?;
    }
    Ok(())
}

/// Whether `addr` is on `ifindex` now.
pub async fn present(handle: &Handle, ifindex: u32, addr: IpAddr) -> bool {
    let mut found = handle
        .address()
        .get()
        .set_link_index_filter(ifindex)
        .set_address_filter(addr)
        .execute();
    matches!(found.try_next().await, Ok(Some(_)))
}

/// A gratuitous ARP request: who-has VIP tell VIP, from `mac`, broadcast.
pub fn garp_frame(vip: Ipv4Addr, mac: [u8; 6]) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x08, 0x06]); // ARP
    f.extend_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1]); // Ethernet/IPv4, request
    f.extend_from_slice(&mac);
    f.extend_from_slice(&vip.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&vip.octets());
    f
}

/// ICMPv6 neighbour advertisement for `vip` with the override flag and our
/// link-layer address; the kernel fills in the checksum.
pub fn na_message(vip: Ipv6Addr, mac: [u8; 6]) -> Vec<u8> {
    let mut m = Vec::with_capacity(32);
    m.extend_from_slice(&[136, 0, 0, 0]); // type NA, code, checksum
    m.extend_from_slice(&[0x20, 0, 0, 0]); // O(verride), not solicited, not router
    m.extend_from_slice(&vip.octets());
    m.extend_from_slice(&[2, 1]); // target link-layer address option, 8 bytes
    m.extend_from_slice(&mac);
    m
}

/// Sends announcements out of one interface.
pub struct Announcer {
    ifindex: u32,
    mac: [u8; 6],
    arp: Socket,
    icmp6: Option<Socket>,
}

impl Announcer {
    pub fn new(interface: &str, ifindex: u32, mac: [u8; 6]) -> io::Result<Self> {
        let arp = Socket::new(
            Domain::PACKET,
            Type::RAW,
            Some(Protocol::from((libc::ETH_P_ARP as u16).to_be() as i32)),
        )?;
        // IPv6 may be disabled on the host; then only IPv4 VIPs can move.
        let icmp6 = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))
            .and_then(|s| {
                s.bind_device(Some(interface.as_bytes()))?;
                s.set_multicast_hops_v6(255)?;
                s.set_unicast_hops_v6(255)?;
                s.set_multicast_if_v6(ifindex)?;
                Ok(s)
            })
            .ok();
        Ok(Announcer {
            ifindex,
            mac,
            arp,
            icmp6,
        })
    }

    pub fn announce(&self, vip: IpAddr) -> io::Result<()> {
        match vip {
            IpAddr::V4(v) => {
                let frame = garp_frame(v, self.mac);
                // SAFETY: a zeroed sockaddr_ll filled in below is valid.
                let mut ll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
                ll.sll_family = libc::AF_PACKET as u16;
                ll.sll_protocol = (libc::ETH_P_ARP as u16).to_be();
                ll.sll_ifindex = self.ifindex as i32;
                ll.sll_halen = 6;
                ll.sll_addr[..6].copy_from_slice(&[0xff; 6]);
                // SAFETY: sendto on our socket with a valid buffer and address.
                let n = unsafe {
                    libc::sendto(
                        self.arp.as_raw_fd(),
                        frame.as_ptr() as *const libc::c_void,
                        frame.len(),
                        0,
                        &ll as *const _ as *const libc::sockaddr,
                        std::mem::size_of::<libc::sockaddr_ll>() as u32,
                    )
                };
                if n < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            }
            IpAddr::V6(v) => {
                let Some(s) = &self.icmp6 else {
                    return Err(io::Error::other("IPv6 is not available"));
                };
                let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
                let dst =
                    SockAddr::from(std::net::SocketAddrV6::new(all_nodes, 0, 0, self.ifindex));
                s.send_to(&na_message(v, self.mac), &dst).map(drop)
            }
        }
    }
}
