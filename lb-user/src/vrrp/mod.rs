//! VRRP (RFC 5798 v3, RFC 3768 v2): wire codec, pure state machine, and the
//! socket and address I/O that carry out its actions.

pub mod addrs;
pub mod codec;
pub mod group;
pub mod instance;
pub mod socket;
pub mod state;
#[cfg(test)]
mod tests;
pub mod track;
