//! Agent CPU while health-checking 1,000 backends at a 1 s interval: a real
//! `lb run` in a scratch namespace whose 1,000 backends are loopback
//! addresses (127.1.x.y; one `lab-http` on 0.0.0.0 serves them all),
//! measured from /proc/PID/stat over a fixed window, against the same agent
//! and backends with no checks (the baseline) in the same run.
//!
//! IPv4 on purpose: with 1,000 IPv6 addresses on one interface, the kernel's
//! source address selection walks all of them on every connect, and that,
//! not the agent, dominated the measurement. Loopback TCP also charges the
//! server half of each handshake to the connecting process, so the system
//! time here is an upper bound of what checks over a real NIC cost.

use std::{
    fmt::Write as _,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use lb_tests::{
    lab,
    netns::{self, Netns, enter, ip},
};

const BACKENDS: u32 = 1000;
const PORT: u16 = 8080;

fn addr(i: u32) -> String {
    format!("127.1.{}.{}", i / 250, 1 + i % 250)
}

/// Clock ticks of (user, system) time of `pid`.
fn cpu_ticks(pid: u32) -> Result<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the ")" of the command name; utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').context("stat format")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Ok((f[11].parse()?, f[12].parse()?))
}

fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        // SAFETY: kill(2) of our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(3);
        while self.0.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn config(dir: &Path, pins: &Path, check: &str) -> Result<std::path::PathBuf> {
    let mut s = format!(
        "[agent]\ninterface = \"veth0\"\npin_dir = \"{}\"\nmax_backends = 2048\nflow_table_size = 65536\n\n[[service]]\nvip = \"203.0.113.10\"\nport = {PORT}\n{check}\nbackends = [\n",
        pins.display()
    );
    for i in 0..BACKENDS {
        let _ = writeln!(s, "  {{ address = \"{}\" }},", addr(i));
    }
    s.push_str("]\n");
    let path = dir.join("bench.toml");
    std::fs::write(&path, s)?;
    Ok(path)
}

/// Total checks the agent has run so far (from `lb show backends`).
fn checks_done(pins: &Path) -> u64 {
    lab::lb_show(&["backends", "--pin-dir", pins.to_str().unwrap_or_default()])
        .ok()
        .and_then(|v| {
            v["backends"].as_array().map(|a| {
                a.iter()
                    .map(|b| b["health"]["checks"].as_u64().unwrap_or(0))
                    .sum()
            })
        })
        .unwrap_or(0)
}

