//! NAT and full-NAT (`forward = "nat" | "fullnat"`): the connection state
//! both directions share, and the checksum arithmetic of rewriting a packet
//! in place. The XDP program and the agent (flow sync, sweeping, `lb show`)
//! build reverse entries with the same functions.

use bytemuck::{Pod, Zeroable};

use crate::types::FlowKey;

/// `NatEntry::flags`: a FIN or RST was seen; the short timeout applies.
pub const NAT_CLOSING: u32 = 1;

/// Most source addresses full-NAT may use, per family (a power of two).
pub const MAX_SNAT: usize = 4;
const _: () = assert!(MAX_SNAT.is_power_of_two());

/// IPVS's default timeouts (ipvsadm --set 900 120 300), in seconds.
pub const DEFAULT_TCP_TIMEOUT: u32 = 900;
pub const DEFAULT_TCP_FIN_TIMEOUT: u32 = 120;
pub const DEFAULT_UDP_TIMEOUT: u32 = 300;

/// Full-NAT's default source port range: below Linux's ephemeral ports
/// (32768-60999, the host's own connections and health checks) and the
/// dataplane check ports (61000 up), which share the source addresses.
pub const DEFAULT_SNAT_PORTS: (u16, u16) = (10_000, 32_767);

/// Ports a new full-NAT connection tries before it is dropped (counted).
pub const SNAT_PROBES: u32 = 16;

/// NAT's value, keyed by the reply's 5-tuple as the backend sends it
/// (backend -> client for NAT, backend -> source address for full-NAT):
/// what the reply's addresses and ports become.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct NatEntry {
    /// The VIP and the client: the reply's new source and destination.
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub backend: u32,
    pub service: u32,
    pub flags: u32,
    /// bpf_ktime_get_ns (CLOCK_MONOTONIC) of the last packet either way.
    pub last_seen_ns: u64,
}

impl NatEntry {
    /// The client's flow this entry answers (its FLOWS key).
    pub const fn forward_key(&self, proto: u8, family: u8) -> FlowKey {
        FlowKey {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            proto,
            family,
            _pad: [0; 2],
        }
    }

    /// Whether this entry belongs to the client flow `fwd`.
    #[inline(always)]
    pub fn answers(&self, fwd: &FlowKey) -> bool {
        self.dst == fwd.src
            && self.src == fwd.dst
            && self.dport == fwd.sport
            && self.sport == fwd.dport
    }
}

/// NAT_CONFIG's one value: full-NAT's sources and ports, written by the
/// agent before the program runs (whether any service translates is
/// CONFIG's CFG_NAT).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct NatConfig {
    pub snat6: [[u8; 16]; MAX_SNAT],
    pub snat4: [[u8; 4]; MAX_SNAT],
    pub port_lo: u16,
    pub port_hi: u16,
    /// Addresses configured per family.
    pub n4: u8,
    pub n6: u8,
    pub _pad: [u8; 2],
}

impl NatConfig {
    /// Full-NAT's source address `idx` of a family, as a flow key's 16 bytes.
    #[inline(always)]
    pub fn snat(&self, v6: bool, idx: u32) -> Option<[u8; 16]> {
        let n = if v6 { self.n6 } else { self.n4 };
        if idx >= n as u32 || idx >= MAX_SNAT as u32 {
            return None;
        }
        // The mask bounds the index for the BPF verifier, which does not
        // see the comparison above through the compiler's rewriting (and
        // black_box keeps the compiler from dropping the mask as redundant).
        let i = core::hint::black_box(idx) as usize & (MAX_SNAT - 1);
        if v6 {
            return Some(self.snat6[i]);
        }
        let a = self.snat4[i];
        // A literal, not a zeroed array filled in: that is a memset call on BPF.
        Some([a[0], a[1], a[2], a[3], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    }

    /// The source address of a full-NAT flow with 5-tuple hash `hash`: its
    /// index and the address. The data plane picks it so, and a sync peer
    /// finds the same one from the flow alone.
    #[inline(always)]
    pub fn source(&self, v6: bool, hash: u32) -> Option<(u32, [u8; 16])> {
        let idx = hash.checked_rem(self.count(v6))?;
        Some((idx, self.snat(v6, idx)?))
    }

    /// Source addresses of a family.
    #[inline(always)]
    pub fn count(&self, v6: bool) -> u32 {
        if v6 { self.n6 as u32 } else { self.n4 as u32 }
    }

    /// Ports in the range (at least 1 once configured).
    #[inline(always)]
    pub fn ports(&self) -> u32 {
        (self.port_hi as u32 + 1).saturating_sub(self.port_lo as u32)
    }
}

/// `FlowValue::nat` of a full-NAT flow: its source address index and port
/// (0: not full-NAT).
#[inline(always)]
pub const fn snat_pack(idx: u32, port: u16) -> u32 {
    (idx << 16) | port as u32
}

#[inline(always)]
pub const fn snat_unpack(nat: u32) -> (u32, u16) {
    (nat >> 16, nat as u16)
}

/// What a translated packet's addresses and ports become (or the key its
/// reply arrives with, read the other way).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rewrite {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport: u16,
    pub dport: u16,
}

/// The client flow `fwd` to backend (`addr`, `port`; 0 keeps the VIP's
/// port), with full-NAT's (source, port) if any: what its packets become.
#[inline(always)]
pub fn forward_rewrite(
    fwd: &FlowKey,
    addr: &[u8; 16],
    port: u16,
    snat: Option<([u8; 16], u16)>,
) -> Rewrite {
    let (src, sport) = match snat {
        Some(s) => s,
        None => (fwd.src, fwd.sport),
    };
    Rewrite {
        src,
        dst: *addr,
        sport,
        dport: if port == 0 { fwd.dport } else { port },
    }
}

/// The key the backend's replies to a rewritten flow arrive with.
#[inline(always)]
pub const fn reply_key(to: &Rewrite, proto: u8, family: u8) -> FlowKey {
    FlowKey {
        src: to.dst,
        dst: to.src,
        sport: to.dport,
        dport: to.sport,
        proto,
        family,
        _pad: [0; 2],
    }
}

/// The reverse entry of client flow `fwd`: replies go back as from the VIP.
#[inline(always)]
pub const fn reply_entry(fwd: &FlowKey, backend: u32, service: u32, now_ns: u64) -> NatEntry {
    NatEntry {
        src: fwd.dst,
        dst: fwd.src,
        sport: fwd.dport,
        dport: fwd.sport,
        backend,
        service,
        flags: 0,
        last_seen_ns: now_ns,
    }
}

/// An incremental Internet checksum update (RFC 1624, eqn. 3): collect the
/// 16-bit words that change, then apply them to any checksum covering them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Delta(pub u32);

impl Delta {
    /// One 16-bit word (in the packet's byte order) from `old` to `new`.
    #[inline(always)]
    pub fn word(mut self, old: u16, new: u16) -> Self {
        self.0 += (!old) as u32 + new as u32;
        self.0 = (self.0 & 0xffff) + (self.0 >> 16);
        self
    }

