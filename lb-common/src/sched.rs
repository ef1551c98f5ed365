//! Per-service modes as the data plane knows them: the scheduler table (id,
//! config name, how a TABLES slot is laid out), forwarding modes and hash
//! fields. Each name is spelled here once; the config, `lb show`, the bench
//! and the tests read it from here.

/// Largest `table_size` (M) the agent accepts; every slot bound in the XDP
/// program (the ring search's steps) follows from it.
pub const MAX_TABLE_SIZE: u32 = 4_000_037;

/// Most backends a least-conn or shortest-response service can hold (the
/// XDP program's bounded scan).
pub const MAX_SCAN_BACKENDS: u32 = 256;

/// How a scheduler lays out one TABLES slot: entries come in records of
/// `stride` words, and the backend id is the word at `id_offset` of each
/// (the other words are ring points, weights or response times).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub stride: u32,
    pub id_offset: u32,
}

/// `ServiceMeta::scheduler`.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scheduler {
    /// Maglev lookup table: M backend ids.
    Maglev = 0,
    /// Consistent-hash ring: sorted (point, backend) pairs.
    Ring = 1,
    /// Smooth weighted round robin over a weighted sequence (per-CPU position).
    Wrr = 2,
    /// A uniformly random position in the same weighted sequence.
    Random = 3,
    /// Fewest active flows per unit of weight: (backend, weight) pairs.
    LeastConn = 4,
    /// Lowest response time x (active + 1), ties to a weighted random one:
    /// (backend, weight, response ms) triples.
    ShortestResponse = 5,
}

pub const SCHED_MAGLEV: u8 = Scheduler::Maglev as u8;
pub const SCHED_RING: u8 = Scheduler::Ring as u8;
pub const SCHED_WRR: u8 = Scheduler::Wrr as u8;
pub const SCHED_RANDOM: u8 = Scheduler::Random as u8;
pub const SCHED_LEAST_CONN: u8 = Scheduler::LeastConn as u8;
pub const SCHED_SHORTEST_RESPONSE: u8 = Scheduler::ShortestResponse as u8;

impl Scheduler {
    /// Every scheduler; the first is the default.
    pub const ALL: [Scheduler; 6] = [
        Scheduler::Maglev,
        Scheduler::Ring,
        Scheduler::Wrr,
        Scheduler::Random,
        Scheduler::LeastConn,
        Scheduler::ShortestResponse,
    ];

    /// The name in the config and in `lb show`.
    pub const fn name(self) -> &'static str {
        match self {
            Scheduler::Maglev => "maglev",
            Scheduler::Ring => "ring",
            Scheduler::Wrr => "wrr",
            Scheduler::Random => "random",
            Scheduler::LeastConn => "least-conn",
            Scheduler::ShortestResponse => "shortest-response",
        }
    }

    pub const fn id(self) -> u8 {
        self as u8
    }

    pub const fn from_id(id: u8) -> Option<Self> {
        let mut i = 0;
        while i < Self::ALL.len() {
            if Self::ALL[i] as u8 == id {
                return Some(Self::ALL[i]);
            }
            i += 1;
        }
        None
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    pub const fn layout(self) -> Layout {
        match self {
            Scheduler::Ring => Layout {
                stride: 2,
                id_offset: 1,
            },
            Scheduler::LeastConn => Layout {
                stride: 2,
                id_offset: 0,
            },
            Scheduler::ShortestResponse => Layout {
                stride: 3,
                id_offset: 0,
            },
            Scheduler::Maglev | Scheduler::Wrr | Scheduler::Random => Layout {
                stride: 1,
                id_offset: 0,
            },
        }
    }

    /// Whether the XDP program scans every candidate for a new flow (and so
    /// the service is limited to MAX_SCAN_BACKENDS).
    pub const fn scans(self) -> bool {
        matches!(self, Scheduler::LeastConn | Scheduler::ShortestResponse)
    }
}

/// Most points a ring slot holds: one (point, backend) pair per two words.
pub const RING_MAX_POINTS: u32 = MAX_TABLE_SIZE / Scheduler::Ring.layout().stride;
/// Binary-search steps that always converge over RING_MAX_POINTS points
/// (the bit length of the largest count).
pub const RING_SEARCH_STEPS: u32 = u32::BITS - RING_MAX_POINTS.leading_zeros();
const _: () = assert!((1u64 << RING_SEARCH_STEPS) > RING_MAX_POINTS as u64);

