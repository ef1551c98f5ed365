//! The `lb` agent and tools: config, tables, map writing, MAC resolution, inspection.

pub mod addr;
pub mod agent;
pub mod cmd;
pub mod config;
pub mod dataplane;
pub mod ebpf;
pub mod health;
pub mod maglev;
pub mod neigh;
pub mod pinned;
pub mod plan;
pub mod sched;
pub mod status;
pub mod vrrp;
pub mod vrrp_run;
