//! The scale-out lab: a router namespace running BIRD (ECMP over the
//! balancers, BFD, short timers), each balancer with its own BIRD peering
//! with it, the client behind the router, the backends (DR) on the
//! balancers' LAN. The bridge has static entries for every port's MAC: a
//! dead balancer's frames are dropped, not flooded to the others.

use std::{
    fmt::Write as _,
    fs,
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use super::{BACKEND_NET4, BACKEND_NET6, LAN6, Lab, NAT_GW4, NAT_GW6, ROUTER4, ROUTER6};
use crate::netns::{self, ip, sysctl};

/// The router's and the balancers' AS numbers (private range).
const ROUTER_AS: u32 = 65000;
const NODE_AS: u32 = 65001;
/// Where the client sits: the router's second segment.
pub const BGP_CLIENT4: &str = "198.51.100.130";
pub const BGP_CLIENT6: &str = "2001:db8:2::2";
/// BFD: 30 ms x 3, as the scale-out issue measured (~80-100 ms to withdraw).
const BFD: &str =
    "interface \"eth0\" { min rx interval 30 ms; min tx interval 30 ms; multiplier 3; };";
/// Short BGP timers: a restarted node's session is back in seconds.
const TIMERS: &str =
    "hold time 3; connect delay time 1; connect retry time 2; error wait time 1, 5;";

impl Lab {
    /// Routes and the client for a BGP lab (after the hosts exist).
    pub(super) fn bgp_build(&self) -> Result<()> {
        let (r, sw, c) = (self.ns("r"), self.ns("sw"), self.ns("c"));
        for key in [
            "net.ipv4.fib_multipath_hash_policy",
            "net.ipv6.fib_multipath_hash_policy",
        ] {
            // Spread by 5-tuple: with 0 (addresses only) one client goes to one node.
            sysctl(&r, key, "1")?;
        }
        ip(&c, &format!("route add default via {NAT_GW4}"))?;
        ip(&c, &format!("-6 route add default via {NAT_GW6}"))?;
        // The client's segment is behind the router for everyone on the LAN.
        let mut lan_hosts: Vec<String> = (1..=self.spec.balancers)
            .map(|n| format!("lb{n}"))
            .collect();
        lan_hosts.extend(self.spec.backends.iter().map(|b| b.name.clone()));
        for role in &lan_hosts {
            let ns = self.ns(role);
            ip(&ns, &format!("route add {BACKEND_NET4} via {ROUTER4}"))?;
            ip(&ns, &format!("-6 route add {BACKEND_NET6} via {ROUTER6}"))?;
        }
        // Static bridge entries: a port that goes down keeps its MAC.
        lan_hosts.push("r".into());
        for role in &lan_hosts {
            let (_, mac) = netns::link(&self.ns(role), "eth0")?;
            let mac = lb_user::addr::mac(&mac);
            netns::run(
                "bridge",
                &[
                    "-n", &sw, "fdb", "replace", &mac, "dev", role, "master", "static",
                ],
            )?;
        }
        Ok(())
    }

    /// Start BIRD in the router and in every balancer namespace.
    pub fn start_birds(&mut self) -> Result<()> {
        let mut conf = format!(
            "router id {ROUTER4};\nlog stderr all;\nprotocol device {{ scan time 10; }}\n\
             protocol kernel {{ ipv4 {{ import none; export all; }}; merge paths on; }}\n\
             protocol kernel {{ ipv6 {{ import none; export all; }}; merge paths on; }}\n\
             protocol bfd {{ {BFD} }}\n\
             template bgp node {{ local as {ROUTER_AS}; {TIMERS} bfd on; }}\n"
        );
        for n in 1..=self.spec.balancers {
            let _ = write!(
                conf,
                "protocol bgp lb{n}v4 from node {{ neighbor {} as {NODE_AS}; ipv4 {{ import all; export none; }}; }}\n\
                 protocol bgp lb{n}v6 from node {{ neighbor {} as {NODE_AS}; ipv6 {{ import all; export none; }}; }}\n",
                Lab::balancer_addr(n),
                balancer_addr6(n),
            );
        }
        self.start_bird("r", &conf)?;
        for n in 1..=self.spec.balancers {
            let conf = node_bird_conf(&Lab::balancer_addr(n), &balancer_addr6(n), "lb-bgp");
            self.start_bird(&format!("lb{n}"), &conf)?;
        }
        Ok(())
    }

    fn start_bird(&mut self, role: &str, conf: &str) -> Result<()> {
        let path = self.dir.join(format!("bird-{role}.conf"));
        fs::write(&path, conf)?;
        let mut cmd = Command::new("bird");
        cmd.arg("-f")
            .arg("-c")
            .arg(&path)
            .arg("-s")
            .arg(self.bird_socket(role));
        self.spawn(role, &format!("bird-{role}"), cmd)
    }

    pub fn bird_socket(&self, role: &str) -> PathBuf {
        self.dir.join(format!("bird-{role}.ctl"))
    }

    /// `[bgp]` lines for a balancer's config.
    pub fn bgp_section(extra: &str) -> String {
        format!("[bgp]\ndevice = \"lb-bgp\"\n{extra}\n")
    }

    /// The balancers the router's route to `prefix` (e.g. "203.0.113.10/32")
    /// goes through now: their LAN addresses.
    pub fn router_paths(&self, prefix: &str) -> Result<Vec<String>> {
        let v6 = prefix.contains(':');
        let args = if v6 {
            "-6 -j route show"
        } else {
            "-j route show"
        };
        let out = ip(&self.ns("r"), &format!("{args} {prefix}"))?;
        let routes: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let mut via = Vec::new();
        for r in routes.as_array().into_iter().flatten() {
            if let Some(g) = r["gateway"].as_str() {
                via.push(g.to_string());
            }
            for h in r["nexthops"].as_array().into_iter().flatten() {
                if let Some(g) = h["gateway"].as_str() {
                    via.push(g.to_string());
                }
            }
        }
        via.sort();
        Ok(via)
    }

    /// Wait until the router reaches `prefix` through exactly `n`
    /// balancers; how long that took.
    pub fn wait_paths(&self, prefix: &str, n: usize, timeout: Duration) -> Result<Duration> {
        self.wait_route(prefix, &format!("{n} balancers"), timeout, |v| v.len() == n)
    }

    /// Wait until the router reaches `prefix` through exactly balancers
    /// `nodes` (numbers, as in lb1): another node's BFD session flapping
    /// for a moment on a loaded machine does not pass for it.
    pub fn wait_exactly(&self, prefix: &str, nodes: &[u8], timeout: Duration) -> Result<Duration> {
        let mut want: Vec<String> = nodes
            .iter()
            .map(|&n| {
                if prefix.contains(':') {
                    balancer_addr6(n)
                } else {
                    Lab::balancer_addr(n)
                }
            })
            .collect();
        want.sort();
        self.wait_route(prefix, &format!("{want:?}"), timeout, |v| v == want)
    }

    /// Wait until the router's gateways for `prefix` (sorted) satisfy `ok`
    /// (described by `what`); how long that took.
    fn wait_route(
        &self,
        prefix: &str,
        what: &str,
        timeout: Duration,
        ok: impl Fn(&[String]) -> bool,
    ) -> Result<Duration> {
        let start = Instant::now();
        let mut last = Vec::new();
        while start.elapsed() < timeout {
            last = self.router_paths(prefix)?;
            if ok(&last) {
                return Ok(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let birdc = Command::new("birdc")
            .arg("-s")
            .arg(self.bird_socket("r"))
            .args(["show", "protocols"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
            .unwrap_or_default();
        bail!(
            "the router's route to {prefix} went through {last:?}, not {what}, after {timeout:?}; router's BIRD:\n{birdc}\nrouter log:\n{}",
            self.log("bird-r")
        )
    }
}

/// A balancer's BIRD: export the addresses of the agent's device (host
/// routes only), import nothing, BFD and short timers toward the router.
/// The same protocols and timers as dist/bird-lb.conf.
pub fn node_bird_conf(addr4: &str, addr6: &str, device: &str) -> String {
    format!(
        "router id {addr4};\nlog stderr all;\nprotocol device {{ scan time 10; }}\n\
         protocol direct {{ ipv4; ipv6; interface \"{device}\"; }}\n\
         protocol bfd {{ {BFD} }}\n\
         template bgp up {{ local as {NODE_AS}; {TIMERS} bfd on; }}\n\
         protocol bgp up4 from up {{ local {addr4}; neighbor {ROUTER4} as {ROUTER_AS}; \
         ipv4 {{ import none; export where source = RTS_DEVICE && net.len = 32; }}; }}\n\
         protocol bgp up6 from up {{ local {addr6}; neighbor {ROUTER6} as {ROUTER_AS}; \
         ipv6 {{ import none; export where source = RTS_DEVICE && net.len = 128; }}; }}\n"
    )
}

/// Balancer `n`'s IPv6 LAN address.
pub fn balancer_addr6(n: u8) -> String {
    format!("{LAN6}::{:x}", 4 + n)
}

/// The client addresses (address:port) of the flows from the BGP lab's
/// client in balancer `role`'s flow table.
pub fn client_flows(lab: &Lab, role: &str) -> Result<Vec<String>> {
    let dir = lab.pin_dir(role);
    let v = super::lb_show(&[
        "flows",
        "--limit",
        "100000",
        "--pin-dir",
        dir.to_str().context("pin dir")?,
    ])?;
    Ok(v["flows"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["client"].as_str())
        .filter(|c| c.starts_with(BGP_CLIENT4) || c.starts_with(&format!("[{BGP_CLIENT6}]")))
        .map(str::to_string)
        .collect())
}
