//! The agent's config: TOML in, a fully validated `Config` out, or one
//! `ConfigError` naming file:line:column and the fix. Nothing is applied
//! until a whole file has passed.

pub mod bgp;
mod check;
mod error;
mod nat;
mod raw;
mod sync;
#[cfg(test)]
mod tests;
mod tunnel;
mod vrrp;

use std::{
    collections::HashMap,
    net::IpAddr,
    ops::Range,
    path::{Path, PathBuf},
    time::Duration,
};

use lb_common::vrrp::MAX_VRRP;
use lb_common::{
    FAMILY_V6, Forward, HashFields, MAX_SCAN_BACKENDS, MAX_TABLE_SIZE, PROTO_TCP, PROTO_UDP,
    Scheduler, ServiceKey,
    names::{
        DEFAULT_FLOWS, DEFAULT_MAX_BACKENDS, DEFAULT_MAX_SERVICES, DEFAULT_PIN_DIR,
        DEFAULT_TABLE_SIZE,
    },
};
use toml::Spanned;

pub use bgp::BgpCfg;
pub use check::{Check, HttpProbe, Initial, Probe, Via};
pub use error::ConfigError;
pub use nat::NatCfg;
use raw::{RawAgent, RawBackend, RawCheck, RawConfig, RawService};
pub use sync::SyncCfg;
pub use tunnel::{Source, TunnelCfg};
pub use vrrp::{HeartbeatPath, TrackScript, TrackService, Version, Vip, Vrrp};

/// Ring points per unit of weight, as Dubbo's and Ketama's 160.
pub const DEFAULT_VIRTUAL_NODES: u32 = 160;

/// How often a ramping backend's weight may change the tables.
pub const DEFAULT_WARMUP_STEP: Duration = Duration::from_secs(1);

/// LVS's weight range (ipvsadm -w).
pub const MAX_WEIGHT: u32 = 65_535;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpMode {
    /// Native (driver) mode, falling back to generic with a log line.
    Auto,
    Native,
    Generic,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub interface: String,
    pub pin_dir: PathBuf,
    pub xdp_mode: XdpMode,
    pub flow_table_size: u32,
    pub table_size: u32,
    pub max_services: u32,
    pub max_backends: u32,
    /// Where the HTTP API (/metrics, /status, /healthz) listens; off when None.
    pub api: Option<std::net::SocketAddr>,
    /// Outer headers of tunnel services.
    pub tunnel: TunnelCfg,
    /// NAT services' backend side, when not `interface`: the program runs
    /// there too (the backends' replies arrive there).
    pub backend_interface: Option<String>,
    pub nat: NatCfg,
    /// New flows each CPU remembers per second; above it they are placed
    /// by hash and not remembered (a SYN flood evicts nothing). 0: no limit.
    pub new_flows_per_cpu: u32,
}

impl Agent {
    /// Every interface the program runs on: the clients' first.
    pub fn interfaces(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.interface.as_str()).chain(self.backend_interface.as_deref())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub vip: IpAddr,
    pub port: u16,
    pub proto: u8,
    pub scheduler: Scheduler,
    pub forward: Forward,
    pub hash: HashFields,
    /// Ring points per unit of weight (scheduler = "ring").
    pub virtual_nodes: u32,
    /// Slow start: a backend that comes up ramps to full weight over this.
    pub warmup: Duration,
    /// Tables are rebuilt at most this often while a backend ramps.
    pub warmup_step: Duration,
    pub backends: Vec<BackendCfg>,
}

impl Service {
    pub fn key(&self) -> ServiceKey {
        ServiceKey {
            addr: crate::addr::to_bytes(self.vip),
            port: self.port,
            proto: self.proto,
            family: crate::addr::family(self.vip),
        }
    }

    /// "203.0.113.10:80/tcp", the name `lb show table` takes.
    pub fn name(&self) -> String {
        crate::addr::service_name(&self.key())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendCfg {
    pub address: IpAddr,
    pub weight: u32,
    /// Egress interface when not the agent's own (XDP_REDIRECT).
    pub interface: Option<String>,
    /// NAT: the port the backend listens on (None: the VIP's).
    pub port: Option<u16>,
    /// The service's check with this backend's overrides.
    pub check: Check,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub path: PathBuf,
    pub agent: Agent,
    pub services: Vec<Service>,
    pub vrrp: Vec<Vrrp>,
    /// Flow-state sync with the other balancers.
    pub sync: Option<SyncCfg>,
    /// VIP announcement through BIRD.
    pub bgp: Option<BgpCfg>,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::whole(
                path,
                format!("cannot read config: {e}"),
                "check the path given to -c",
            )
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            let msg = e.message().trim().to_string();
            let hint = if msg.contains("unknown field") {
                "remove or correct the key; the README lists every key"
            } else if msg.contains("missing field") {
                "add the required key"
            } else {
                "fix the TOML syntax at this point"
            };
            ConfigError::at(path, text, span, msg, hint)
        })?;
        Validator { path, text }.config(raw)
    }
}

