//! Two balancers electing a master with VRRP in the lab, and what the
//! VRRP tests ask of them.

use std::time::{Duration, Instant};

use crate::lab::{self, Lab, LabSpec};

/// The lab with lb1 and lb2 and VRRP-managed VIPs, no agent started.
pub fn two_balancers() -> Lab {
    let spec = LabSpec {
        balancers: 2,
        vrrp: true,
        ..LabSpec::default()
    };
    Lab::up(spec, &lab::bin("LAB_HTTP_BIN", "lab-http").unwrap(), false).unwrap()
}

/// `lb show vrrp` of `role`: (state, master address).
pub fn vrrp_state(l: &Lab, role: &str) -> (String, String) {
    let dir = l.pin_dir(role);
    match lab::lb_show(&["vrrp", "--pin-dir", dir.to_str().unwrap()]) {
        Ok(v) => {
            let i = &v["vrrp"][0];
            (
                i["state"].as_str().unwrap_or("?").to_string(),
                i["master"].as_str().unwrap_or("-").to_string(),
            )
        }
        Err(_) => ("gone".into(), "-".into()),
    }
}

/// Wait until `role` is in VRRP `state`; how long that took.
pub fn wait_state(l: &Lab, role: &str, state: &str, timeout: Duration) -> Duration {
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        if vrrp_state(l, role).0 == state {
            return t0.elapsed();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!(
        "{role} not {state} within {timeout:?}; now {:?}\n{role} log:\n{}",
        vrrp_state(l, role),
        l.log(role)
    );
}

/// Both balancers at 100 ms adverts, lb1 (150) master; lb1 runs with
/// `lb1_args`.
pub fn fast_pair(lb1_args: &[&str]) -> Lab {
    let mut l = two_balancers();
    let lb = lab::bin("LB_BIN", "lb").unwrap();
    for (role, prio, args) in [("lb1", 150, lb1_args), ("lb2", 100, &[][..])] {
        let cfg = l
            .write_config(
                role,
                &format!(
                    "{}{}",
                    l.default_services(),
                    Lab::vrrp_section(prio, "100ms", "")
                ),
            )
            .unwrap();
        l.start_agent_as(role, role, &lb, &cfg, args).unwrap();
        if role == "lb1" {
            wait_state(&l, "lb1", "MASTER", Duration::from_secs(10));
        }
    }
    wait_state(&l, "lb2", "BACKUP", Duration::from_secs(10));
    l
}

/// Packets lb1's data plane has forwarded (its pins outlive its agent).
pub fn forwarded_by(l: &Lab, role: &str) -> u64 {
    lb_user::maps::Pinned::open(&l.pin_dir(role))
        .map(|p| p.reason(lb_common::Reason::FwdFlowHit) + p.reason(lb_common::Reason::FwdFlowMiss))
        .unwrap_or(0)
}
