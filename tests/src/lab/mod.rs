//! The namespace lab: a client, balancers and backends on one bridge, with
//! documentation addresses. Tests get one per test (unique prefix) and it is
//! torn down on drop, also when a test panics; `cargo xtask lab` keeps one
//! up detached and finds it again by prefix.

mod bgp;
mod config;
mod process;
mod serving;
mod sweep;
mod topology;

use std::{
    fs,
    path::{Path, PathBuf},
    process::Child,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Result, bail};

pub use bgp::{BGP_CLIENT4, BGP_CLIENT6, balancer_addr6, client_flows, node_bird_conf};
pub use serving::{lb_show, serving, serving_agent, serving_config, serving_with};
use sweep::remove_resources;
pub use sweep::{remove, running, sweep};

pub const LAN4: &str = "198.51.100";
pub const LAN6: &str = "2001:db8:1";
pub const VIP4: &str = "203.0.113.10";
pub const VIP6: &str = "2001:db8:f::10";
pub const CLIENT4: &str = "198.51.100.2";
pub const CLIENT6: &str = "2001:db8:1::2";
/// A routed lab's router on the LAN, and the backends' subnet behind it.
pub const ROUTER4: &str = "198.51.100.1";
pub const ROUTER6: &str = "2001:db8:1::1";
pub const BACKEND_NET4: &str = "198.51.100.128/25";
pub const BACKEND_NET6: &str = "2001:db8:2::/64";
/// The backends' gateway in a NAT lab (the router's address in a routed one).
pub const NAT_GW4: &str = "198.51.100.129";
pub const NAT_GW6: &str = "2001:db8:2::1";

/// The lab's IPv4 VIP, port 80: where clients connect.
pub fn vip() -> std::net::SocketAddr {
    std::net::SocketAddr::new(VIP4.parse().expect("VIP4 is an address"), 80)
}
/// Where labs keep configs, logs and pids.
pub const RUN_DIR: &str = "/run/lb-lab";
/// In a lab's run directory: the pid of the process holding its `Lab`
/// handle (not a child: tearing the lab down never signals it).
pub const OWNER: &str = "owner";

#[derive(Debug, Clone)]
pub struct BackendSpec {
    pub name: String,
    /// Last octet / hextet of its LAN addresses.
    pub host: u8,
    pub weight: u32,
}

#[derive(Debug, Clone)]
pub struct LabSpec {
    pub balancers: u8,
    pub backends: Vec<BackendSpec>,
    /// The balancers move the VIP with VRRP; otherwise lb1 holds it statically.
    pub vrrp: bool,
    /// The backends sit in another subnet behind a router namespace `r`
    /// (for tunnels), and are not set up as real servers: the test runs
    /// `lb realserver up` there.
    pub routed: bool,
    /// NAT: the backends sit on a second bridge behind the balancers (their
    /// eth1, the backends' default gateway); the backends also listen on
    /// port 8080 and need no VIP.
    pub nat: bool,
    /// Scale-out: the balancers announce the VIPs to a router namespace
    /// `r` over BGP (BIRD); the client sits behind the router.
    pub bgp: bool,
}

impl Default for LabSpec {
    /// Two backends of weight 1 and one of weight 2, one balancer.
    fn default() -> Self {
        let b = |n: u8, w| BackendSpec {
            name: format!("b{n}"),
            host: 10 + n,
            weight: w,
        };
        Self {
            balancers: 1,
            backends: vec![b(1, 1), b(2, 1), b(3, 2)],
            vrrp: false,
            routed: false,
            nat: false,
            bgp: false,
        }
    }
}

pub struct Lab {
    pub prefix: String,
    pub dir: PathBuf,
    pub spec: LabSpec,
    children: Vec<(String, Child)>,
    /// Detached labs (cargo xtask lab up) outlive this handle.
    detached: bool,
}

/// A short prefix unique to this process and moment: namespace names stay
/// short and parallel tests never collide.
pub fn unique_prefix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let n = (std::process::id() << 12)
        ^ (t >> 8)
        ^ SEQ.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x9e37);
    format!("lb{:06x}", n & 0xff_ffff)
}

impl Lab {
    pub fn ns(&self, role: &str) -> String {
        format!("{}-{role}", self.prefix)
    }

    /// The client's address: on the LAN, or behind the router (BGP).
    pub fn client_addr(&self, v6: bool) -> &'static str {
        match (self.spec.bgp, v6) {
            (true, false) => BGP_CLIENT4,
            (true, true) => BGP_CLIENT6,
            (false, false) => CLIENT4,
            (false, true) => CLIENT6,
        }
    }

    pub fn balancer_addr(n: u8) -> String {
        format!("{LAN4}.{}", 4 + n)
    }

    /// Backend `b`'s IPv4 address: on the LAN, or behind the router.
    pub fn backend_addr(&self, b: &BackendSpec) -> String {
        if self.spec.routed || self.spec.nat {
            format!("{LAN4}.{}", 128 + b.host)
        } else {
            format!("{LAN4}.{}", b.host)
        }
    }

    /// Backend `b`'s IPv6 address.
    pub fn backend_addr6(&self, b: &BackendSpec) -> String {
        if self.spec.routed || self.spec.nat {
            format!("2001:db8:2::{:x}", b.host)
        } else {
            format!("{LAN6}::{:x}", b.host)
        }
    }

    pub fn pin_dir(&self, role: &str) -> PathBuf {
        PathBuf::from(format!("/sys/fs/bpf/lb-lab-{}-{role}", self.prefix))
    }

    /// Build the namespaces, links and addresses; start the backends' HTTP servers.
    pub fn up(spec: LabSpec, http_bin: &Path, detached: bool) -> Result<Lab> {
        let prefix = unique_prefix();
        let dir = Path::new(RUN_DIR).join(&prefix);
        fs::create_dir_all(&dir)?;
        if !detached {
            // Whoever holds this handle owns the lab; `abandoned` looks for it.
            fs::write(dir.join(OWNER), std::process::id().to_string())?;
        }
        let mut lab = Lab {
            prefix,
            dir,
            spec,
            children: Vec::new(),
            detached,
        };
        // On error the partly built lab is dropped, and so removed.
        lab.build()?;
        let backends = lab.spec.backends.clone();
        for b in &backends {
            lab.spawn_backend(http_bin, &b.name)?;
        }
        for b in &backends {
            lab.wait_listening(&b.name, &format!("{}:80", lab.backend_addr(b)))?;
        }
        Ok(lab)
    }

    /// Tear down: stop processes (SIGTERM, then SIGKILL), remove
    /// namespaces, pins and the run directory.
    pub fn down(&mut self) {
        for (_, c) in &self.children {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        for (_, c) in &mut self.children {
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        self.children.clear();
        remove_resources(&self.prefix);
    }

    /// Forget the children without stopping them (detached labs).
    pub fn release(mut self) {
        self.children.clear();
        self.detached = true;
        std::mem::forget(self);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.down();
    }
}

/// A built binary of the workspace: `$ENV` (set by `cargo xtask test`), else
/// target/{debug,release}/NAME.
pub fn bin(env: &str, name: &str) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Ok(PathBuf::from(p));
    }
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    for mode in ["debug", "release"] {
        let p = target.join(mode).join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!("{name} is not built: run the tests through `cargo xtask test` (or set {env})")
}