    /// A 16-byte address (IPv4's trailing zeros cancel out).
    #[inline(always)]
    pub fn addr(mut self, old: &[u8; 16], new: &[u8; 16]) -> Self {
        let mut i = 0;
        while i < 16 {
            self = self.word(
                u16::from_be_bytes([old[i], old[i + 1]]),
                u16::from_be_bytes([new[i], new[i + 1]]),
            );
            i += 2;
        }
        self
    }

    /// Another delta's words too.
    #[inline(always)]
    pub fn and(mut self, d: Delta) -> Self {
        self.0 += d.0;
        self.0 = (self.0 & 0xffff) + (self.0 >> 16);
        self
    }

    /// `check` (a checksum field as a big-endian u16) after the changes.
    #[inline(always)]
    pub fn apply(self, check: u16) -> u16 {
        let mut sum = (!check) as u32 + self.0;
        sum = (sum & 0xffff) + (sum >> 16);
        sum = (sum & 0xffff) + (sum >> 16);
        !(sum as u16)
    }
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: repr(C) plain data with explicit padding.
    unsafe impl aya::Pod for super::NatEntry {}
    unsafe impl aya::Pod for super::NatConfig {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A full Internet checksum over `data` (even length).
    fn full(data: &[u8]) -> u16 {
        let mut sum = 0u32;
        for w in data.chunks(2) {
            sum += u16::from_be_bytes([w[0], w[1]]) as u32;
        }
        while sum >> 16 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    #[test]
    fn sizes() {
        assert_eq!(core::mem::size_of::<NatEntry>(), 56);
        assert_eq!(core::mem::size_of::<NatConfig>(), 88);
    }

    #[test]
    fn incremental_update_matches_a_full_sum() {
        let mut data = [0u8; 40];
        for (i, b) in data.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(37).wrapping_add(11);
        }
        let check = full(&data);
        let (mut old, mut new) = ([0u8; 16], [0u8; 16]);
        old.copy_from_slice(&data[8..24]);
        new[..4].copy_from_slice(&[198, 51, 100, 11]);
        new[4..].copy_from_slice(&old[4..]);
        let d = Delta::default()
            .addr(&old, &new)
            .word(u16::from_be_bytes([data[30], data[31]]), 8080);
        data[8..24].copy_from_slice(&new);
        data[30..32].copy_from_slice(&8080u16.to_be_bytes());
        assert_eq!(d.apply(check), full(&data));
    }

    #[test]
    fn reverse_entry_round_trips_the_client_flow() {
        let fwd = FlowKey {
            src: [192, 0, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            dst: [203, 0, 113, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            sport: 40000,
            dport: 80,
            proto: 6,
            family: 4,
            _pad: [0; 2],
        };
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&[198, 51, 100, 11]);
        let to = forward_rewrite(&fwd, &b, 8080, None);
        let rk = reply_key(&to, 6, 4);
        assert_eq!(
            (rk.src, rk.sport, rk.dst, rk.dport),
            (b, 8080, fwd.src, 40000)
        );
        let e = reply_entry(&fwd, 3, 1, 5);
        assert!(e.answers(&fwd));
        assert_eq!(e.forward_key(6, 4), fwd);
        let mut s = [0u8; 16];
        s[..4].copy_from_slice(&[198, 51, 100, 2]);
        let to = forward_rewrite(&fwd, &b, 0, Some((s, 10_001)));
        assert_eq!((to.src, to.sport, to.dport), (s, 10_001, 80));
        assert_eq!(snat_unpack(snat_pack(2, 10_001)), (2, 10_001));
    }
}
