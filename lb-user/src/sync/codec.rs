//! The sync wire format: one UDP datagram per batch.
//!
//! ```text
//! header (24 bytes)
//!   magic "LBSY", version 1, kind (1 flows, 2 dump request, 3 dump end),
//!   count u16, sequence u32, sent (unix µs) u64, oldest wait (µs) u32
//! count entries (80 bytes each)
//!   flow key (40: the map's FlowKey), service key (20: the map's
//!   ServiceKey), backend address (16), backend family, event kind,
//!   full-NAT source port (u16, native order as the map's; 0 otherwise)
//! HMAC-SHA256 of all of the above (32 bytes) when a key is configured
//! ```
//!
//! Everything is checked before anything is used; a batch that fails any
//! check is dropped whole and counted.

use std::net::IpAddr;

use bytemuck::{Pod, Zeroable};
use lb_common::{
    FAMILY_V4, FAMILY_V6, FlowKey, PROTO_TCP, PROTO_UDP, ServiceKey,
    sync::{FLOW_CLOSED, FLOW_OPENED},
};
use ring::hmac;

const MAGIC: &[u8; 4] = b"LBSY";
const VERSION: u8 = 1;
pub const KIND_FLOWS: u8 = 1;
pub const KIND_DUMP_REQUEST: u8 = 2;
/// After the last batch of a dump.
pub const KIND_DUMP_END: u8 = 3;
pub const HEADER: usize = 24;
pub const ENTRY: usize = 80;
pub const TAG: usize = 32;
/// Entries per datagram: a batch stays under 1,400 bytes (no fragments).
pub const MAX_ENTRIES: usize = 16;

/// One flow opened or closed, in terms every node shares (not ids).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Entry {
    pub flow: FlowKey,
    pub service: ServiceKey,
    pub backend: [u8; 16],
    pub backend_family: u8,
    /// FLOW_OPENED or FLOW_CLOSED.
    pub kind: u8,
    /// Full-NAT: the flow's source port (its address is the flow hash's
    /// pick of `snat_addresses`, which every node configures alike).
    pub snat_port: u16,
}

const _: () = assert!(size_of::<Entry>() == ENTRY);

impl Entry {
    pub fn backend_addr(&self) -> IpAddr {
        crate::addr::from_bytes(&self.backend, self.backend_family)
    }

    /// Fields a sender could only get wrong on purpose.
    fn sane(&self) -> bool {
        let family = |f: u8| f == FAMILY_V4 || f == FAMILY_V6;
        family(self.flow.family)
            && family(self.service.family)
            && family(self.backend_family)
            && self.flow.family == self.service.family
            && self.flow.dst == self.service.addr
            && matches!(self.flow.proto, PROTO_TCP | PROTO_UDP)
            && self.flow.proto == self.service.proto
            && matches!(self.kind, FLOW_OPENED | FLOW_CLOSED)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub kind: u8,
    pub seq: u32,
    pub sent_us: u64,
    pub oldest_wait_us: u32,
    pub entries: Vec<Entry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// Wrong size, magic, version, kind, count or a senseless entry.
    Malformed,
    /// A key is configured and the tag is missing or wrong.
    BadAuth,
}

pub fn encode(b: &Batch, key: Option<&hmac::Key>) -> Vec<u8> {
    debug_assert!(b.entries.len() <= MAX_ENTRIES);
    let mut out = Vec::with_capacity(HEADER + b.entries.len() * ENTRY + TAG);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.push(b.kind);
    out.extend_from_slice(&(b.entries.len() as u16).to_be_bytes());
    out.extend_from_slice(&b.seq.to_be_bytes());
    out.extend_from_slice(&b.sent_us.to_be_bytes());
    out.extend_from_slice(&b.oldest_wait_us.to_be_bytes());
    for e in &b.entries {
        out.extend_from_slice(bytemuck::bytes_of(e));
    }
    if let Some(k) = key {
        let tag = hmac::sign(k, &out);
        out.extend_from_slice(tag.as_ref());
    }
    out
}

pub fn decode(buf: &[u8], key: Option<&hmac::Key>) -> Result<Batch, Reject> {
    if buf.len() < HEADER || &buf[..4] != MAGIC || buf[4] != VERSION {
        return Err(Reject::Malformed);
    }
    let kind = buf[5];
    let count = u16::from_be_bytes([buf[6], buf[7]]) as usize;
    let tag = if key.is_some() { TAG } else { 0 };
    if !matches!(kind, KIND_FLOWS | KIND_DUMP_REQUEST | KIND_DUMP_END)
        || count > MAX_ENTRIES
        || (kind != KIND_FLOWS && count != 0)
    {
        return Err(Reject::Malformed);
    }
    let body = HEADER + count * ENTRY;
    if buf.len() != body + tag {
        // A keyless batch at a keyed receiver (or the reverse) lands here
        // too: its length is off by exactly a tag.
        return Err(
            if buf.len() + TAG == body + tag || buf.len() == body + TAG {
                Reject::BadAuth
            } else {
                Reject::Malformed
            },
        );
    }
    if let Some(k) = key {
        hmac::verify(k, &buf[..body], &buf[body..]).map_err(|_| Reject::BadAuth)?;
    }
    let mut entries = Vec::with_capacity(count);
    for chunk in buf[HEADER..body].chunks_exact(ENTRY) {
        let e: Entry = bytemuck::pod_read_unaligned(chunk);
        if !e.sane() {
            return Err(Reject::Malformed);
        }
        entries.push(e);
    }
    let u32_at = |i: usize| u32::from_be_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
    Ok(Batch {
        kind,
        seq: u32_at(8),
        sent_us: u64::from_be_bytes(buf[12..20].try_into().expect("8 bytes")),
        oldest_wait_us: u32_at(20),
        entries,
    })
}

pub fn key(bytes: &[u8]) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(port: u16) -> Entry {
        let mut e = Entry {
            flow: FlowKey {
                sport: port,
                dport: 80,
                proto: PROTO_TCP,
                family: FAMILY_V4,
                ..Default::default()
            },
            service: ServiceKey {
                port: 80,
                proto: PROTO_TCP,
                family: FAMILY_V4,
                ..Default::default()
            },
            backend_family: FAMILY_V4,
            kind: FLOW_OPENED,
            ..Default::default()
        };
        e.flow.src[..4].copy_from_slice(&[192, 0, 2, 7]);
        e.flow.dst[..4].copy_from_slice(&[203, 0, 113, 10]);
        e.service.addr = e.flow.dst;
        e.backend[..4].copy_from_slice(&[198, 51, 100, 11]);
        e
    }

