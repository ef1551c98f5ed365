//! `lb realserver up` then `down` leaves a host exactly as it was
//! (addresses, routes, ARP and reverse-path settings, XDP programs, pins),
//! `up` twice is harmless, settings the operator had already made survive
//! `down`, and `--kernel-tunnel` on a kernel without the modules is refused
//! before anything changes.

use std::{path::PathBuf, process::Command};

use lb_tests::{
    bpf::unique_pin_dir,
    lab,
    netns::{self, Netns},
    require,
};

struct Host {
    ns: Netns,
    state: PathBuf,
    pins: PathBuf,
}

fn host(tag: &str) -> Host {
    let ns = Netns::new(tag).expect("namespace");
    for cmd in [
        "link add eth0 type veth peer name eth1",
        "link set lo up",
        "link set eth0 up",
        "link set eth1 up",
        "addr add 198.51.100.140/25 dev eth0",
        "-6 addr add 2001:db8:2::140/64 dev eth0 nodad",
    ] {
        netns::ip(&ns.name, cmd).expect(cmd);
    }
    let state = std::env::temp_dir().join(format!("{}-state.json", ns.name));
    Host {
        ns,
        state,
        pins: unique_pin_dir("rs"),
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.state);
        let _ = std::fs::remove_dir_all(&self.pins);
    }
}

/// Everything `up` may touch, as text.
fn snapshot(h: &Host) -> String {
    let n = &h.ns.name;
    let mut out = String::new();
    for args in [
        "-j addr",
        "route show table all",
        "-6 route show table all",
        "-d link show eth0",
    ] {
        let o = netns::ip(n, args).expect(args);
        out += &String::from_utf8_lossy(&o.stdout);
    }
    for key in [
        "net.ipv4.conf.all.arp_ignore",
        "net.ipv4.conf.all.arp_announce",
        "net.ipv4.conf.eth0.arp_ignore",
        "net.ipv4.conf.eth0.arp_announce",
        "net.ipv4.conf.all.rp_filter",
        "net.ipv4.conf.eth0.rp_filter",
    ] {
        let o = netns::exec(n, &["sysctl", key]).expect(key);
        out += &String::from_utf8_lossy(&o.stdout);
    }
    out += &format!("pins exist: {}\n", h.pins.exists());
    out
}

fn lb(h: &Host, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(lab::bin("LB_BIN", "lb").unwrap());
    cmd.arg("realserver")
        .args(args)
        .arg("--state")
        .arg(&h.state);
    netns::enter(&mut cmd, &h.ns.name).unwrap();
    cmd.output().unwrap()
}

fn up(h: &Host, mode: &str, extra: &[&str]) -> std::process::Output {
    let pins = h.pins.to_str().unwrap().to_string();
    let mut args = vec![
        "up",
        "--vip",
        "203.0.113.10",
        "--vip",
        "2001:db8:f::10",
        "--mode",
        mode,
        "--interface",
        "eth0",
        "--pin-dir",
        &pins,
    ];
    args.extend_from_slice(extra);
    lb(h, &args)
}

fn ok(o: &std::process::Output, what: &str) {
    assert!(
        o.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn up_then_down_leaves_the_host_as_before_in_every_mode() {
    if !require::root("up_then_down_leaves_the_host_as_before_in_every_mode") {
        return;
    }
    for mode in ["dr", "ipip", "gue"] {
        let h = host(mode);
        let before = snapshot(&h);
        ok(&up(&h, mode, &[]), "up");
        let once = snapshot(&h);
        ok(&up(&h, mode, &[]), "up again");
        assert_eq!(snapshot(&h), once, "{mode}: a second up changes nothing");
        assert!(
            once.contains("203.0.113.10") && once.contains("2001:db8:f::10"),
            "{mode}: VIPs on lo"
        );
        assert!(
            once.contains("net.ipv4.conf.all.arp_ignore = 1"),
            "{mode}: arp_ignore"
        );
        assert!(
            once.contains("net.ipv4.conf.all.arp_announce = 2"),
            "{mode}: arp_announce"
        );
        assert_eq!(
            once.contains("lb_decap"),
            mode != "dr",
            "{mode}: the decap program:\n{once}"
        );
        let status = lb(&h, &["status"]);
        ok(&status, "status");
        assert!(String::from_utf8_lossy(&status.stdout).contains(&format!("mode {mode}")));
        ok(&lb(&h, &["down"]), "down");
        assert_eq!(
            snapshot(&h),
            before,
            "{mode}: down restores the host exactly"
        );
        assert!(!h.state.exists(), "{mode}: the state file is gone");
        ok(&lb(&h, &["down"]), "down again is harmless");
    }
}

#[test]
fn what_the_operator_had_set_survives_down() {
    if !require::root("what_the_operator_had_set_survives_down") {
        return;
    }
    let h = host("pre");
    netns::sysctl(&h.ns.name, "net.ipv4.conf.all.arp_ignore", "1").unwrap();
    netns::ip(&h.ns.name, "addr add 203.0.113.10/32 dev lo").unwrap();
    let before = snapshot(&h);
    ok(&up(&h, "ipip", &[]), "up");
    ok(&lb(&h, &["down"]), "down");
    assert_eq!(
        snapshot(&h),
        before,
        "the VIP and arp_ignore were there before and stay"
    );
}

#[test]
fn kernel_tunnel_without_the_modules_is_refused_before_any_change() {
    if !require::root("kernel_tunnel_without_the_modules_is_refused_before_any_change") {
        return;
    }
    let vips = [
        "203.0.113.10".parse().unwrap(),
        "2001:db8:f::10".parse().unwrap(),
    ];
    let missing = lb_user::realserver::kernel::missing(lb_user::realserver::Mode::Gue, &vips);
    let h = host("kt");
    let before = snapshot(&h);
    let o = up(&h, "gue", &["--kernel-tunnel"]);
    match missing {
        Some(m) => {
            assert!(
                !o.status.success(),
                "up --kernel-tunnel must fail without {m}"
            );
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(err.contains(m) && err.contains("--kernel-tunnel"), "{err}");
            assert_eq!(snapshot(&h), before, "nothing changed");
            assert!(!h.state.exists(), "no state recorded");
            eprintln!(
                "SKIP the --kernel-tunnel decap path: this kernel has no {m} module (the refusal was tested)"
            );
        }
        None => {
            ok(&o, "up --kernel-tunnel");
            let after =
                String::from_utf8_lossy(&netns::ip(&h.ns.name, "link show tunl0").unwrap().stdout)
                    .to_string();
            assert!(after.contains("UP"), "tunl0 up: {after}");
            ok(&lb(&h, &["down"]), "down");
            assert_eq!(snapshot(&h), before, "down restores the host exactly");
        }
    }
}
