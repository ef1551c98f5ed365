//! keepalived as a VRRP peer in the lab: its config, start, crash, and the
//! state it logs.

use crate::lab::{Lab, VIP4};

/// Run keepalived's VRRP in balancer namespace `role` as process `name`:
/// instance VI_1, VRID 51, the lab's IPv4 VIP, 200 ms (v3) or 1 s (v2).
pub fn start(l: &mut Lab, role: &str, name: &str, version: u8, priority: u8, auth: bool) {
    let ka_int = if version == 2 { "1" } else { "0.2" };
    let auth_block = if auth {
        "    authentication {\n        auth_type PASS\n        auth_pass s3cret\n    }\n"
    } else {
        ""
    };
    let conf = format!(
        "global_defs {{\n    router_id {role}\n    vrrp_version {version}\n}}\nvrrp_instance VI_1 {{\n    state BACKUP\n    interface eth0\n    virtual_router_id 51\n    priority {priority}\n    advert_int {ka_int}\n{auth_block}    virtual_ipaddress {{\n        {VIP4}/32\n    }}\n}}\n"
    );
    let path = l.dir.join(format!("{name}.conf"));
    std::fs::write(&path, conf).unwrap();
    let mut cmd = std::process::Command::new("keepalived");
    cmd.args([
        "--vrrp",
        "--dont-fork",
        "--log-console",
        "--log-detail",
        "--no-syslog",
    ])
    .arg("--use-file")
    .arg(&path)
    .arg("--pid")
    .arg(l.dir.join(format!("{name}.pid.main")))
    .arg("--vrrp_pid")
    .arg(l.dir.join(format!("{name}.pid.vrrp")));
    l.spawn(role, name, cmd).unwrap();
}

/// SIGKILL keepalived's VRRP process and then its parent: a crash, not a
/// clean stop (a killed parent alone lets the child resign with priority 0).
pub fn crash(l: &Lab, name: &str) {
    let vrrp_pid: i32 = std::fs::read_to_string(l.dir.join(format!("{name}.pid.vrrp")))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: kill(2) of the keepalived this test started.
    unsafe { libc::kill(vrrp_pid, libc::SIGKILL) };
    l.signal(name, libc::SIGKILL).unwrap();
}

/// keepalived's state, from its log (it logs every transition).
pub fn state(l: &Lab, name: &str) -> &'static str {
    let log = l.log(name);
    let m = log.rfind("Entering MASTER STATE");
    let b = log
        .rfind("Entering BACKUP STATE")
        .max(log.rfind("Entering FAULT STATE"));
    match (m, b) {
        (Some(m), Some(b)) if m > b => "MASTER",
        (Some(_), None) => "MASTER",
        (_, Some(_)) => "BACKUP",
        _ => "?",
    }
}
