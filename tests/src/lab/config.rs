//! Config files the lab writes for its balancers.

use std::{fmt::Write as _, fs, path::PathBuf};

use anyhow::Result;

use super::{Lab, VIP4, VIP6};

impl Lab {
    /// Write the balancer config for `role` and return its path.
    pub fn write_config(&self, role: &str, services: &str) -> Result<PathBuf> {
        self.write_config_with(role, "", services)
    }

    /// `write_config` with `agent` lines added to `[agent]`.
    pub fn write_config_with(&self, role: &str, agent: &str, services: &str) -> Result<PathBuf> {
        // restart_agent finds it here.
        let path = self.dir.join(format!("{role}.toml"));
        let text = format!(
            "# Lab balancer {role}; written by the lab.\n[agent]\ninterface = \"eth0\"\npin_dir = \"{}\"\nflow_table_size = 65536\nmax_services = 8\nmax_backends = 64\n{agent}\n\n{services}",
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
        self.services_over(&self.spec.backends, extra)
    }

    /// Both VIPs on port 80 over `backends`, in that order, with `extra`
    /// lines in each.
    pub fn services_over(&self, backends: &[super::BackendSpec], extra: &str) -> String {
        let mut s = String::new();
        for vip in [VIP4, VIP6] {
            let _ = writeln!(
                s,
                "[[service]]\nvip = \"{vip}\"\nport = 80\nprotocol = \"tcp\"\n{extra}\nbackends = ["
            );
            for b in backends {
                let a = if vip == VIP4 {
                    self.backend_addr(b)
                } else {
                    self.backend_addr6(b)
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
}
