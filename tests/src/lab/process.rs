//! Processes in the lab: backends' HTTP servers, agents, anything a test
//! starts in a namespace; their logs, signals and exits.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use super::{Lab, bin};
use crate::netns::{self, enter, ip};

impl Lab {
    /// Start backend `name`'s HTTP server (port 80, IPv4 and IPv6).
    pub(super) fn spawn_backend(&mut self, http_bin: &Path, name: &str) -> Result<()> {
        let mut cmd = Command::new(http_bin);
        cmd.args([
            "--name",
            name,
            "--listen",
            "0.0.0.0:80",
            "--listen",
            "[::]:80",
        ]);
        if self.spec.nat {
            cmd.args(["--listen", "0.0.0.0:8080", "--listen", "[::]:8080"]);
        }
        cmd.arg("--control").arg(self.health_file(name));
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
        self.wait_listening(name, &format!("{}:80", self.backend_addr(&b)))
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
