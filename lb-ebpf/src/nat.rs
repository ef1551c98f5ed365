//! NAT and full-NAT (LVS-NAT, DPVS's FNAT): the client's packets get the
//! backend's address and port (and, full-NAT, one of our addresses as
//! source), the backend's replies get the VIP's back; ICMP errors about
//! either direction are translated so path MTU discovery works through us.
//! Each direction is one lookup: FLOWS forward (the backend), NAT back (the
//! original addresses). The reverse entry is created by the same program
//! run as the forward one, so the first reply finds it.

// Map keys and values are passed as references into the per-CPU scratch
// space: by value they would be copied onto the stack this module avoids.
#![allow(clippy::needless_borrows_for_generic_args)]

use aya_ebpf::{bindings::xdp_action, helpers::bpf_ktime_get_ns, programs::XdpContext};
use lb_common::{
    FAMILY_V6, FORWARD_FULLNAT, FlowKey, HASH_5TUPLE, PROTO_TCP, PROTO_UDP, Reason, flow_hash,
    nat::{
        Delta, NAT_CLOSING, NatConfig, NatEntry, Rewrite, SNAT_PROBES, forward_rewrite,
        reply_entry, reply_key, snat_pack, snat_unpack,
    },
    sync::FLOW_OPENED,
};
use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
};

use crate::{
    fib, lookup,
    maps::{FLOWS, NAT, NAT_CONFIG, NAT_SCRATCH},
    parse::{self, ETH_P_IP, ETH_P_IPV6, ptr_at, ptr_mut},
    stats,
    tunnel::{Job, TOO_BIG},
};

const PASS: u32 = xdp_action::XDP_PASS;
const DROP: u32 = xdp_action::XDP_DROP;
const BPF_ANY: u64 = 0;
const BPF_NOEXIST: u64 = 1;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_ICMPV6: u8 = 58;
const ICMP_HDR: usize = 8;
/// A reverse entry's last-seen time is rewritten at most this often: a
/// shared cache line is not written by every packet.
const TOUCH_NS: u64 = 1_000_000_000;
/// TCP's and UDP's checksum fields, from the start of their headers.
const TCP_CHECK: usize = 16;
const UDP_CHECK: usize = 6;

type Verdict = Result<u32, (Reason, u32)>;

/// Whether any service translates (only then are replies and ICMP errors
/// looked up).
#[inline(always)]
pub fn enabled() -> bool {
    lookup::config().is_some_and(|c| c.flags & lb_common::CFG_NAT != 0)
}

/// Run a NAT job: forward, reply or ICMP. The result reads as tunnel's
/// (`Sent::from_raw`). Each is its own BPF function, as the tunnel's: the
/// stack holds one of them at a time.
#[inline(always)]
pub fn run(ctx: &XdpContext, job: u64) -> u64 {
    let j = Job::unpack(job);
    match j.kind {
        crate::tunnel::JOB_NAT_REPLY => reply_job(ctx),
        crate::tunnel::JOB_NAT_ICMP => icmp_job(ctx),
        kind => forward_job(ctx, j.backend, j.hash, kind == crate::tunnel::JOB_FULLNAT),
    }
}

#[inline(never)]
fn forward_job(ctx: &XdpContext, id: u32, nat: u32, full: bool) -> u64 {
    raw(forward(ctx, id, nat, full), Reason::Translated)
}

#[inline(never)]
fn reply_job(ctx: &XdpContext) -> u64 {
    raw(reply(ctx), Reason::FwdNatReply)
}

#[inline(never)]
fn icmp_job(ctx: &XdpContext) -> u64 {
    raw(icmp(ctx), Reason::FwdNatIcmp)
}

/// A verdict in one register, its reason counted (`counted` on success).
#[inline(always)]
fn raw(done: Verdict, counted: Reason) -> u64 {
    match done {
        Ok(action) => {
            stats::reason(counted);
            action as u64
        }
        Err((Reason::TxTooBig, mtu)) => TOO_BIG | mtu as u64,
        Err((r, action)) => {
            stats::reason(r);
            action as u64
        }
    }
}

