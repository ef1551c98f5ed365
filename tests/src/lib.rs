//! Test support shared by the integration tests and `cargo xtask`: frame
//! building, a BPF_PROG_TEST_RUN harness, and namespace labs that clean up
//! after themselves.

pub mod bpf;
pub mod fib;
pub mod flood;
pub mod frame;
pub mod held;
pub mod http;
pub mod keepalived;
pub mod lab;
pub mod netns;
pub mod require;
pub mod traffic;
pub mod vrrp_lab;