/// `ServiceMeta::forward`.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Forward {
    /// Direct routing: rewrite the MACs (LVS-DR).
    Dr = 0,
    /// An outer IP header to the backend (IPIP, IP6IP6 or 4in6; LVS-TUN).
    Ipip = 1,
    /// The same inside UDP: GUE variant 1 (RFC 8086), direct IP.
    Gue = 2,
    /// Destination NAT (LVS-NAT): VIP:port becomes backend:port; the
    /// backends' replies come back through the balancer, their gateway.
    Nat = 3,
    /// NAT of both ends: the source also becomes one of the balancer's
    /// addresses and ports, so backends need no route to the clients.
    FullNat = 4,
}

pub const FORWARD_DR: u8 = Forward::Dr as u8;
pub const FORWARD_IPIP: u8 = Forward::Ipip as u8;
pub const FORWARD_GUE: u8 = Forward::Gue as u8;
pub const FORWARD_NAT: u8 = Forward::Nat as u8;
pub const FORWARD_FULLNAT: u8 = Forward::FullNat as u8;

/// Katran's GUE port: the default of `[agent] gue_port` and of
/// `lb realserver --gue-port`.
pub const DEFAULT_GUE_PORT: u16 = 6080;

impl Forward {
    pub const ALL: [Forward; 5] = [
        Forward::Dr,
        Forward::Ipip,
        Forward::Gue,
        Forward::Nat,
        Forward::FullNat,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Forward::Dr => "dr",
            Forward::Ipip => "ipip",
            Forward::Gue => "gue",
            Forward::Nat => "nat",
            Forward::FullNat => "fullnat",
        }
    }

    pub const fn from_id(id: u8) -> Option<Self> {
        match id {
            FORWARD_DR => Some(Forward::Dr),
            FORWARD_IPIP => Some(Forward::Ipip),
            FORWARD_GUE => Some(Forward::Gue),
            FORWARD_NAT => Some(Forward::Nat),
            FORWARD_FULLNAT => Some(Forward::FullNat),
            _ => None,
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Whether packets reach the backend inside an outer header.
    pub const fn tunnel(self) -> bool {
        matches!(self, Forward::Ipip | Forward::Gue)
    }

    /// Whether the packet is rewritten (NAT or full-NAT).
    pub const fn nat(self) -> bool {
        matches!(self, Forward::Nat | Forward::FullNat)
    }

    /// Whether the FIB routes the packet to the backend (tunnels and NAT:
    /// the next hop is the route's, not the backend's own MAC).
    pub const fn routed(self) -> bool {
        !matches!(self, Forward::Dr)
    }
}

/// `ServiceMeta::hash_fields`: which flow fields pick the table entry.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HashFields {
    FiveTuple = 0,
    /// Persistence: every connection of a client lands on one backend.
    SrcIp = 1,
    SrcIpDstPort = 2,
}

pub const HASH_5TUPLE: u8 = HashFields::FiveTuple as u8;
pub const HASH_SRC_IP: u8 = HashFields::SrcIp as u8;
pub const HASH_SRC_IP_DST_PORT: u8 = HashFields::SrcIpDstPort as u8;

impl HashFields {
    pub const ALL: [HashFields; 3] = [
        HashFields::FiveTuple,
        HashFields::SrcIp,
        HashFields::SrcIpDstPort,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            HashFields::FiveTuple => "5-tuple",
            HashFields::SrcIp => "src-ip",
            HashFields::SrcIpDstPort => "src-ip+dst-port",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|h| h.name() == name)
    }
}

macro_rules! display_by_name {
    ($($t:ty),*) => {$(
        impl core::fmt::Display for $t {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(self.name())
            }
        }
    )*};
}
display_by_name!(Scheduler, Forward, HashFields);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names_round_trip() {
        for (i, s) in Scheduler::ALL.into_iter().enumerate() {
            assert_eq!(s.id() as usize, i);
            assert_eq!(Scheduler::from_id(s.id()), Some(s));
            assert_eq!(Scheduler::from_name(s.name()), Some(s));
        }
        assert_eq!(Scheduler::from_id(6), None);
        for h in HashFields::ALL {
            assert_eq!(HashFields::from_name(h.name()), Some(h));
        }
    }

    #[test]
    fn ring_search_covers_the_largest_slot() {
        assert_eq!(RING_MAX_POINTS, 2_000_018);
        assert_eq!(RING_SEARCH_STEPS, 21);
    }
}
