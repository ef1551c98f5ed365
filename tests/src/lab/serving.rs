//! A lab with an agent serving, and what `lb show` says about it.

use std::{
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Result, bail};

use super::{Lab, LabSpec, bin};

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
    serving_agent(spec, "", services, extra)
}

/// `serving_config`, with `agent` lines in lb1's `[agent]`.
pub fn serving_agent(
    spec: LabSpec,
    agent: &str,
    services: impl FnOnce(&Lab) -> String,
    extra: &[&str],
) -> Result<(Lab, PathBuf)> {
    let mut lab = Lab::up(spec, &bin("LAB_HTTP_BIN", "lab-http")?, false)?;
    let cfg = lab.write_config_with("lb1", agent, &services(&lab))?;
    lab.start_agent_as("lb1", "lb1", &bin("LB_BIN", "lb")?, &cfg, extra)?;
    let served =
        crate::http::get_until(&lab.ns("c"), super::vip(), Duration::from_secs(20), |_| {
            true
        });
    if let Err(e) = served {
        bail!(
            "the VIP was not served within 20 s ({e}); agent log:\n{}",
            lab.log("lb1")
        );
    }
    Ok((lab, cfg))
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
    /// `n` GETs to `vip` on new connections from the client's fixed source
    /// ports starting at `port0`: the ports fix the flow hashes, so the
    /// outcome does not depend on which ephemeral ports the kernel picks.
    /// Returns backend (or "error: ...") -> count.
    pub fn spread(
        &self,
        vip: std::net::SocketAddr,
        n: u16,
        port0: u16,
    ) -> std::collections::BTreeMap<String, u32> {
        let client: std::net::IpAddr = self
            .client_addr(vip.is_ipv6())
            .parse()
            .expect("the client's address");
        crate::netns::in_ns(&self.ns("c"), move || {
            let mut counts = std::collections::BTreeMap::new();
            for i in 0..n {
                let local = std::net::SocketAddr::new(client, port0 + i);
                let name = crate::http::Conn::open_from(vip, Some(local))
                    .and_then(|mut c| c.get())
                    .unwrap_or_else(|e| format!("error: {e}"));
                *counts.entry(name).or_insert(0) += 1;
            }
            counts
        })
        .expect("the client's namespace")
    }

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
