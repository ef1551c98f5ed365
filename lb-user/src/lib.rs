//! The `lb` agent and tools: config, tables, map writing, MAC resolution, inspection.

pub mod addr;
pub mod config;
pub mod ebpf;
pub mod dataplane;
pub mod maglev;
pub mod plan;