/// The per-CPU working space of a NAT job: its keys and rewrites do not
/// fit on the BPF stack beside the FIB request and the parse.
pub struct Work {
    key: FlowKey,
    back: FlowKey,
    inner: FlowKey,
    to: Rewrite,
    inner_to: Rewrite,
    e: NatEntry,
}

#[inline(always)]
fn work() -> Result<&'static mut Work, (Reason, u32)> {
    let w = NAT_SCRATCH
        .get_ptr_mut(0)
        .ok_or((Reason::DropNoRoute, DROP))?;
    // SAFETY: this CPU's value; nothing else uses it while we run.
    Ok(unsafe { &mut *w })
}

/// The client's packet to backend `id`: allocate full-NAT's source for a
/// new flow, make sure the reverse entry exists, rewrite, route.
#[inline(always)]
fn forward(ctx: &XdpContext, id: u32, mut nat: u32, full: bool) -> Verdict {
    let w = work()?;
    let p = parse::parse(ctx).map_err(|r| (r, PASS))?;
    let (l3, opening, closing) = (p.l3_off, p.opening, p.closing);
    w.key = p.key;
    let b = lookup::backend(id).ok_or((Reason::DropNoBackend, DROP))?;
    let cfg = NAT_CONFIG.get(0).ok_or((Reason::DropNoRoute, DROP))?;
    let v6 = w.key.family == FAMILY_V6;
    if full && nat == 0 {
        nat = allocated(allocate(w, id, b, cfg))?;
    }
    target(w, b, cfg, full, nat)?;
    w.back = reply_key(&w.to, w.key.proto, w.key.family);
    let now = unsafe { bpf_ktime_get_ns() };
    match NAT.get_ptr_mut(&w.back) {
        // SAFETY: the map's value, valid for this program run.
        Some(e) if unsafe { (*e).answers(&w.key) } => touch(e, now, opening, closing),
        // Full-NAT: an expired flow's port went to another connection.
        Some(_) if full => {
            nat = allocated(allocate(w, id, b, cfg))?;
            target(w, b, cfg, full, nat)?;
        }
        _ => {
            w.e = reply_entry(&w.key, id, b.service, now);
            if closing {
                w.e.flags = NAT_CLOSING;
            }
            let flags = if full { BPF_NOEXIST } else { BPF_ANY };
            if NAT.insert(&w.back, &w.e, flags).is_err() && full {
                return Err((Reason::DropNatNoPort, DROP));
            }
        }
    }
    send(ctx, l3, v6, &w.key, &w.to)
}

/// `w.to`: what `w.key`'s packets to `b` become.
#[inline(always)]
fn target(
    w: &mut Work,
    b: &lb_common::Backend,
    cfg: &NatConfig,
    full: bool,
    nat: u32,
) -> Result<(), (Reason, u32)> {
    let snat = if full {
        let (idx, port) = snat_unpack(nat);
        let v6 = w.key.family == FAMILY_V6;
        Some((
            cfg.snat(v6, idx).ok_or((Reason::DropNatNoPort, DROP))?,
            port,
        ))
    } else {
        None
    };
    w.to = forward_rewrite(&w.key, &b.addr, b.port, snat);
    Ok(())
}

/// `allocate`'s answer: the flow's `nat`, or no port.
#[inline(always)]
fn allocated(v: u64) -> Result<u32, (Reason, u32)> {
    if v == NO_PORT {
        return Err((Reason::DropNatNoPort, DROP));
    }
    Ok(v as u32)
}

const NO_PORT: u64 = u64::MAX;

