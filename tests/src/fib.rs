//! A namespace whose FIB the XDP program's tunnel path can ask: interface
//! `up0` (forwarding on, as the agent sets it) reaches 198.51.100.128/25 and
//! 2001:db8:2::/64 through a gateway whose neighbour entry is permanent
//! (MAC `GW_MAC`); 198.51.100.50 is on-link and unresolved. For tunnel
//! packet tables and the bench.

use anyhow::{Context, Result};

use crate::netns::{self, Netns};

pub const GW_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// The interface BPF_PROG_TEST_RUN frames arrive on (run them with its index).
pub const DEV: &str = "up0";

pub struct FibNet {
    pub ns: Netns,
    /// `up0`'s MAC: the source of encapsulated frames.
    pub mac: [u8; 6],
}

impl FibNet {
    pub fn new(tag: &str) -> Result<FibNet> {
        let ns = Netns::new(tag)?;
        let n = &ns.name;
        for cmd in [
            "link add up0 type veth peer name up1",
            "link set up0 up",
            "link set up1 up",
            "addr add 198.51.100.2/25 dev up0",
            "-6 addr add 2001:db8:1::2/64 dev up0 nodad",
            "route add 198.51.100.128/25 via 198.51.100.1",
            "neigh add 198.51.100.1 lladdr 02:00:00:00:00:01 dev up0 nud permanent",
            "-6 route add 2001:db8:2::/64 via 2001:db8:1::1",
            "-6 neigh add 2001:db8:1::1 lladdr 02:00:00:00:00:01 dev up0 nud permanent",
        ] {
            netns::ip(n, cmd).with_context(|| cmd.to_string())?;
        }
        netns::sysctl(n, "net.ipv4.conf.up0.forwarding", "1")?;
        netns::sysctl(n, "net.ipv6.conf.up0.forwarding", "1")?;
        let (_, mac) = netns::link(n, "up0")?;
        Ok(FibNet { ns, mac })
    }
}

/// The index of `name` in the calling thread's namespace.
pub fn ifindex(name: &str) -> u32 {
    let c = std::ffi::CString::new(name).expect("no NUL");
    // SAFETY: a valid C string.
    unsafe { libc::if_nametoindex(c.as_ptr()) }
}

/// A Maglev service `name` ("VIP:PORT/PROTO") over one backend routed by
/// the FIB (`forward` a tunnel or NAT; `port` the backend's, 0 the VIP's),
/// healthy, whose next hop is the gateway.
pub fn routed_service(
    name: &str,
    forward: lb_common::Forward,
    backend: &str,
    port: u16,
) -> lb_user::plan::DesiredService {
    lb_user::plan::DesiredService {
        key: lb_user::addr::parse_service_name(name).expect("service name"),
        scheduler: lb_common::Scheduler::Maglev,
        forward,
        hash: lb_common::HashFields::FiveTuple,
        virtual_nodes: 160,
        standby: false,
        backends: vec![lb_user::plan::DesiredBackend {
            addr: backend.parse().expect("backend address"),
            port,
            weight: 1,
            effective: 1000,
            // The FIB picks the egress.
            ifindex: 0,
            src_mac: [0; 6],
            mac: Some(GW_MAC),
            via: None,
            check_port: None,
            healthy: true,
            warming: false,
            rtt_ms: 0,
        }],
    }
}