    fn batch(n: u16) -> Batch {
        Batch {
            kind: KIND_FLOWS,
            seq: 7,
            sent_us: 1_700_000_000_000_000,
            oldest_wait_us: 1500,
            entries: (0..n).map(|i| entry(40000 + i)).collect(),
        }
    }

    #[test]
    fn batches_round_trip_with_and_without_a_key() {
        let k = key(b"0123456789abcdef0123");
        for n in [0, 1, MAX_ENTRIES as u16] {
            let b = batch(n);
            assert_eq!(decode(&encode(&b, None), None), Ok(b.clone()));
            assert_eq!(decode(&encode(&b, Some(&k)), Some(&k)), Ok(b));
        }
        assert_eq!(encode(&batch(16), None).len(), HEADER + 16 * ENTRY);
        assert!(encode(&batch(16), Some(&k)).len() <= 1400);
    }

    #[test]
    fn hostile_batches_are_refused() {
        let k = key(b"0123456789abcdef0123");
        let other = key(b"another key, 20 bytes");
        let good = encode(&batch(2), Some(&k));
        // Wrong key, no tag, a flipped bit, truncated, padded.
        assert_eq!(
            decode(&encode(&batch(2), Some(&other)), Some(&k)),
            Err(Reject::BadAuth)
        );
        assert_eq!(
            decode(&encode(&batch(2), None), Some(&k)),
            Err(Reject::BadAuth)
        );
        let mut flipped = good.clone();
        flipped[HEADER + 3] ^= 1;
        assert_eq!(decode(&flipped, Some(&k)), Err(Reject::BadAuth));
        assert_eq!(
            decode(&good[..good.len() - 5], Some(&k)),
            Err(Reject::Malformed)
        );
        let mut padded = good.clone();
        padded.extend_from_slice(&[0; 7]);
        assert_eq!(decode(&padded, Some(&k)), Err(Reject::Malformed));
        // Absurd counts, other magic or version, unknown kinds.
        let mut absurd = encode(&batch(2), None);
        absurd[6..8].copy_from_slice(&60000u16.to_be_bytes());
        assert_eq!(decode(&absurd, None), Err(Reject::Malformed));
        for (at, v) in [(0, b'X'), (4, 9), (5, 7)] {
            let mut b = encode(&batch(1), None);
            b[at] = v;
            assert_eq!(decode(&b, None), Err(Reject::Malformed), "byte {at}");
        }
        assert_eq!(decode(&[], None), Err(Reject::Malformed));
        // An entry that makes no sense (a flow to another address than its
        // service, an unknown event) spoils the batch.
        let mut b = batch(1);
        b.entries[0].flow.dst[0] = 1;
        assert_eq!(decode(&encode(&b, None), None), Err(Reject::Malformed));
        let mut b = batch(1);
        b.entries[0].kind = 9;
        assert_eq!(decode(&encode(&b, None), None), Err(Reject::Malformed));
        // A dump request carries no entries.
        let mut d = batch(1);
        d.kind = KIND_DUMP_REQUEST;
        assert_eq!(decode(&encode(&d, None), None), Err(Reject::Malformed));
    }
}
