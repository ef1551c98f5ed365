//! Map keys, values, names and the flow hash shared by the XDP program and the agent.
//!
//! Every type is `#[repr(C)]` with explicit padding so kernel and user space
//! agree on the layout byte for byte (implicit padding also makes the verifier
//! reject stack reads).
#![no_std]

pub mod bench;
pub mod check;
pub mod decap;
pub mod hash;
pub mod health;
pub mod names;
pub mod nat;
pub mod sched;
pub mod stats;
pub mod sync;
pub mod types;
pub mod vrrp;

pub use hash::flow_hash;
pub use health::BackendHealth;
pub use sched::*;
pub use stats::Reason;
pub use types::*;
pub use vrrp::VrrpStatus;
