//! The `lb` agent and tools. Imports run one way: `config` and `plan` are
//! data and pure functions; `sched`, `health` and `vrrp` build on them;
//! `maps` holds the BPF object; `agent` wires them together; `cmd` is the
//! command line.

pub mod addr;
pub mod agent;
pub mod api;
pub mod bgp;
pub mod cmd;
pub mod config;
pub mod exec;
pub mod health;
pub mod import;
pub mod maps;
pub mod plan;
pub mod realserver;
pub mod sched;
pub mod sync;
pub mod sysctl;
pub mod vrrp;