struct Validator<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Validator<'_> {
    fn err(&self, span: Range<usize>, message: String, hint: &str) -> ConfigError {
        ConfigError::at(self.path, self.text, span, message, hint)
    }

    fn config(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let Some(agent) = raw.agent else {
            return Err(ConfigError::whole(
                self.path,
                "missing [agent] section".into(),
                "add [agent] with interface = \"eth0\" (the interface facing clients)",
            ));
        };
        let agent = self.agent(agent)?;
        let mut services = Vec::with_capacity(raw.service.len());
        let mut seen: HashMap<ServiceKey, usize> = HashMap::new();
        let mut backend_count = 0usize;
        for s in raw.service {
            let span = s.span();
            let svc = self.service(s.into_inner(), &agent)?;
            if let Some(line) = seen.insert(svc.key(), line_of(self.text, span.start)) {
                return Err(self.err(
                    span,
                    format!("duplicate service {} (first defined on line {line})", svc.name()),
                    "each (vip, port, protocol) may appear once; merge the backends into one [[service]]",
                ));
            }
            backend_count += svc.backends.len();
            services.push(svc);
        }
        if services.len() > agent.max_services as usize {
            return Err(ConfigError::whole(
                self.path,
                format!(
                    "{} services, more than max_services = {}",
                    services.len(),
                    agent.max_services
                ),
                "raise [agent] max_services",
            ));
        }
        if backend_count > agent.max_backends as usize {
            return Err(ConfigError::whole(
                self.path,
                format!(
                    "{backend_count} backends, more than max_backends = {}",
                    agent.max_backends
                ),
                "raise [agent] max_backends",
            ));
        }
        let dataplane = services
            .iter()
            .flat_map(|s| &s.backends)
            .filter(|b| b.check.via == Via::Dataplane && b.check.probe != Probe::None)
            .count();
        if dataplane > lb_common::check::MAX_DATAPLANE_CHECKS as usize {
            return Err(ConfigError::whole(
                self.path,
                format!(
                    "{dataplane} backends checked with via = \"dataplane\", more than {}",
                    lb_common::check::MAX_DATAPLANE_CHECKS
                ),
                "check the others directly (via = \"direct\", the default)",
            ));
        }
        if raw.vrrp.len() > MAX_VRRP as usize {
            return Err(ConfigError::whole(
                self.path,
                format!(
                    "{} [[vrrp]] instances, more than {MAX_VRRP}",
                    raw.vrrp.len()
                ),
                "an agent runs at most that many instances; merge VIPs into fewer instances",
            ));
        }
        let mut vrrp: Vec<Vrrp> = Vec::with_capacity(raw.vrrp.len());
        for r in &raw.vrrp {
            let v = self.vrrp(r.get_ref(), &agent.interface, &services)?;
            if vrrp.iter().any(|o| o.name == v.name) {
                return Err(self.err(
                    r.get_ref().name.span(),
                    format!("duplicate VRRP instance {:?}", v.name),
                    "give each [[vrrp]] its own name",
                ));
            }
            if vrrp.iter().any(|o| {
                o.interface == v.interface && o.vrid == v.vrid && o.family_v6() == v.family_v6()
            }) {
                return Err(self.err(
                    r.get_ref().vrid.span(),
                    format!("VRID {} is already used on {}", v.vrid, v.interface),
                    "each instance on an interface (and address family) needs its own vrid",
                ));
            }
            vrrp.push(v);
        }
        self.sync_groups(&raw.vrrp_sync_group, &mut vrrp)?;
        let sync = raw.sync.as_ref().map(|s| self.sync(s)).transpose()?;
        let bgp = raw.bgp.as_ref().map(|b| self.bgp(b)).transpose()?;
        if let (Some(b), Some(r)) = (&bgp, &raw.bgp)
            && services.is_empty()
        {
            return Err(self.err(
                r.span(),
                format!(
                    "[bgp] with no [[service]]: device {} would announce nothing",
                    b.device
                ),
                "add the [[service]]s whose VIPs BIRD announces, or remove [bgp]",
            ));
        }
        Ok(Config {
            path: self.path.to_path_buf(),
            agent,
            services,
            vrrp,
            sync,
            bgp,
        })
    }

    fn agent(&self, a: Spanned<RawAgent>) -> Result<Agent, ConfigError> {
        let span = a.span();
        let a = a.into_inner();
        let Some(interface) = a.interface.clone() else {
            return Err(self.err(
                span,
                "[agent] has no interface".into(),
                "add interface = \"eth0\"",
            ));
        };
        for i in [Some(&interface), a.backend_interface.as_ref()]
            .into_iter()
            .flatten()
        {
            if i.get_ref().is_empty() || i.get_ref().len() > 15 {
                return Err(self.err(
                    i.span(),
                    format!("bad interface name {:?}", i.get_ref()),
                    "an interface name of 1 to 15 characters, as `ip link` shows it",
                ));
            }
        }
        if let Some(b) = &a.backend_interface
            && b.get_ref() == interface.get_ref()
        {
            return Err(self.err(
                b.span(),
                format!("backend_interface is interface ({:?})", b.get_ref()),
                "remove backend_interface: NAT replies arriving on the clients' interface are handled there",
            ));
        }
        let nat = self.nat(&a)?;
        let xdp_mode = match a.xdp_mode.as_ref().map(|m| m.get_ref().as_str()) {
            None | Some("auto") => XdpMode::Auto,
            Some("native") => XdpMode::Native,
            Some("generic") => XdpMode::Generic,
            Some(other) => {
                return Err(self.err(
                    a.xdp_mode.as_ref().map(Spanned::span).unwrap_or_default(),
                    format!("unknown xdp_mode {other:?}"),
                    "use \"auto\" (native, else generic), \"native\" or \"generic\"",
                ));
            }
        };
        let table_size = self.int(
            &a.table_size,
            DEFAULT_TABLE_SIZE,
            7,
            MAX_TABLE_SIZE,
            "table_size",
        )?;
        if !is_prime(table_size) {
            return Err(self.err(
                a.table_size.as_ref().map(Spanned::span).unwrap_or_default(),
                format!("table_size {table_size} is not prime"),
                "Maglev needs a prime table size, e.g. 65537 or 655373",
            ));
        }
        let api = match &a.api {
            None => None,
            Some(s) => Some(s.get_ref().parse().map_err(|_| {
                self.err(
                    s.span(),
                    format!("bad api address {:?}", s.get_ref()),
                    "an address and port, like \"127.0.0.1:9100\" or \"[::1]:9100\"",
                )
            })?),
        };
        let tunnel = self.tunnel(
            a.tunnel_source.as_ref(),
            a.tunnel_source_hash.as_ref(),
            a.gue_port.as_ref(),
        )?;
        Ok(Agent {
            api,
            tunnel,
            nat,
            new_flows_per_cpu: self.int(
                &a.new_flows_per_cpu,
                lb_common::DEFAULT_NEW_FLOWS_PER_CPU,
                0,
                100_000_000,
                "new_flows_per_cpu",
            )?,
            backend_interface: a.backend_interface.map(Spanned::into_inner),
            interface: interface.into_inner(),
            pin_dir: a
                .pin_dir
                .map_or_else(|| DEFAULT_PIN_DIR.into(), |p| p.into_inner().into()),
            xdp_mode,
            flow_table_size: self.int(
                &a.flow_table_size,
                DEFAULT_FLOWS,
                1024,
                1 << 26,
                "flow_table_size",
            )?,
            table_size,
            max_services: self.int(
                &a.max_services,
                DEFAULT_MAX_SERVICES,
                1,
                4096,
                "max_services",
            )?,
            max_backends: self.int(
                &a.max_backends,
                DEFAULT_MAX_BACKENDS,
                1,
                lb_common::names::MAX_BACKENDS,
                "max_backends",
            )?,
        })
    }

    fn int(
        &self,
        v: &Option<Spanned<i64>>,
        default: u32,
        min: u32,
        max: u32,
        what: &str,
    ) -> Result<u32, ConfigError> {
        let Some(v) = v else { return Ok(default) };
        let n = *v.get_ref();
        if n < min as i64 || n > max as i64 {
            return Err(self.err(
                v.span(),
                format!("{what} {n} is out of range"),
                &format!("use a value from {min} to {max} (default {default})"),
            ));
        }
        Ok(n as u32)
    }

    fn ip(&self, s: &Spanned<String>, what: &str) -> Result<IpAddr, ConfigError> {
        s.get_ref().parse().map_err(|_| {
            self.err(
                s.span(),
                format!("bad {what} address {:?}", s.get_ref()),
                "an IPv4 or IPv6 address without prefix length, like \"203.0.113.10\" or \"2001:db8:f::10\"",
            )
        })
    }

    fn service(&self, s: RawService, agent: &Agent) -> Result<Service, ConfigError> {
        let vip = self.ip(&s.vip, "vip")?;
        let port = *s.port.get_ref();
        if !(0..=65535).contains(&port) {
            return Err(self.err(
                s.port.span(),
                format!("port {port} is out of range"),
                "use 1-65535, or 0 for every port of the VIP",
            ));
        }
        let proto = match s.protocol.as_ref().map(|p| p.get_ref().as_str()) {
            None | Some("tcp") => PROTO_TCP,
            Some("udp") => PROTO_UDP,
            Some(other) => {
                return Err(self.err(
                    s.protocol.as_ref().map(Spanned::span).unwrap_or_default(),
                    format!("unknown protocol {other:?}"),
                    "use \"tcp\" or \"udp\"",
                ));
            }
        };
        let scheduler = self.choice(&s.scheduler, &Scheduler::ALL, Scheduler::name, "scheduler")?;
        let virtual_nodes = self.int(
            &s.virtual_nodes,
            DEFAULT_VIRTUAL_NODES,
            1,
            10_000,
            "virtual_nodes",
        )?;
        if let Some(v) = &s.virtual_nodes
            && scheduler != Scheduler::Ring
        {
            return Err(self.err(
                v.span(),
                format!(
                    "virtual_nodes does not apply to scheduler {:?}",
                    scheduler.name()
                ),
                "virtual_nodes sets the points per backend of scheduler = \"ring\"; remove it or change the scheduler",
            ));
        }
        let forward = self.choice(&s.forward, &Forward::ALL, Forward::name, "forward")?;
        let hash = self.choice(&s.hash, &HashFields::ALL, HashFields::name, "hash")?;
        // The service's own check must be valid even if every backend overrides it.
        self.check(&RawCheck::merge(s.check.as_ref(), None))?;
        let warmup = self.duration(&s.warmup, Duration::ZERO, "warmup")?;
        let warmup_step = self.duration(&s.warmup_step, DEFAULT_WARMUP_STEP, "warmup_step")?;
        if warmup_step.is_zero() {
            return Err(self.err(
                s.warmup_step
                    .as_ref()
                    .map(Spanned::span)
                    .unwrap_or_default(),
                "warmup_step is zero".into(),
                "use a positive step, like \"1s\" (the default)",
            ));
        }
        let mut backends: Vec<BackendCfg> = Vec::with_capacity(s.backends.len());
        for b in s.backends {
            let span = b.span();
            let b = self.backend(b.into_inner(), vip, forward, s.check.as_ref())?;
            let check_port = match &b.check.probe {
                Probe::Tcp { port } => *port,
                Probe::Http(h) => h.port,
                _ => None,
            };
            if b.check.via == Via::Dataplane && port == 0 && check_port.is_none() {
                return Err(self.err(
                    span.clone(),
                    format!(
                        "the check of {} goes to the VIP, but the service has every port",
                        b.address
                    ),
                    "give the check a port (check = { ..., port = 80 }) for the VIP to be asked on",
                ));
            }
            if forward.tunnel()
                && agent
                    .tunnel
                    .source(crate::addr::family(b.address) == FAMILY_V6)
                    .is_none()
            {
                let family = if b.address.is_ipv4() { "IPv4" } else { "IPv6" };
                return Err(self.err(
                    s.forward.as_ref().map(Spanned::span).unwrap_or(span),
                    format!(
                        "forward = {:?} to {family} backend {} needs an {family} tunnel_source",
                        forward.name(),
                        b.address
                    ),
                    &format!("add the outer source to [agent], like tunnel_source = [\"{}\"] (an address of this host)", if b.address.is_ipv4() { "198.51.100.2" } else { "2001:db8:1::2" }),
                ));
            }
            if forward == Forward::FullNat && !agent.nat.has_source(b.address.is_ipv6()) {
                let family = if b.address.is_ipv4() { "IPv4" } else { "IPv6" };
                return Err(self.err(
                    s.forward.as_ref().map(Spanned::span).unwrap_or(span),
                    format!(
                        "forward = \"fullnat\" to {family} backend {} needs an {family} address in snat_addresses",
                        b.address
                    ),
                    "add a source of this host to [agent], like snat_addresses = [\"198.51.100.2\"] (the backends answer to it)",
                ));
            }
            if forward.nat() && b.check.via == Via::Dataplane {
                return Err(self.err(
                    span,
                    format!("via = \"dataplane\" does not apply to forward = {:?}", forward.name()),
                    "a direct check already asks the backend's own address and port, as NAT does; remove via",
                ));
            }
            if forward.nat() && port == 0 && b.port.is_some() {
                return Err(self.err(
                    span,
                    "a backend port on a service of every port".into(),
                    "an all-ports service keeps each packet's port; remove the backend's port or give the service one",
                ));
            }
            if backends.iter().any(|o| o.address == b.address) {
                return Err(self.err(
                    span,
                    format!("backend {} is listed twice", b.address),
                    "list each backend once per service",
                ));
            }
            backends.push(b);
        }
        if scheduler.scans() && backends.len() > MAX_SCAN_BACKENDS as usize {
            return Err(self.err(
                s.scheduler.as_ref().map(Spanned::span).unwrap_or_default(),
                format!(
                    "{} compares at most {MAX_SCAN_BACKENDS} backends per new flow; this service has {}",
                    scheduler.name(),
                    backends.len()
                ),
                "use maglev or ring for larger services, or split the backends",
            ));
        }
        Ok(Service {
            vip,
            port: port as u16,
            proto,
            scheduler,
            forward,
            hash,
            virtual_nodes,
            warmup,
            warmup_step,
            backends,
        })
    }

    /// One of `all` by its name; the first is the default.
    fn choice<T: Copy>(
        &self,
        v: &Option<Spanned<String>>,
        all: &[T],
        name: fn(T) -> &'static str,
        what: &str,
    ) -> Result<T, ConfigError> {
        let Some(v) = v else {
            return Ok(all[0]);
        };
        if let Some(t) = all.iter().copied().find(|t| name(*t) == v.get_ref()) {
            return Ok(t);
        }
        let list = all
            .iter()
            .map(|t| format!("\"{}\"", name(*t)))
            .collect::<Vec<_>>()
            .join(", ");
        Err(self.err(
            v.span(),
            format!("unknown {what} {:?}", v.get_ref()),
            &format!("use one of: {list}"),
        ))
    }

    fn backend(
        &self,
        b: RawBackend,
        vip: IpAddr,
        forward: Forward,
        service_check: Option<&RawCheck>,
    ) -> Result<BackendCfg, ConfigError> {
        let address = self.ip(&b.address, "backend")?;
        // A tunnel carries an IPv4 packet in IPv6 (4in6), not the reverse.
        let fits = address.is_ipv4() == vip.is_ipv4() || (forward.tunnel() && vip.is_ipv4());
        if !fits {
            let hint = if forward.tunnel() {
                "an IPv6 VIP needs IPv6 backends (an IPv4 VIP may use IPv4 or IPv6 backends through a tunnel)"
            } else {
                "direct routing forwards the packet unchanged: an IPv4 VIP needs IPv4 backends, IPv6 needs IPv6"
            };
            return Err(self.err(
                b.address.span(),
                format!("backend {address} is not of the VIP's address family"),
                hint,
            ));
        }
        if forward.routed()
            && let Some(i) = &b.interface
        {
            return Err(self.err(
                i.span(),
                format!("interface does not apply to forward = {:?}", forward.name()),
                "these packets leave where the routing table sends the backend's address; remove interface",
            ));
        }
        let port = match &b.port {
            None => None,
            Some(p) if !forward.nat() => {
                return Err(self.err(
                    p.span(),
                    format!("port does not apply to forward = {:?}", forward.name()),
                    "only NAT changes the port (forward = \"nat\" or \"fullnat\"); the backend must listen on the VIP's port",
                ));
            }
            Some(p) if (1..=65535).contains(p.get_ref()) => Some(*p.get_ref() as u16),
            Some(p) => {
                return Err(self.err(
                    p.span(),
                    format!("port {} is out of range", p.get_ref()),
                    "the port the backend listens on, 1-65535",
                ));
            }
        };
        let weight = match &b.weight {
            None => 1,
            Some(w) if (0..=MAX_WEIGHT as i64).contains(w.get_ref()) => *w.get_ref() as u32,
            Some(w) => {
                return Err(self.err(
                    w.span(),
                    format!("weight {} is out of range", w.get_ref()),
                    "use 0 (drain: no new flows) to 65535, as with ipvsadm -w",
                ));
            }
        };
        Ok(BackendCfg {
            address,
            weight,
            port,
            interface: b.interface.map(Spanned::into_inner),
            check: self.check(&RawCheck::merge(service_check, b.check.as_ref()))?,
        })
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn is_prime(n: u32) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}