/// A source (address index, port) for `w.key`, a new full-NAT flow, whose
/// reverse entry is free: the NAT map is the allocator (an insert that must
/// not replace is atomic across CPUs), probing from the flow's hash. Stored
/// in the flow's FLOWS entry and reported for sync. NO_PORT if none is
/// free.
#[inline(always)]
fn allocate(w: &mut Work, id: u32, b: &lb_common::Backend, cfg: &NatConfig) -> u64 {
    let v6 = w.key.family == FAMILY_V6;
    let ports = cfg.ports();
    if ports == 0 {
        return NO_PORT;
    }
    let hash = flow_hash(&w.key, HASH_5TUPLE);
    let Some((idx, src)) = cfg.source(v6, hash) else {
        return NO_PORT;
    };
    let service = b.service;
    w.e = reply_entry(&w.key, id, service, unsafe { bpf_ktime_get_ns() });
    for i in 0..SNAT_PROBES {
        let port = (cfg.port_lo as u32 + (hash.wrapping_add(i)) % ports) as u16;
        w.to = forward_rewrite(&w.key, &b.addr, b.port, Some((src, port)));
        w.back = reply_key(&w.to, w.key.proto, w.key.family);
        if NAT.insert(&w.back, &w.e, BPF_NOEXIST).is_ok() {
            let nat = snat_pack(idx, port);
            if let Some(v) = FLOWS.get_ptr_mut(&w.key) {
                // SAFETY: the map's value, valid for this program run.
                unsafe { (*v).nat = nat };
                lookup::report(&w.key, id, service, nat, FLOW_OPENED);
            }
            return nat as u64;
        }
    }
    NO_PORT
}

/// A packet of a NAT connection seen: refresh its time (not too often)
/// and whether it is closing (a new SYN on the same ports reopens it).
#[inline(always)]
fn touch(e: *mut NatEntry, now: u64, opening: bool, closing: bool) {
    // SAFETY: the map's value, valid for this program run; racing CPUs
    // write the same kind of values.
    unsafe {
        let flags = if closing {
            (*e).flags | NAT_CLOSING
        } else if opening {
            (*e).flags & !NAT_CLOSING
        } else {
            (*e).flags
        };
        if flags != (*e).flags {
            (*e).flags = flags;
        }
        if now.wrapping_sub((*e).last_seen_ns) > TOUCH_NS {
            (*e).last_seen_ns = now;
        }
    }
}

/// A backend's reply to a NAT connection (not for a VIP): back as from the
/// VIP to the client. Anything else passes, as any traffic not for a VIP.
#[inline(always)]
fn reply(ctx: &XdpContext) -> Verdict {
    let w = work()?;
    let p = parse::parse(ctx).map_err(|r| (r, PASS))?;
    let (l3, closing) = (p.l3_off, p.closing);
    w.key = p.key;
    let e = NAT.get_ptr_mut(&w.key).ok_or((Reason::PassNotVip, PASS))?;
    touch(e, unsafe { bpf_ktime_get_ns() }, false, closing);
    // SAFETY: as above.
    w.to = unsafe {
        Rewrite {
            src: (*e).src,
            dst: (*e).dst,
            sport: (*e).sport,
            dport: (*e).dport,
        }
    };
    send(ctx, l3, w.key.family == FAMILY_V6, &w.key, &w.to)
}

/// Route the packet as `to` says, then rewrite it. A packet too big for
/// the egress is answered from the original; a FIB miss passes the
/// rewritten packet to the kernel, which routes it the same way (and
/// resolves the neighbour the next packets need).
#[inline(always)]
fn send(ctx: &XdpContext, l3: usize, v6: bool, from: &FlowKey, to: &Rewrite) -> Verdict {
    let ip = parse::facts(ctx, l3).map_err(|r| (r, PASS))?;
    let proto = from.proto;
    let hop = fib::lookup(ctx, v6, &to.src, &to.dst, proto, ip.len);
    let hop = match hop {
        Ok(h) => Some(h),
        Err(fib::Miss::TooBig(mtu)) if ip.df => return Err((Reason::TxTooBig, mtu as u32)),
        Err(_) => None,
    };
    rewrite(ctx, l3, v6, proto, from, to).map_err(|r| (r, DROP))?;
    let Some(hop) = hop else {
        return Err((Reason::PassFibMiss, PASS));
    };
    let eth = ptr_mut::<EthHdr>(ctx, 0).map_err(|r| (r, DROP))?;
    // The 802.1Q tag, if any, stays.
    crate::forward::set_macs(eth, &hop.dmac, &hop.smac);
    Ok(crate::forward::out(ctx, hop.ifindex))
}

/// Offset of the L4 header of the IP header at `l3`.
#[inline(always)]
fn l4_offset(ctx: &XdpContext, l3: usize, v6: bool) -> Result<usize, Reason> {
    if v6 {
        return Ok(l3 + Ipv6Hdr::LEN);
    }
    let ip = ptr_at::<Ipv4Hdr>(ctx, l3)?;
    // SAFETY: ptr_at checked the bounds.
    Ok(l3 + ((unsafe { (*ip).vihl } & 0x0f) as usize) * 4)
}

