//! The flow hash: the same function in the kernel and in the agent, so tests
//! and `lb show` can predict where a flow lands, and every balancer sharing a
//! config agrees on it.

use crate::{
    sched::{HASH_SRC_IP, HASH_SRC_IP_DST_PORT},
    types::FlowKey,
};

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

// MurmurHash3 (x86_32) block and finalizer: cheap, no loops, good avalanche.
#[inline(always)]
const fn mix(h: u32, k: u32) -> u32 {
    let k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    (h ^ k)
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

#[inline(always)]
const fn fmix(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

#[inline(always)]
const fn word(a: &[u8; 16], i: usize) -> u32 {
    u32::from_le_bytes([a[i], a[i + 1], a[i + 2], a[i + 3]])
}

#[inline(always)]
const fn addr(h: u32, a: &[u8; 16]) -> u32 {
    mix(
        mix(mix(mix(h, word(a, 0)), word(a, 4)), word(a, 8)),
        word(a, 12),
    )
}

/// Hash of the fields `fields` selects (`HASH_*`) of a flow.
#[inline(always)]
pub const fn flow_hash(key: &FlowKey, fields: u8) -> u32 {
    let h = addr(0x5bd1_e995, &key.src);
    let h = match fields {
        HASH_SRC_IP => h,
        HASH_SRC_IP_DST_PORT => mix(h, key.dport as u32),
        _ => mix(
            addr(h, &key.dst),
            ((key.sport as u32) << 16 | key.dport as u32) ^ ((key.proto as u32) << 8),
        ),
    };
    fmix(h)
}

/// A 64-bit hash of arbitrary bytes (FNV-1a then a finalizer), for the agent's
/// table permutations; not used per packet.
pub fn bytes_hash(data: &[u8], seed: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    let mut i = 0;
    while i < data.len() {
        h ^= data[i] as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    // splitmix64 finalizer: FNV alone clusters on inputs that differ in one byte.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}