/// (user, system CPU % of one core, checks per second) for one agent run.
fn measure(ns: &str, check: &str, secs: u64) -> Result<(f64, f64, f64)> {
    let dir = std::env::temp_dir().join(format!("{ns}-run"));
    std::fs::create_dir_all(&dir)?;
    let pins = Path::new("/sys/fs/bpf").join(format!("{ns}-bench"));
    let cfg = config(&dir, &pins, check)?;
    let mut cmd = Command::new(lab::bin("LB_BIN", "lb")?);
    cmd.args(["run", "-c"]).arg(&cfg);
    cmd.env("LB_LOG", "warn,netlink_packet_route=error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    enter(&mut cmd, ns)?;
    let agent = Killed(cmd.spawn()?);
    let pid = agent.0.id();
    // Let every backend pass its first check and the tables settle.
    std::thread::sleep(Duration::from_secs(5));
    let (c0, n0, t0) = (cpu_ticks(pid)?, checks_done(&pins), Instant::now());
    std::thread::sleep(Duration::from_secs(secs));
    let (c1, n1, el) = (cpu_ticks(pid)?, checks_done(&pins), t0.elapsed());
    drop(agent);
    lb_user::maps::loader::unpin_all(&pins);
    let _ = std::fs::remove_dir_all(&dir);
    let pct = |a: u64, b: u64| (b - a) as f64 / ticks_per_sec() / el.as_secs_f64() * 100.0;
    Ok((
        pct(c0.0, c1.0),
        pct(c0.1, c1.1),
        (n1.saturating_sub(n0)) as f64 / el.as_secs_f64(),
    ))
}

/// CPU % of one core of this thread (user + system) since `since`.
fn thread_cpu() -> Duration {
    // SAFETY: getrusage fills the struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// The floor any checker pays: the same 1,000 GET /healthz a second on new
/// connections (reset after the answer, as the agent does) from one plain
/// blocking thread. (CPU % of one core, exchanges per second.)
fn reference_client(ns: &str, secs: u64) -> Result<(f64, f64)> {
    use std::io::{Read, Write};
    netns::in_ns(ns, move || {
        let addrs: Vec<std::net::SocketAddr> = (0..BACKENDS)
            .map(|i| format!("{}:{PORT}", addr(i)).parse().unwrap())
            .collect();
        let (c0, t0) = (thread_cpu(), Instant::now());
        let mut done = 0u64;
        let mut buf = [0u8; 512];
        for round in 0..secs {
            for a in &addrs {
                let Ok(mut s) = std::net::TcpStream::connect_timeout(a, Duration::from_millis(500))
                else {
                    continue;
                };
                let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n");
                let mut got = Vec::new();
                while !got.windows(7).any(|w| w == b"healthy") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                // SO_LINGER 0: reset, like the agent's checks.
                let l = libc::linger {
                    l_onoff: 1,
                    l_linger: 0,
                };
                // SAFETY: setsockopt on a socket we own, with a valid linger.
                unsafe {
                    libc::setsockopt(
                        std::os::fd::AsRawFd::as_raw_fd(&s),
                        libc::SOL_SOCKET,
                        libc::SO_LINGER,
                        &l as *const _ as *const libc::c_void,
                        std::mem::size_of::<libc::linger>() as u32,
                    )
                };
                done += 1;
            }
            let next = t0 + Duration::from_secs(round + 1);
            if let Some(rest) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(rest);
            }
        }
        let el = t0.elapsed().as_secs_f64();
        (
            (thread_cpu() - c0).as_secs_f64() / el * 100.0,
            done as f64 / el,
        )
    })
}

pub fn run(secs: u64) -> Result<()> {
    let ns = Netns::new("hb")?;
    let n = ns.name.as_str();
    ip(n, "link set lo up")?;
    ip(n, "link add veth0 type veth peer name veth1")?;
    ip(n, "link set veth0 up")?;
    ip(n, "link set veth1 up")?;
    // Each loopback backend gets a permanent neighbour entry on veth0 (the
    // agent needs a MAC to use a backend).
    let mut batch = String::new();
    for i in 0..BACKENDS {
        let _ = writeln!(
            batch,
            "neigh replace {} lladdr 02:00:00:00:{:02x}:{:02x} dev veth0 nud permanent",
            addr(i),
            i >> 8,
            i & 0xff
        );
    }
    let file = std::env::temp_dir().join(format!("{n}.batch"));
    std::fs::write(&file, batch)?;
    let out = Command::new("ip")
        .args(["-n", n, "-batch"])
        .arg(&file)
        .output()?;
    let _ = std::fs::remove_file(&file);
    if !out.status.success() {
        bail!("ip -batch: {}", String::from_utf8_lossy(&out.stderr));
    }
    let mut http = Command::new(lab::bin("LAB_HTTP_BIN", "lab-http")?);
    http.args(["--name", "bench", "--listen", &format!("0.0.0.0:{PORT}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    enter(&mut http, n)?;
    let _server = Killed(http.spawn()?);
    netns::in_ns(n, || {
        let a: std::net::SocketAddr = format!("{}:{PORT}", addr(0)).parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(a).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    })?;

    println!(
        "\nAgent CPU with {BACKENDS} backends checked every 1 s ({secs} s window, % of one core):"
    );
    let cases = [
        ("no checks (baseline)", ""),
        (
            "tcp connect",
            r#"check = { kind = "tcp", interval = "1s", timeout = "500ms" }"#,
        ),
        (
            "http GET /healthz",
            r#"check = { kind = "http", path = "/healthz", expect_body = "healthy", interval = "1s", timeout = "500ms" }"#,
        ),
    ];
    let (floor, rate) = reference_client(n, secs)?;
    println!(
        "  {:<22} {floor:>6.2}%   exchanges/s {rate:>5.0}   (kernel TCP on loopback, both ends' receive work included)",
        "floor: plain client"
    );
    let mut base = None;
    for (name, check) in cases {
        let (user, sys, rate) = measure(n, check, secs)?;
        let cpu = user + sys;
        let b = *base.get_or_insert(cpu);
        println!(
            "  {name:<22} {cpu:>6.2}% (user {user:>5.2}%, system {sys:>5.2}%)   checks/s {rate:>5.0}   over baseline {:>+6.2}%",
            cpu - b
        );
    }
    Ok(())
}