/// Write `to`'s addresses over `from`'s in the IP header at `l3`, and its
/// ports and checksums at L4 (the IPv4 header's checksum too).
#[inline(always)]
fn rewrite(
    ctx: &XdpContext,
    l3: usize,
    v6: bool,
    proto: u8,
    from: &FlowKey,
    to: &Rewrite,
) -> Result<(), Reason> {
    let addrs = Delta::default()
        .addr(&from.src, &to.src)
        .addr(&from.dst, &to.dst);
    set_addrs(ctx, l3, v6, &to.src, &to.dst, addrs)?;
    let l4 = l4_offset(ctx, l3, v6)?;
    let ports = set_ports(ctx, l4, (from.sport, from.dport), (to.sport, to.dport))?;
    l4_check(ctx, l4, proto, v6, addrs.and(ports))?;
    Ok(())
}

/// Write the ports `to` (source, destination) over `from` in the TCP or
/// UDP header at `l4`; returns their change, for the checksums.
#[inline(always)]
fn set_ports(
    ctx: &XdpContext,
    l4: usize,
    from: (u16, u16),
    to: (u16, u16),
) -> Result<Delta, Reason> {
    let p = ptr_mut::<[u8; 4]>(ctx, l4)?;
    // SAFETY: ptr_mut checked the bounds.
    unsafe {
        *p = ports_bytes(to.0, to.1);
    }
    Ok(Delta::default().word(from.0, to.0).word(from.1, to.1))
}

/// Write addresses into the IP header at `l3`; IPv4's header checksum
/// takes `addrs` (their change).
#[inline(always)]
fn set_addrs(
    ctx: &XdpContext,
    l3: usize,
    v6: bool,
    src: &[u8; 16],
    dst: &[u8; 16],
    addrs: Delta,
) -> Result<(), Reason> {
    // SAFETY (both): ptr_mut checked the bounds.
    if v6 {
        let h = ptr_mut::<Ipv6Hdr>(ctx, l3)?;
        unsafe {
            crate::parse::copy16(&mut (*h).src_addr, src);
            crate::parse::copy16(&mut (*h).dst_addr, dst);
        }
    } else {
        let h = ptr_mut::<Ipv4Hdr>(ctx, l3)?;
        unsafe {
            (*h).src_addr = [src[0], src[1], src[2], src[3]];
            (*h).dst_addr = [dst[0], dst[1], dst[2], dst[3]];
            (*h).check = addrs.apply(u16::from_be_bytes((*h).check)).to_be_bytes();
        }
    }
    Ok(())
}

/// Apply `d` to the TCP or UDP checksum of the header at `l4`, if it lies
/// in the frame (an ICMP quote may end before it). Returns the field's
/// (old, new) value for a checksum that covers it in turn. UDP over IPv4
/// without a checksum (0) keeps none.
#[inline(always)]
fn l4_check(ctx: &XdpContext, l4: usize, proto: u8, v6: bool, d: Delta) -> Result<Delta, Reason> {
    let at = if proto == PROTO_TCP {
        l4 + TCP_CHECK
    } else {
        l4 + UDP_CHECK
    };
    let Ok(c) = ptr_mut::<[u8; 2]>(ctx, at) else {
        return Ok(Delta::default());
    };
    // SAFETY: ptr_mut checked the bounds.
    let old = u16::from_be_bytes(unsafe { *c });
    if proto == PROTO_UDP && old == 0 && !v6 {
        return Ok(Delta::default());
    }
    let mut new = d.apply(old);
    if proto == PROTO_UDP && new == 0 {
        new = 0xffff;
    }
    unsafe { *c = new.to_be_bytes() };
    Ok(Delta::default().word(old, new))
}

