//! Why a packet got its verdict: one per-CPU counter each.

#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Not IPv4/IPv6 (ARP, LLDP, QinQ, ...).
    PassNotIp = 0,
    /// IP, but no service for (dst, port, proto).
    PassNotVip = 1,
    /// IPv4 fragment (MF set or offset != 0).
    PassFragment = 2,
    /// A header, or the IP packet its length field announces, does not fit
    /// in the frame.
    PassTruncated = 3,
    /// Neither TCP nor UDP.
    PassUnknownL4 = 4,
    /// IPv6 extension header after the fixed header.
    PassIpv6Ext = 5,
    /// Header fields that contradict themselves or the frame: IHL < 5, a
    /// version mismatch, an IPv4 total length or IPv6 payload length too
    /// short for its headers, a TCP data offset below 5 or past the
    /// segment, a UDP length below 8 or past the datagram.
    PassMalformed = 6,
    /// Forwarded to the backend the flow table remembered.
    FwdFlowHit = 7,
    /// Forwarded to a backend chosen by the scheduler.
    FwdFlowMiss = 8,
    /// A VIP packet with no usable backend.
    DropNoBackend = 9,
    /// The backend's egress interface is missing from the devmap.
    DropNoRoute = 10,
    /// A VIP this balancer does not hold now (VRRP backup): left to the
    /// kernel, which does not own the address either.
    PassStandby = 11,
    /// The frame's Ethernet destination is not this interface's MAC
    /// (another host's unicast, broadcast, multicast): another machine's
    /// to answer, so it is never balanced here.
    PassNotOurs = 12,
    /// A tunnel service's backend has no route or no resolved next hop in
    /// the FIB: passed to the kernel, never dropped silently.
    PassFibMiss = 13,
    /// The encapsulated packet would exceed the egress MTU: the client got
    /// ICMP Fragmentation Needed / Packet Too Big from XDP.
    TxTooBig = 14,
    /// Too big for the tunnel and IPv4 without DF: left to the kernel.
    PassTooBig = 15,
    /// Too big, but this CPU's ICMP budget for the second is spent.
    DropTooBigLimited = 16,
    /// Forwarded through a tunnel (counted besides its flow hit or miss).
    Encapsulated = 17,
    /// A health check through the data path, on its way to its backend or
    /// back to the agent.
    FwdCheck = 18,
    /// A flow opened or closed that the sync ring buffer had no room to
    /// report (the packet itself was forwarded).
    SyncDropped = 19,
    /// A backend's reply to a NAT connection, translated back to the VIP
    /// and sent to the client.
    FwdNatReply = 20,
    /// An ICMP error about a NAT connection, translated and forwarded.
    FwdNatIcmp = 21,
    /// Full-NAT found no free source port for a new connection.
    DropNatNoPort = 22,
    /// Forwarded by NAT or full-NAT (counted besides its flow hit or miss).
    Translated = 23,
    /// A new flow placed by its hash and not remembered: this CPU had
    /// already remembered `new_flows_per_cpu` this second (a SYN flood).
    /// Counted besides its flow miss.
    Unremembered = 24,
}

pub const REASON_COUNT: u32 = 25;

impl Reason {
    pub const ALL: [Reason; REASON_COUNT as usize] = [
        Reason::PassNotIp,
        Reason::PassNotVip,
        Reason::PassFragment,
        Reason::PassTruncated,
        Reason::PassUnknownL4,
        Reason::PassIpv6Ext,
        Reason::PassMalformed,
        Reason::FwdFlowHit,
        Reason::FwdFlowMiss,
        Reason::DropNoBackend,
        Reason::DropNoRoute,
        Reason::PassStandby,
        Reason::PassNotOurs,
        Reason::PassFibMiss,
        Reason::TxTooBig,
        Reason::PassTooBig,
        Reason::DropTooBigLimited,
        Reason::Encapsulated,
        Reason::FwdCheck,
        Reason::SyncDropped,
        Reason::FwdNatReply,
        Reason::FwdNatIcmp,
        Reason::DropNatNoPort,
        Reason::Translated,
        Reason::Unremembered,
    ];

    /// Whether the counter is a packet's verdict (each packet gets exactly
    /// one), not a side count beside it (`encapsulated`, `sync_dropped`).
    pub const fn verdict(self) -> bool {
        !matches!(
            self,
            Reason::Encapsulated | Reason::SyncDropped | Reason::Translated | Reason::Unremembered
        )
    }

    pub const fn name(self) -> &'static str {
        match self {
            Reason::PassNotIp => "pass_not_ip",
            Reason::PassNotVip => "pass_not_vip",
            Reason::PassFragment => "pass_fragment",
            Reason::PassTruncated => "pass_truncated",
            Reason::PassUnknownL4 => "pass_unknown_l4",
            Reason::PassIpv6Ext => "pass_ipv6_ext_header",
            Reason::PassMalformed => "pass_malformed",
            Reason::FwdFlowHit => "fwd_flow_hit",
            Reason::FwdFlowMiss => "fwd_flow_miss",
            Reason::DropNoBackend => "drop_no_backend",
            Reason::DropNoRoute => "drop_no_route",
            Reason::PassStandby => "pass_standby",
            Reason::PassNotOurs => "pass_not_ours",
            Reason::PassFibMiss => "pass_fib_miss",
            Reason::TxTooBig => "tx_too_big",
            Reason::PassTooBig => "pass_too_big",
            Reason::DropTooBigLimited => "drop_too_big_limited",
            Reason::Encapsulated => "encapsulated",
            Reason::FwdCheck => "fwd_check",
            Reason::SyncDropped => "sync_dropped",
            Reason::FwdNatReply => "fwd_nat_reply",
            Reason::FwdNatIcmp => "fwd_nat_icmp",
            Reason::DropNatNoPort => "drop_nat_no_port",
            Reason::Translated => "translated",
            Reason::Unremembered => "unremembered",
        }
    }
}
