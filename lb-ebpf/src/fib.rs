//! The kernel's FIB, asked from XDP: the next hop (MACs, egress) of a
//! packet the program is about to send somewhere else than it came from.
//! The request lives in a per-CPU map: 64 bytes the stack cannot spare.

use core::mem::size_of;

use aya_ebpf::{
    bindings::bpf_fib_lookup as FibParams, helpers::bpf_fib_lookup, programs::XdpContext,
};
use lb_common::Reason;

use crate::maps::FIB_SCRATCH;

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const BPF_FIB_LKUP_RET_SUCCESS: i64 = 0;
const BPF_FIB_LKUP_RET_FRAG_NEEDED: i64 = 8;

/// Why a lookup gave no next hop.
pub enum Miss {
    /// No route, no resolved neighbour, a blackhole: the kernel's to handle.
    NoRoute,
    /// The packet exceeds the egress MTU, this many bytes.
    TooBig(usize),
    /// No scratch space (cannot happen with the map loaded).
    NoScratch,
}

/// Ask the FIB where a packet of `tot_len` bytes from `src` to `dst`
/// (16-byte forms; IPv4 in the first 4) goes, as if it arrived on this
/// interface. The answer (dmac, smac, ifindex) stays valid until the next
/// lookup on this CPU.
#[inline(always)]
pub fn lookup(
    ctx: &XdpContext,
    v6: bool,
    src: &[u8; 16],
    dst: &[u8; 16],
    proto: u8,
    tot_len: usize,
) -> Result<&'static mut FibParams, Miss> {
    let fib = FIB_SCRATCH.get_ptr_mut(0).ok_or(Miss::NoScratch)?;
    // SAFETY: this CPU's value, nothing else uses it while we run; all
    // zero is a valid request to fill in. Zeroed word by word, volatile: a
    // struct assignment or a plain loop compiles to a call of a
    // byte-by-byte memset on BPF.
    let fib = unsafe {
        let words = fib as *mut u64;
        for i in 0..size_of::<FibParams>() / 8 {
            words.add(i).write_volatile(0);
        }
        &mut *fib
    };
    fib.family = if v6 { AF_INET6 } else { AF_INET };
    fib.l4_protocol = proto;
    fib.__bindgen_anon_1.tot_len = tot_len as u16;
    fib.ifindex = ctx.ingress_ifindex() as u32;
    // SAFETY: plain unions of byte-compatible address forms.
    unsafe {
        if v6 {
            // Word by word, straight into the request (no 16-byte
            // temporaries, which the call chain's stack cannot spare).
            for i in 0..4 {
                fib.__bindgen_anon_3.ipv6_src[i] = word(src, 4 * i);
                fib.__bindgen_anon_4.ipv6_dst[i] = word(dst, 4 * i);
            }
        } else {
            fib.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes([src[0], src[1], src[2], src[3]]);
            fib.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes([dst[0], dst[1], dst[2], dst[3]]);
        }
    }
    // SAFETY: the context and a request of the size we pass.
    let rc = unsafe {
        bpf_fib_lookup(
            ctx.ctx as *mut _,
            fib as *mut FibParams,
            size_of::<FibParams>() as i32,
            0,
        )
    };
    match rc {
        BPF_FIB_LKUP_RET_SUCCESS => Ok(fib),
        // SAFETY: the kernel wrote mtu_result in place of tot_len.
        BPF_FIB_LKUP_RET_FRAG_NEEDED => Err(Miss::TooBig(
            unsafe { fib.__bindgen_anon_1.mtu_result } as usize,
        )),
        _ => Err(Miss::NoRoute),
    }
}

/// The 32-bit word of an address at byte `i`, in memory order (a 16-byte
/// transmute compiles to a memmove call).
#[inline(always)]
fn word(a: &[u8; 16], i: usize) -> u32 {
    u32::from_ne_bytes([a[i], a[i + 1], a[i + 2], a[i + 3]])
}

const _: () = assert!(size_of::<FibParams>().is_multiple_of(8));

impl Miss {
    /// The reason a pass or drop for this miss is counted under.
    #[inline(always)]
    pub fn reason(&self) -> Reason {
        match self {
            Miss::NoRoute => Reason::PassFibMiss,
            Miss::TooBig(_) => Reason::PassTooBig,
            Miss::NoScratch => Reason::DropNoRoute,
        }
    }
}