/// An ICMP error (destination unreachable, too big, time exceeded,
/// parameter problem) about a NAT connection: the quoted packet and the
/// outer addresses translated as the connection's own packets would be,
/// then forwarded (toward the backend or the client). Other ICMP passes.
#[inline(always)]
fn icmp(ctx: &XdpContext) -> Verdict {
    let pass = |r| (r, PASS);
    let (ether_type, l3) = parse::l2(ctx).map_err(pass)?;
    let frame_len = ctx.data_end() - ctx.data();
    let w = work()?;
    w.key = FlowKey::default();
    let v6 = ether_type == ETH_P_IPV6;
    let ip = match ether_type {
        ETH_P_IP => parse::ipv4(ctx, l3, frame_len, &mut w.key),
        ETH_P_IPV6 => parse::ipv6(ctx, l3, frame_len, &mut w.key),
        _ => Err(Reason::PassNotIp),
    }
    .map_err(pass)?;
    let head = ptr_at::<[u8; 2]>(ctx, ip.l4_off).map_err(pass)?;
    // SAFETY: ptr_at checked the bounds.
    let kind = unsafe { (*head)[0] };
    let error = if v6 {
        ip.proto == IPPROTO_ICMPV6 && (1..=4).contains(&kind)
    } else {
        ip.proto == IPPROTO_ICMP && matches!(kind, 3 | 11 | 12)
    };
    if !error {
        return Err(pass(Reason::PassUnknownL4));
    }
    // The quoted packet: its IP header and at least its ports.
    let in3 = ip.l4_off + ICMP_HDR;
    w.inner = FlowKey::default();
    let in4 = quoted(ctx, in3, v6, &mut w.inner).map_err(pass)?;
    // Both directions look the connection up by the quote read backwards:
    // our packet to the backend answers to NAT's key, ours to the client
    // is the client's flow in FLOWS. `w.to` becomes the outer addresses
    // (src, dst), `w.inner_to` the quote's.
    w.back = FlowKey {
        src: w.inner.dst,
        dst: w.inner.src,
        sport: w.inner.dport,
        dport: w.inner.sport,
        ..w.inner
    };
    // SAFETY: the value is copied out at once.
    if let Some(e) = unsafe { NAT.get(&w.back) } {
        // About a packet to the backend: its source becomes the VIP's.
        w.to.src = e.src;
        w.to.dst = e.dst;
        w.inner_to = Rewrite {
            src: e.dst,
            dst: e.src,
            sport: e.dport,
            dport: e.sport,
        };
    } else {
        // About a packet to the client: to the backend, as it sent it.
        if !client_flow(w) {
            return Err(pass(Reason::PassNotVip));
        }
        w.inner_to = Rewrite {
            src: w.to.dst,
            dst: w.to.src,
            sport: w.to.dport,
            dport: w.to.sport,
        };
        w.to.src = w.key.src;
    }
    let (inner, inner_to, outer) = (&w.inner, &w.inner_to, &w.key);
    let (osrc, odst) = (&w.to.src, &w.to.dst);
    let drop = |r| (r, DROP);
    // Inner IP header and ports, then the checksums that cover them.
    let inner_addrs = Delta::default()
        .addr(&inner.src, &inner_to.src)
        .addr(&inner.dst, &inner_to.dst);
    let mut icmp_d = inner_addrs;
    if v6 {
        set_addrs(ctx, in3, true, &inner_to.src, &inner_to.dst, inner_addrs).map_err(drop)?;
    } else {
        let h = ptr_mut::<Ipv4Hdr>(ctx, in3).map_err(drop)?;
        // SAFETY: ptr_mut checked the bounds.
        let old = u16::from_be_bytes(unsafe { (*h).check });
        set_addrs(ctx, in3, false, &inner_to.src, &inner_to.dst, inner_addrs).map_err(drop)?;
        let new = u16::from_be_bytes(unsafe { (*h).check });
        icmp_d = icmp_d.word(old, new);
    }
    let ports = set_ports(
        ctx,
        in4,
        (inner.sport, inner.dport),
        (inner_to.sport, inner_to.dport),
    )
    .map_err(drop)?;
    icmp_d = icmp_d.and(ports);
    let l4c = l4_check(ctx, in4, inner.proto, v6, inner_addrs.and(ports)).map_err(drop)?;
    icmp_d = icmp_d.and(l4c);
    // Outer addresses; ICMPv6's checksum covers them (pseudo-header).
    let outer_d = Delta::default()
        .addr(&outer.src, osrc)
        .addr(&outer.dst, odst);
    if v6 {
        icmp_d = icmp_d.and(outer_d);
    }
    let c = ptr_mut::<[u8; 2]>(ctx, ip.l4_off + 2).map_err(drop)?;
    // SAFETY: ptr_mut checked the bounds.
    unsafe { *c = icmp_d.apply(u16::from_be_bytes(*c)).to_be_bytes() };
    let hop = fib::lookup(ctx, v6, osrc, odst, ip.proto, ip.len);
    set_addrs(ctx, l3, v6, osrc, odst, outer_d).map_err(drop)?;
    let hop = hop.map_err(|_| pass(Reason::PassFibMiss))?;
    let eth = ptr_mut::<EthHdr>(ctx, 0).map_err(drop)?;
    crate::forward::set_macs(eth, &hop.dmac, &hop.smac);
    Ok(crate::forward::out(ctx, hop.ifindex))
}

