//! The config file as written: serde structs that keep every value's span so
//! validation can point at it. Unknown keys are errors.

use serde::Deserialize;
use toml::Spanned;

pub use super::check::RawCheck;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub agent: Option<Spanned<RawAgent>>,
    #[serde(default)]
    pub service: Vec<Spanned<RawService>>,
    #[serde(default)]
    pub vrrp: Vec<Spanned<super::vrrp::RawVrrp>>,
    #[serde(default)]
    pub vrrp_sync_group: Vec<Spanned<RawSyncGroup>>,
    pub sync: Option<Spanned<super::sync::RawSync>>,
    pub bgp: Option<Spanned<super::bgp::RawBgp>>,
}

/// keepalived's vrrp_sync_group: instances that change state together.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSyncGroup {
    pub name: Spanned<String>,
    pub instances: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    pub interface: Option<Spanned<String>>,
    pub pin_dir: Option<Spanned<String>>,
    pub xdp_mode: Option<Spanned<String>>,
    pub flow_table_size: Option<Spanned<i64>>,
    pub table_size: Option<Spanned<i64>>,
    pub max_services: Option<Spanned<i64>>,
    pub max_backends: Option<Spanned<i64>>,
    pub api: Option<Spanned<String>>,
    /// Outer source(s) of tunnel services.
    pub tunnel_source: Option<super::tunnel::RawSources>,
    pub tunnel_source_hash: Option<Spanned<bool>>,
    pub gue_port: Option<Spanned<i64>>,
    /// NAT: where the backends are, when not `interface`.
    pub backend_interface: Option<Spanned<String>>,
    pub snat_addresses: Option<Vec<Spanned<String>>>,
    pub snat_ports: Option<Spanned<String>>,
    pub nat_tcp_timeout: Option<Spanned<String>>,
    pub nat_tcp_fin_timeout: Option<Spanned<String>>,
    pub nat_udp_timeout: Option<Spanned<String>>,
    /// New flows each CPU remembers per second (0: no limit).
    pub new_flows_per_cpu: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    pub vip: Spanned<String>,
    pub port: Spanned<i64>,
    pub protocol: Option<Spanned<String>>,
    pub scheduler: Option<Spanned<String>>,
    pub forward: Option<Spanned<String>>,
    pub hash: Option<Spanned<String>>,
    pub virtual_nodes: Option<Spanned<i64>>,
    pub check: Option<RawCheck>,
    /// Slow start for a backend that joins or recovers, e.g. "30s".
    pub warmup: Option<Spanned<String>>,
    pub warmup_step: Option<Spanned<String>>,
    #[serde(default)]
    pub backends: Vec<Spanned<RawBackend>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackend {
    pub address: Spanned<String>,
    pub weight: Option<Spanned<i64>>,
    pub interface: Option<Spanned<String>>,
    /// NAT: the port the backend listens on.
    pub port: Option<Spanned<i64>>,
    pub check: Option<RawCheck>,
}
