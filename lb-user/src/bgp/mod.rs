//! Route announcement through the operator's BIRD. The agent owns a TUN
//! device and puts each VIP it may serve on it as a /32 or /128; BIRD's
//! `protocol direct` exports those addresses over BGP. The device lives as
//! long as the agent's file descriptor: if the agent dies, the kernel
//! deletes it and BIRD withdraws every route by itself.
//!
//! `plan` decides (pure), `device` makes and finds the TUN device,
//! `announcer` makes the device's addresses follow the plan.

pub mod announcer;
pub mod device;
pub mod plan;

pub use announcer::Announcer;
pub use plan::{Health, VipPlan};
