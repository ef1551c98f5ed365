//! The namespace lab: a client, balancers and backends on one bridge, with
//! documentation addresses. Tests get one per test (unique prefix) and it is
//! torn down on drop, also when a test panics; `cargo xtask lab` keeps one
//! up detached and finds it again by prefix.

use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result, bail};

use crate::netns::{self, enter, ip, sysctl};

pub const LAN4: &str = "198.51.100";
pub const LAN6: &str = "2001:db8:1";
pub const VIP4: &str = "203.0.113.10";
pub const VIP6: &str = "2001:db8:f::10";
pub const CLIENT4: &str = "198.51.100.2";
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

    pub fn balancer_addr(n: u8) -> String {
        format!("{LAN4}.{}", 4 + n)
    }

    pub fn backend_addr(b: &BackendSpec) -> String {
        format!("{LAN4}.{}", b.host)
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
            lab.wait_listening(&b.name, &format!("{}:80", Self::backend_addr(b)))?;
        }
        Ok(lab)
    }

    /// Start backend `name`'s HTTP server (port 80, IPv4 and IPv6).
    fn spawn_backend(&mut self, http_bin: &Path, name: &str) -> Result<()> {
        let mut cmd = Command::new(http_bin);
        cmd.args([
            "--name",
            name,
            "--listen",
            "0.0.0.0:80",
            "--listen",
            "[::]:80",
        ])
        .arg("--control")
        .arg(self.health_file(name));
        self.spawn(name, name, cmd)
    }

    /// The file backend `name`'s /healthz obeys (see lab-http).
    pub fn health_file(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.health"))
    }

    /// Make backend `name`'s /healthz answer `mode`: "ok", a status code,
    /// "hang" or "sick".
    pub fn set_health(&self, name: &str, mode: &str) -> Result<()> {
        Ok(fs::write(self.health_file(name), mode)?)
    }

    /// Kill backend `name`'s server (SIGKILL): its port refuses connections.
    pub fn stop_backend(&mut self, name: &str) -> Result<()> {
        self.signal(name, libc::SIGKILL)?;
        if !self.wait_exit(name, Duration::from_secs(5)) {
            bail!("{name} did not exit");
        }
        self.children.retain(|(n, _)| n != name);
        Ok(())
    }

    /// Start backend `name`'s server again and wait until it listens.
    pub fn start_backend(&mut self, name: &str) -> Result<()> {
        let b = self
            .spec
            .backends
            .iter()
            .find(|b| b.name == name)
            .cloned()
            .with_context(|| format!("no backend {name}"))?;
        self.spawn_backend(&bin("LAB_HTTP_BIN", "lab-http")?, name)?;
        self.wait_listening(name, &format!("{}:80", Self::backend_addr(&b)))
    }

    fn build(&mut self) -> Result<()> {
        let sw = self.ns("sw");
        ip("", &format!("netns add {sw}"))?;
        ip(&sw, "link add br0 type bridge")?;
        ip(&sw, "link set br0 up")?;
        ip(&sw, "link set lo up")?;
        self.host("c", 2, false)?;
        for n in 1..=self.spec.balancers {
            self.host(&format!("lb{n}"), 4 + n, false)?;
            let ns = self.ns(&format!("lb{n}"));
            if !self.spec.vrrp {
                // The VIP lives on the balancer, statically.
                ip(&ns, &format!("addr add {VIP4}/32 dev eth0"))?;
                ip(&ns, &format!("addr add {VIP6}/128 dev eth0 nodad"))?;
            }
            // XDP_TX out of a veth is dropped unless the peer runs XDP too.
            self.attach_pass(&format!("lb{n}"))?;
        }
        let backends = self.spec.backends.clone();
        for b in &backends {
            self.host(&b.name, b.host, true)?;
        }
        let c = self.ns("c");
        // A veth hands on TCP/UDP with only a partial checksum (offload);
        // after XDP_TX re-sends the frame that state is lost and the backend
        // drops it as corrupt. Real NICs put full checksums on the wire.
        netns::exec(&c, &["ethtool", "-K", "eth0", "tx", "off"])?;
        ip(&c, "route add 203.0.113.0/24 dev eth0")?;
        ip(&c, "-6 route add 2001:db8:f::/64 dev eth0")?;
        Ok(())
    }

    /// Attach `xdp_pass` to port `port` of the bridge namespace, pinned so
    /// it outlives this process (detached labs); removed with the lab's pins.
    fn attach_pass(&self, port: &str) -> Result<()> {
        use aya::programs::{XdpMode, links::FdLink};
        let pin = self.pin_dir(&format!("sw-{port}"));
        let port = port.to_string();
        netns::in_ns(&self.ns("sw"), move || -> Result<()> {
            let tiny = lb_user::maps::loader::Sizes {
                flows: 1024,
                max_services: 1,
                max_backends: 1,
                table_size: 7,
            };
            let mut bpf = lb_user::maps::loader::load(&pin, tiny)?;
            let prog = lb_user::maps::loader::program(&mut bpf, lb_common::names::PROG_XDP_PASS)?;
            let id = prog.attach(&port, XdpMode::Driver)?;
            let link = FdLink::try_from(prog.take_link(id)?)?;
            link.pin(pin.join(lb_common::names::LINK_PIN))?;
            Ok(())
        })?
    }

    /// A namespace `role` with eth0 on the bridge at LAN host number `host`.
    fn host(&self, role: &str, host: u8, backend: bool) -> Result<()> {
        let ns = self.ns(role);
        let sw = self.ns("sw");
        ip("", &format!("netns add {ns}"))?;
        ip(
            &ns,
            &format!("link add eth0 type veth peer name {role} netns {sw}"),
        )?;
        ip(&sw, &format!("link set {role} master br0 up"))?;
        ip(&ns, "link set lo up")?;
        ip(&ns, &format!("addr add {LAN4}.{host}/24 dev eth0"))?;
        ip(&ns, &format!("addr add {LAN6}::{host:x}/64 dev eth0 nodad"))?;
        ip(&ns, "link set eth0 up")?;
        if backend {
            // LVS-DR real server: the VIP on lo, never answered for or announced on eth0.
            ip(&ns, &format!("addr add {VIP4}/32 dev lo"))?;
            ip(&ns, &format!("addr add {VIP6}/128 dev lo"))?;
            for dev in ["all", "eth0"] {
                sysctl(&ns, &format!("net.ipv4.conf.{dev}.arp_ignore"), "1")?;
                sysctl(&ns, &format!("net.ipv4.conf.{dev}.arp_announce"), "2")?;
            }
        }
        Ok(())
    }

    /// Start `cmd` inside namespace `role`, logging to DIR/NAME.log.
    pub fn spawn(&mut self, role: &str, name: &str, mut cmd: Command) -> Result<()> {
        let log = fs::File::create(self.dir.join(format!("{name}.log")))?;
        enter(&mut cmd, &self.ns(role))?;
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if self.detached {
            // Own session: survives the xtask that started it.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                    libc::setsid();
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().with_context(|| format!("starting {name}"))?;
        fs::write(self.dir.join(format!("{name}.pid")), child.id().to_string())?;
        self.children.push((name.to_string(), child));
        Ok(())
    }

    /// Write the balancer config for `role` and return its path.
    pub fn write_config(&self, role: &str, services: &str) -> Result<PathBuf> {
        // restart_agent finds it here.
        let path = self.dir.join(format!("{role}.toml"));
        let text = format!(
            "# Lab balancer {role}; written by the lab.\n[agent]\ninterface = \"eth0\"\npin_dir = \"{}\"\nflow_table_size = 65536\nmax_services = 8\nmax_backends = 64\n\n{services}",
            self.pin_dir(role).display()
        );
        fs::write(&path, text)?;
        Ok(path)
    }

    /// The lab's default service: the VIP on port 80 over every backend.
    pub fn default_services(&self) -> String {
        self.services_with("")
    }

    /// The default services with `extra` lines (e.g. a `check`) in each.
    pub fn services_with(&self, extra: &str) -> String {
        let mut s = String::new();
        for vip in [VIP4, VIP6] {
            let _ = writeln!(
                s,
                "[[service]]\nvip = \"{vip}\"\nport = 80\nprotocol = \"tcp\"\n{extra}\nbackends = ["
            );
            for b in &self.spec.backends {
                let a = if vip == VIP4 {
                    Self::backend_addr(b)
                } else {
                    format!("{LAN6}::{:x}", b.host)
                };
                let _ = writeln!(s, "  {{ address = \"{a}\", weight = {} }},", b.weight);
            }
            s.push_str("]\n\n");
        }
        s
    }

    /// A `[[vrrp]]` section moving both VIPs, VRID 51, VRRPv3 at `interval`,
    /// with `extra` lines (preempt, track_services, ...).
    pub fn vrrp_section(priority: u8, interval: &str, extra: &str) -> String {
        format!(
            "[[vrrp]]\nname = \"VI_1\"\nvrid = 51\npriority = {priority}\nadvert_interval = \"{interval}\"\nvips = [\"{VIP4}/32\", \"{VIP6}/128\"]\n{extra}\n"
        )
    }

    /// Start `lb run -c CONFIG` in balancer namespace `role`.
    pub fn start_agent(&mut self, role: &str, lb_bin: &Path, config: &Path) -> Result<()> {
        self.start_agent_as(role, role, lb_bin, config, &[])
    }

    /// Start `role`'s agent again, as process `name`, with the config
    /// `write_config` left for it (and so its pins).
    pub fn restart_agent(&mut self, role: &str, name: &str) -> Result<()> {
        let cfg = self.dir.join(format!("{role}.toml"));
        self.start_agent_as(role, name, &bin("LB_BIN", "lb")?, &cfg, &[])
    }

    /// Start `lb run -c CONFIG EXTRA...` in namespace `role` as process `name`.
    pub fn start_agent_as(
        &mut self,
        role: &str,
        name: &str,
        lb_bin: &Path,
        config: &Path,
        extra: &[&str],
    ) -> Result<()> {
        let mut cmd = Command::new(lb_bin);
        cmd.args(["run", "-c"]).arg(config).args(extra);
        self.spawn(role, name, cmd)
    }

    pub fn pid(&self, name: &str) -> Option<u32> {
        self.children
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c.id())
    }

    pub fn signal(&self, name: &str, sig: i32) -> Result<()> {
        let pid = self
            .pid(name)
            .with_context(|| format!("no process {name}"))?;
        // SAFETY: plain kill(2) on our own child.
        if unsafe { libc::kill(pid as i32, sig) } != 0 {
            bail!("kill {name}: {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Names of the processes this handle started and still holds.
    pub fn process_names(&self) -> Vec<String> {
        self.children.iter().map(|(n, _)| n.clone()).collect()
    }

    /// Wait for child `name` to exit, up to `timeout`; returns whether it did.
    pub fn wait_exit(&mut self, name: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some((_, c)) = self.children.iter_mut().find(|(n, _)| n == name)
                && c.try_wait().ok().flatten().is_some()
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn log(&self, name: &str) -> String {
        fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default()
    }

    /// Wait until a TCP connect from the client to `addr` succeeds.
    pub fn wait_listening(&self, role: &str, addr: &str) -> Result<()> {
        let addr: std::net::SocketAddr = addr.parse()?;
        let ok = netns::in_ns(&self.ns(role), move || {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            false
        })?;
        if !ok {
            bail!("nothing listens on {addr} in {role} after 10 s");
        }
        Ok(())
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

/// Remove everything a detached lab with `prefix` made: the processes
/// recorded in its run directory, then its namespaces, pins and directory.
pub fn remove(prefix: &str) {
    let dir = Path::new(RUN_DIR).join(prefix);
    for pid in child_pids(&dir) {
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    if dir.exists() {
        // Give agents a moment to detach and unpin on SIGTERM.
        std::thread::sleep(Duration::from_millis(300));
    }
    for pid in child_pids(&dir) {
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    remove_resources(prefix);
}

/// The processes a lab started (`NAME.pid` in its run directory).
fn child_pids(dir: &Path) -> Vec<i32> {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "pid"))
        .filter_map(|e| read_pid(&e.path()))
        .collect()
}

fn read_pid(path: &Path) -> Option<i32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Namespaces, pins and the run directory of lab `prefix`.
fn remove_resources(prefix: &str) {
    let dir = Path::new(RUN_DIR).join(prefix);
    for ns in netns::list(&format!("{prefix}-")) {
        netns::delete(&ns);
    }
    if let Ok(entries) = fs::read_dir("/sys/fs/bpf") {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with(&format!("lb-lab-{prefix}-")) {
                lb_user::maps::loader::unpin_all(&e.path());
            }
        }
    }
    let _ = fs::remove_dir_all(&dir);
}

/// Remove the labs left behind by a run that was killed before it could
/// tear down (SIGKILL, a machine restart): no process recorded in the run
/// directory, owner or child, is alive. Labs younger than a minute may still
/// be being built and are left alone. Nothing is signalled: every recorded
/// pid is dead, or reused by a process that is not ours. Returns the prefixes
/// removed.
pub fn sweep() -> Vec<String> {
    let alive = |pid: i32| {
        // SAFETY: signal 0 only checks that the process exists.
        pid > 0
            && (unsafe { libc::kill(pid, 0) } == 0
                || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM))
    };
    let abandoned: Vec<String> = running()
        .into_iter()
        .filter(|prefix| {
            let dir = Path::new(RUN_DIR).join(prefix);
            let young = fs::metadata(&dir)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_none_or(|age| age < Duration::from_secs(60));
            let mut pids = child_pids(&dir);
            pids.extend(read_pid(&dir.join(OWNER)));
            !young && !pids.into_iter().any(alive)
        })
        .collect();
    for prefix in &abandoned {
        remove_resources(prefix);
    }
    abandoned
}

/// Prefixes of labs that are up (have a run directory).
pub fn running() -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(RUN_DIR)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    v.sort();
    v
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

/// A lab with `lb run` in lb1 serving the default services, ready: the
/// client has been answered through the VIP.
pub fn serving(spec: LabSpec) -> Result<(Lab, PathBuf)> {
    serving_with(spec, &[])
}

/// `serving`, with extra `lb run` arguments.
pub fn serving_with(spec: LabSpec, extra: &[&str]) -> Result<(Lab, PathBuf)> {
    serving_config(spec, Lab::default_services, extra)
}

/// `serving`, with the services `services(lab)` writes and extra `lb run` arguments.
pub fn serving_config(
    spec: LabSpec,
    services: impl FnOnce(&Lab) -> String,
    extra: &[&str],
) -> Result<(Lab, PathBuf)> {
    let mut lab = Lab::up(spec, &bin("LAB_HTTP_BIN", "lab-http")?, false)?;
    let cfg = lab.write_config("lb1", &services(&lab))?;
    lab.start_agent_as("lb1", "lb1", &bin("LB_BIN", "lb")?, &cfg, extra)?;
    let vip: std::net::SocketAddr = format!("{VIP4}:80").parse()?;
    let ok = netns::in_ns(&lab.ns("c"), move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if crate::http::get(vip).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    })?;
    if !ok {
        bail!(
            "the VIP was not served within 20 s; agent log:\n{}",
            lab.log("lb1")
        );
    }
    Ok((lab, cfg))
}

impl Lab {
    /// Wait until the log of `name` contains `needle`.
    pub fn wait_log(&self, name: &str, needle: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log(name).contains(needle) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "{name} did not log {needle:?} within {timeout:?}; log:\n{}",
            self.log(name)
        )
    }

    /// A backend's eth0 MAC.
    pub fn mac(&self, role: &str) -> Result<String> {
        let out = ip(&self.ns(role), "-o link show eth0")?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .map(str::to_string)
            .with_context(|| format!("no MAC in {text:?}"))
    }
}

/// `lb show ARGS --json`, parsed.
pub fn lb_show(args: &[&str]) -> Result<serde_json::Value> {
    let out = Command::new(bin("LB_BIN", "lb")?)
        .arg("show")
        .args(args)
        .arg("--json")
        .output()?;
    if !out.status.success() {
        bail!("lb show {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

impl Lab {
    /// `lb show backends` of balancer `role`: backend address -> its JSON, for `service`.
    pub fn backends(
        &self,
        role: &str,
        service: &str,
    ) -> Result<std::collections::BTreeMap<String, serde_json::Value>> {
        let dir = self.pin_dir(role);
        let v = lb_show(&["backends", "--pin-dir", dir.to_str().unwrap_or_default()])?;
        Ok(v["backends"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|b| b["service"] == service)
            .map(|b| (b["address"].as_str().unwrap_or("").to_string(), b.clone()))
            .collect())
    }

    /// Wait until backend `addr` of `service` on `role` is in `state`;
    /// returns its JSON then.
    pub fn wait_backend(
        &self,
        role: &str,
        service: &str,
        addr: &str,
        state: &str,
        timeout: Duration,
    ) -> Result<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        let mut last = serde_json::Value::Null;
        while Instant::now() < deadline {
            if let Some(b) = self.backends(role, service)?.remove(addr) {
                if b["state"] == state {
                    return Ok(b);
                }
                last = b;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        bail!(
            "{addr} of {service} not {state} within {timeout:?}; last seen {last:#}; log:\n{}",
            self.log(role)
        )
    }
}
