//! Health checks through the data path (`check = { via = "dataplane" }`):
//! the agent's check connections leave a private namespace through a veth
//! whose XDP program forwards them to one chosen backend as client traffic
//! would go (MAC rewrite or tunnel); the backend's answers, addressed to the
//! balancer's own address and a port of the check range, are steered back
//! into that namespace by the balancer's XDP program.

use bytemuck::{Pod, Zeroable};

/// The check source ports: above Linux's default ephemeral range
/// (32768-60999), so the balancer's own connections never use them.
pub const CHECK_PORT_BASE: u16 = 61000;
/// Ports in the range (`CHECK_PORTS` map entries).
pub const CHECK_PORTS_LEN: u32 = 4096;
/// Ports per checked backend: its checks take them in turn.
pub const CHECK_BLOCK: u16 = 8;
/// Most backends that can be checked through the data path.
pub const MAX_DATAPLANE_CHECKS: u32 = CHECK_PORTS_LEN / CHECK_BLOCK as u32;

/// `CHECK_PORTS`'s value, by source port - CHECK_PORT_BASE.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct CheckPort {
    pub backend: u32,
    /// The service's `Forward` id.
    pub forward: u8,
    /// 1 when the port belongs to a backend's checks.
    pub set: u8,
    pub _pad: [u8; 2],
}

/// `CHECK_PATH`'s value: the check namespace's way in and out.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct CheckPath {
    /// The veth end in the balancer's namespace.
    pub ifindex: u32,
    /// Its peer's MAC, inside the check namespace (answers go there).
    pub ns_mac: [u8; 6],
    /// The veth end's own MAC.
    pub our_mac: [u8; 6],
    /// The checks' source addresses: the balancer's own.
    pub src4: [u8; 4],
    pub src6: [u8; 16],
    pub set: u8,
    pub _pad: [u8; 3],
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: repr(C) plain data with explicit padding.
    unsafe impl aya::Pod for super::CheckPort {}
    unsafe impl aya::Pod for super::CheckPath {}
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes() {
        assert_eq!(core::mem::size_of::<super::CheckPort>(), 8);
        assert_eq!(core::mem::size_of::<super::CheckPath>(), 40);
        assert!(super::CHECK_PORT_BASE as u32 + super::CHECK_PORTS_LEN <= 65536);
    }
}
