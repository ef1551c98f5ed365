//! The forwarding-path benchmark's own programs (`cargo xtask bench
//! --lab`), never attached by the agent: a frame generator run with
//! BPF_PROG_TEST_RUN's live frames, and a sink that counts and drops.

use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use lb_common::{
    bench::{GEN_HEADER, GEN_NEW_SOURCES, GenState},
    nat::Delta,
};
use network_types::{eth::EthHdr, ip::Ipv4Hdr, tcp::TcpHdr};

use crate::{
    maps::{GEN, SINK_COUNT},
    parse::ptr_mut,
};

/// Write the template headers again and give the frame its next flow,
/// then send it: a source port from `flows` (established flows), or with
/// GEN_NEW_SOURCES a new source address in 192.0.2.0/24 and port for every
/// frame (a SYN flood). The IPv4 and TCP checksums follow.
#[inline(always)]
pub fn generate(ctx: &XdpContext) -> u32 {
    let Ok(h) = ptr_mut::<[u16; GEN_HEADER / 2]>(ctx, 0) else {
        return xdp_action::XDP_ABORTED;
    };
    let Some(st) = GEN.get_ptr_mut(0) else {
        return xdp_action::XDP_ABORTED;
    };
    // SAFETY: this CPU's state; ptr_mut checked the headers' bounds.
    unsafe {
        let st: &mut GenState = &mut *st;
        // Word by word: an array copy would be a byte-by-byte memmove call.
        let t = st.template.as_ptr() as *const u16;
        let p = h as *mut u16;
        for i in 0..GEN_HEADER / 2 {
            p.add(i).write_unaligned(t.add(i).read_unaligned());
        }
        let n = st.sent;
        st.sent = n.wrapping_add(1);
        let flows = st.flows.max(1) as u64;
        let (host, port) = if st.mode == GEN_NEW_SOURCES {
            let x = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            (
                1 + ((x >> 40) % 254) as u8,
                1024 + ((x >> 16) % 60_000) as u16,
            )
        } else {
            (st.template[IP_SRC_LAST], 10_000 + (n % flows) as u16)
        };
        let (Ok(ip), Ok(tcp)) = (
            ptr_mut::<Ipv4Hdr>(ctx, EthHdr::LEN),
            ptr_mut::<TcpHdr>(ctx, EthHdr::LEN + Ipv4Hdr::LEN),
        ) else {
            return xdp_action::XDP_ABORTED;
        };
        let old = (*ip).src_addr;
        let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
        a[..4].copy_from_slice(&old);
        b[..4].copy_from_slice(&old);
        b[3] = host;
        let addr = Delta::default().addr(&a, &b);
        (*ip).src_addr[3] = host;
        (*ip).check = addr.apply(u16::from_be_bytes((*ip).check)).to_be_bytes();
        let old_port = u16::from_be_bytes((*tcp).source);
        (*tcp).source = port.to_be_bytes();
        (*tcp).check = addr
            .word(old_port, port)
            .apply(u16::from_be_bytes((*tcp).check))
            .to_be_bytes();
    }
    xdp_action::XDP_TX
}

/// Offset of the last byte of the IPv4 source address in the template.
const IP_SRC_LAST: usize = EthHdr::LEN + 15;

/// Count the frame (per CPU) and drop it.
#[inline(always)]
pub fn sink() -> u32 {
    if let Some(c) = SINK_COUNT.get_ptr_mut(0) {
        // SAFETY: this CPU's counter.
        unsafe { *c += 1 };
    }
    xdp_action::XDP_DROP
}
