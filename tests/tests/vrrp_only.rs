//! VRRP only, as keepalived is used in front of nginx or MySQL: two nodes
//! each run a web server, no `[[service]]`, and the agents move the VIP
//! between them; no XDP program is attached.

use std::{process::Command, time::Duration};

use lb_tests::{
    http,
    lab::{self, Lab, VIP4},
    netns, require,
    vrrp_lab::{two_balancers, wait_state},
};

/// Who answers a GET to the VIP from the client, within `wait`.
fn answered_by(l: &Lab, want: &str, wait: Duration) -> String {
    let want = want.to_string();
    let vip = lab::vip();
    http::get_until(&l.ns("c"), vip, wait, move |b| b == want).unwrap_or_else(|e| e)
}

#[test]
fn two_vrrp_only_agents_move_a_vip_between_two_web_servers() {
    let name = "two_vrrp_only_agents_move_a_vip_between_two_web_servers";
    if !require::lab(name, &[]) {
        return;
    }
    let mut l = two_balancers();
    let lb = lab::bin("LB_BIN", "lb").unwrap();
    for (role, prio) in [("lb1", 150), ("lb2", 100)] {
        // The node's own web server, answering with its name.
        let mut www = Command::new(lab::bin("LAB_HTTP_BIN", "lab-http").unwrap());
        www.args(["--name", role, "--listen", "0.0.0.0:80"]);
        l.spawn(role, &format!("www-{role}"), www).unwrap();
        let cfg = l
            .write_config(role, &Lab::vrrp_section(prio, "100ms", ""))
            .unwrap();
        let check = Command::new(&lb)
            .args(["check", "-c"])
            .arg(&cfg)
            .output()
            .unwrap();
        let plan = String::from_utf8_lossy(&check.stdout);
        assert!(
            check.status.success()
                && plan.contains("VRRP only")
                && plan.contains(&format!("vrrp VI_1 on eth0: VRID 51, priority {prio}"))
                && plan.contains(&format!("VIPs {VIP4}/32")),
            "{plan}"
        );
        l.start_agent(role, &lb, &cfg).unwrap();
        if role == "lb1" {
            wait_state(&l, "lb1", "MASTER", Duration::from_secs(10));
        }
    }
    wait_state(&l, "lb2", "BACKUP", Duration::from_secs(10));
    assert!(l.log("lb1").contains("VRRP only, no XDP program attached"));
    for role in ["lb1", "lb2"] {
        let link = netns::ip(&l.ns(role), "link show eth0").unwrap();
        assert!(
            !String::from_utf8_lossy(&link.stdout).contains("xdp"),
            "{role} has an XDP program attached"
        );
    }
    assert_eq!(answered_by(&l, "lb1", Duration::from_secs(5)), "lb1");

    // The master node fails: agent killed, link down. lb2 takes the VIP.
    l.signal("lb1", libc::SIGKILL).unwrap();
    assert!(l.wait_exit("lb1", Duration::from_secs(5)));
    netns::ip(&l.ns("lb1"), "link set eth0 down").unwrap();
    wait_state(&l, "lb2", "MASTER", Duration::from_secs(5));
    assert_eq!(answered_by(&l, "lb2", Duration::from_secs(5)), "lb2");

    // It comes back, restarted: preempt moves the VIP home.
    netns::ip(&l.ns("lb1"), "link set eth0 up").unwrap();
    l.restart_agent("lb1", "lb1-again").unwrap();
    wait_state(&l, "lb1", "MASTER", Duration::from_secs(10));
    assert_eq!(answered_by(&l, "lb1", Duration::from_secs(5)), "lb1");
}