/// `w.to`: what a NAT service's client flow `w.back` (client -> VIP)
/// becomes, if it is remembered.
#[inline(always)]
fn client_flow(w: &mut Work) -> bool {
    let Some(svc) = lookup::service(&w.back) else {
        return false;
    };
    if !lb_common::Forward::from_id(svc.forward).is_some_and(|f| f.nat()) {
        return false;
    }
    // SAFETY: the value is copied out at once.
    let Some(v) = unsafe { FLOWS.get(&w.back) }.copied() else {
        return false;
    };
    let (Some(b), Some(cfg)) = (lookup::backend(v.backend), NAT_CONFIG.get(0)) else {
        return false;
    };
    let (idx, port) = snat_unpack(v.nat);
    let snat = match cfg.snat(w.back.family == FAMILY_V6, idx) {
        Some(src) if svc.forward == FORWARD_FULLNAT => Some((src, port)),
        None if svc.forward == FORWARD_FULLNAT => return false,
        _ => None,
    };
    w.to = forward_rewrite(&w.back, &b.addr, b.port, snat);
    true
}

/// The packet quoted by an ICMP error at `off`: addresses, protocol and
/// ports into `key` (its lengths are not checked: a quote is cut short).
/// Returns the offset of its L4 header.
#[inline(always)]
fn quoted(ctx: &XdpContext, off: usize, v6: bool, key: &mut FlowKey) -> Result<usize, Reason> {
    let l4 = if v6 {
        let ip = ptr_at::<Ipv6Hdr>(ctx, off)?;
        // SAFETY: ptr_at checked the bounds.
        unsafe {
            crate::parse::copy16(&mut key.src, &(*ip).src_addr);
            crate::parse::copy16(&mut key.dst, &(*ip).dst_addr);
            key.proto = (*ip).next_hdr;
        }
        key.family = FAMILY_V6;
        off + Ipv6Hdr::LEN
    } else {
        let ip = ptr_at::<Ipv4Hdr>(ctx, off)?;
        // SAFETY: as above.
        let ihl = unsafe {
            key.src[..4].copy_from_slice(&(*ip).src_addr);
            key.dst[..4].copy_from_slice(&(*ip).dst_addr);
            key.proto = (*ip).proto;
            ((*ip).vihl & 0x0f) as usize
        };
        key.family = lb_common::FAMILY_V4;
        if ihl < 5 {
            return Err(Reason::PassMalformed);
        }
        off + ihl * 4
    };
    if key.proto != PROTO_TCP && key.proto != PROTO_UDP {
        return Err(Reason::PassUnknownL4);
    }
    let ports = ptr_at::<[u8; 4]>(ctx, l4)?;
    // SAFETY: as above.
    unsafe {
        key.sport = u16::from_be_bytes([(*ports)[0], (*ports)[1]]);
        key.dport = u16::from_be_bytes([(*ports)[2], (*ports)[3]]);
    }
    Ok(l4)
}

/// Source and destination ports as they sit in a TCP or UDP header.
#[inline(always)]
fn ports_bytes(sport: u16, dport: u16) -> [u8; 4] {
    let (s, d) = (sport.to_be_bytes(), dport.to_be_bytes());
    [s[0], s[1], d[0], d[1]]
}
