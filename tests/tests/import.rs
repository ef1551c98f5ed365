//! `lb import-keepalived`: every sample keepalived ships converts into a
//! config `lb check` accepts or is refused naming each line it cannot map;
//! a realistic file converts to exactly the expected lb.toml; an imported
//! DR + VRRP config serves the VIP in the lab and fails over.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use lb_tests::{
    http,
    lab::{self, Lab},
    netns, require,
    vrrp_lab::{two_balancers, wait_state},
};

fn lb() -> PathBuf {
    lab::bin("LB_BIN", "lb").unwrap()
}

fn import(file: &Path, router_id: Option<&str>) -> Output {
    let mut c = Command::new(lb());
    c.arg("import-keepalived").arg(file);
    if let Some(r) = router_id {
        c.args(["--router-id", r]);
    }
    c.output().unwrap()
}

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/keepalived")
        .join(name)
}

#[test]
fn every_shipped_sample_converts_or_names_what_it_cannot() {
    let name = "every_shipped_sample_converts_or_names_what_it_cannot";
    let dir = Path::new("/usr/share/doc/keepalived/samples");
    if !dir.is_dir() {
        let why = "no keepalived samples in /usr/share/doc/keepalived/samples (the keepalived package, which cargo xtask test installs, ships them)";
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true"),
            "{name}: {why}"
        );
        eprintln!("SKIP {name}: {why}");
        return;
    }
    let mut samples: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("keepalived.conf"))
        })
        .collect();
    samples.sort();
    assert!(samples.len() >= 20, "{samples:?}");
    let (mut converted, mut refused) = (0, 0);
    for s in &samples {
        let out = import(s, None);
        let report = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            converted += 1;
            let tmp = std::env::temp_dir().join(format!("lb-import-{}.toml", std::process::id()));
            std::fs::write(&tmp, &out.stdout).unwrap();
            let check = Command::new(lb())
                .args(["check", "-c"])
                .arg(&tmp)
                .output()
                .unwrap();
            let _ = std::fs::remove_file(&tmp);
            assert!(
                check.status.success(),
                "{}: imported, but lb check refuses it: {}",
                s.display(),
                String::from_utf8_lossy(&check.stderr)
            );
        } else {
            refused += 1;
            let essential: Vec<&str> = report
                .lines()
                .filter(|l| l.ends_with("(cannot be imported)"))
                .collect();
            assert!(
                !essential.is_empty(),
                "{}: refused without naming a line:\n{report}",
                s.display()
            );
            for l in essential {
                let file = s.display().to_string();
                let line = l
                    .strip_prefix(&format!("{file}:"))
                    .unwrap_or_else(|| panic!("{l}"));
                let n: usize = line.split(':').next().unwrap().parse().unwrap();
                assert!(n > 0, "{l}");
            }
        }
    }
    println!("keepalived samples: {converted} converted, {refused} refused with their lines named");
}

#[test]
fn a_realistic_file_converts_exactly() {
    let out = import(&data("dr.conf"), Some("lb1"));
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{report}");
    let want = r#"# Imported from keepalived.conf by `lb import-keepalived`; read the report it printed.
[agent]
interface = "eth0"

[[vrrp]]
name = "VI_1"
interface = "eth0"
vrid = 51
priority = 150
notify = ["/usr/local/bin/notify.sh", "--all"]
version = 3
advert_interval = "100ms"
vips = ["203.0.113.10/32"]
vips_excluded = ["2001:db8:f::10/128"]
[[vrrp.track_scripts]]
command = ["/usr/bin/pgrep", "-x", "nginx"]
interval = "2s"
timeout = "2s"
weight = 20

[[service]]
vip = "203.0.113.10"
port = 53
protocol = "udp"
scheduler = "wrr"
forward = "dr"
backends = [
  { address = "198.51.100.13", weight = 1, check = { kind = "script", command = ["/usr/lib/nagios/plugins/check_dns", "-H", "example.org", "-s", "198.51.100.13"], interval = "5s", timeout = "3s", retries = 2, retry_delay = "1s" } },
]

[[service]]
vip = "203.0.113.10"
port = 80
protocol = "tcp"
scheduler = "least-conn"
forward = "dr"
hash = "src-ip"
backends = [
  { address = "198.51.100.11", weight = 1, check = { kind = "http", path = "/healthz", expect_status = 200, interval = "2s", timeout = "2s", retries = 3, retry_delay = "1s" } },
  { address = "198.51.100.12", weight = 2, check = { kind = "http", path = "/healthz", interval = "2s", timeout = "2s", retries = 2, retry_delay = "1s" } },
]
"#;
    assert_eq!(String::from_utf8_lossy(&out.stdout), want);
    // keepalived's semantics, each reported at its line.
    for (at, what) in [
        ("dr.conf:17", "state MASTER"),
        ("dr.conf:21", "router id \"lb2\" left out"),
        ("dr.conf:25", "auth_pass cut to 8 characters"),
        ("dr.conf:23", "VRRPv3 has none"),
        ("dr.conf:13", "vrrp_script fall"),
        ("web.conf:6", "persistence_timeout"),
        ("web.conf:15", "cut to 2s"),
        ("web.conf:25", "digest"),
        ("dns.conf:10", "misc_dynamic"),
    ] {
        assert!(
            report.lines().any(|l| l.contains(at) && l.contains(what)),
            "no {at}: {what} in:\n{report}"
        );
    }
    // A block defined twice is refused, both places named.
    let dir = std::env::temp_dir().join(format!("lb-import-dup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dup = dir.join("keepalived.conf");
    std::fs::write(
        &dup,
        "vrrp_instance A {\n virtual_ipaddress {\n  192.0.2.1\n }\n}\nvrrp_instance A {\n virtual_ipaddress {\n  192.0.2.2\n }\n}\n",
    )
    .unwrap();
    let out = import(&dup, None);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("keepalived.conf:6: vrrp_instance A is defined again (first at"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The other node's router id keeps its own priority.
    let lb2 = import(&data("dr.conf"), Some("lb2"));
    assert!(String::from_utf8_lossy(&lb2.stdout).contains("priority = 100"));
    // NAT (keepalived's default) becomes forward = "nat", its line named.
    let nat = import(
        Path::new("/usr/share/doc/keepalived/samples/keepalived.conf.sample"),
        None,
    );
    if Path::new("/usr/share/doc/keepalived/samples/keepalived.conf.sample").exists() {
        assert!(nat.status.success());
        assert!(String::from_utf8_lossy(&nat.stdout).contains("forward = \"nat\""));
        assert!(
            String::from_utf8_lossy(&nat.stderr)
                .contains("keepalived.conf.sample:29: lb_kind NAT: forward = \"nat\"")
        );
    }
}

#[test]
fn a_unicast_vrrp_pair_converts_with_keepalived_defaults() {
    let out = import(&data("pair/keepalived.conf"), None);
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{report}");
    // Version 2 (keepalived's default), advert_int 1.4 rounded to 1 s, the
    // interface from the instance, the excluded VIP kept apart.
    let want = r#"# Imported from keepalived.conf by `lb import-keepalived`; read the report it printed.
[agent]
interface = "eth1"

[[vrrp]]
name = "VI_9"
preempt = false
interface = "eth1"
vrid = 9
priority = 120
garp_refresh = "1m"
version = 2
advert_interval = "1s"
auth_pass = "s3cret"
vips = ["203.0.113.20/24"]
vips_excluded = ["203.0.113.21"]
unicast_peers = ["198.51.100.5"]
track_interfaces = ["eth0"]
"#;
    assert_eq!(String::from_utf8_lossy(&out.stdout), want);
    for (line, what) in [
        (3, "state BACKUP"),
        (9, "unicast_src_ip"),
        (27, "garp_master_delay: no equivalent"),
        (28, "notify_master: no equivalent"),
    ] {
        assert!(
            report
                .lines()
                .any(|l| l.contains(&format!("keepalived.conf:{line}: {what}"))),
            "no line {line}: {what} in:\n{report}"
        );
    }
    assert_eq!(report.lines().count(), 4, "{report}");
}

/// keepalived.conf for one lab node: a DR web service over the lab's
/// backends with HTTP_GET checks, and the VRRP instance moving the VIP.
const LAB_CONF: &str = r#"global_defs {
    vrrp_version 3
}
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 51
@lb1 priority 150
@lb2 priority 100
    advert_int 0.2
    virtual_ipaddress {
        203.0.113.10/32
    }
}
virtual_server 203.0.113.10 80 {
    delay_loop 1
    lb_algo wrr
    lb_kind DR
    protocol TCP
    real_server 198.51.100.11 80 {
        weight 1
        HTTP_GET {
            url {
                path /healthz
                status_code 200
            }
            connect_timeout 1
        }
    }
    real_server 198.51.100.12 80 {
        weight 1
        HTTP_GET {
            url {
                path /healthz
                status_code 200
            }
            connect_timeout 1
        }
    }
    real_server 198.51.100.13 80 {
        weight 2
        TCP_CHECK {
            connect_timeout 1
        }
    }
}
"#;

fn answered(l: &Lab) -> Result<String, String> {
    let vip = lab::vip();
    http::get_until(&l.ns("c"), vip, Duration::from_secs(10), |_| true)
}

#[test]
fn an_imported_keepalived_conf_serves_the_vip_and_fails_over() {
    let name = "an_imported_keepalived_conf_serves_the_vip_and_fails_over";
    if !require::lab(name, &[]) {
        return;
    }
    let mut l = two_balancers();
    let conf = l.dir.join("keepalived.conf");
    std::fs::write(&conf, LAB_CONF).unwrap();
    for role in ["lb1", "lb2"] {
        let out = import(&conf, Some(role));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The lab gives each node its own [agent] (pins, sizes).
        let imported = String::from_utf8(out.stdout).unwrap();
        let rest = imported
            .split_once("interface = \"eth0\"\n")
            .map(|(_, r)| r.to_string())
            .unwrap();
        let cfg = l.write_config(role, &rest).unwrap();
        l.start_agent(role, &lb(), &cfg).unwrap();
        if role == "lb1" {
            wait_state(&l, "lb1", "MASTER", Duration::from_secs(10));
        }
    }
    wait_state(&l, "lb2", "BACKUP", Duration::from_secs(10));
    let first = answered(&l);
    assert!(
        first.as_deref().is_ok_and(|b| b.starts_with('b')),
        "{first:?}\n{}",
        l.log("lb1")
    );
    // lb1 fails: its agent dies and its link goes down; lb2 takes the VIP.
    l.signal("lb1", libc::SIGKILL).unwrap();
    assert!(l.wait_exit("lb1", Duration::from_secs(5)));
    netns::ip(&l.ns("lb1"), "link set eth0 down").unwrap();
    wait_state(&l, "lb2", "MASTER", Duration::from_secs(5));
    let after = answered(&l);
    assert!(
        after.as_deref().is_ok_and(|b| b.starts_with('b')),
        "{after:?}\n{}",
        l.log("lb2")
    );
}

#[test]
fn an_lvs_tun_service_becomes_an_ipip_service_with_this_balancers_source() {
    // Without an address of this node in the file, the source is asked for.
    let out = import(&data("tun/keepalived.conf"), None);
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        report.contains(
            "keepalived.conf:5: lb_kind TUN: the outer source is this balancer's address"
        ) && report.contains("--tunnel-source"),
        "{report}"
    );
    let out = Command::new(lb())
        .arg("import-keepalived")
        .arg(data("tun/keepalived.conf"))
        .args(["--tunnel-source", "198.51.100.5"])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{report}");
    assert!(
        report.contains("keepalived.conf:5: lb_kind TUN: forward = \"ipip\""),
        "{report}"
    );
    let toml = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(toml.contains("forward = \"ipip\""), "{toml}");
    assert!(
        toml.contains("tunnel_source = [\"198.51.100.5\"]"),
        "{toml}"
    );
    // The importer checks its own output; lb check agrees.
    let dir = std::env::temp_dir().join(format!("lb-import-tun-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("lb.toml");
    std::fs::write(&cfg, &toml).unwrap();
    let check = Command::new(lb())
        .arg("check")
        .arg("-c")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// LVS-NAT as keepalived users write it, in the NAT lab's addresses: the
/// VIP outside, the real servers' gateway inside, one sync group, the real
/// servers on port 8080.
const NAT_CONF: &str = r#"
vrrp_sync_group NAT_PAIR {
    group {
        VI_OUT
        VI_IN
    }
}

vrrp_instance VI_OUT {
    state MASTER
    interface eth0
    virtual_router_id 51
    priority 150
    advert_int 1
    virtual_ipaddress {
        203.0.113.10/32
    }
}

vrrp_instance VI_IN {
    state MASTER
    interface eth1
    virtual_router_id 52
    priority 150
    advert_int 1
    virtual_ipaddress {
        198.51.100.129/25
    }
}

virtual_server 203.0.113.10 80 {
    delay_loop 1
    lb_algo wrr
    lb_kind NAT
    protocol TCP
    real_server 198.51.100.139 8080 {
        weight 1
        TCP_CHECK {
            connect_timeout 1
        }
    }
    real_server 198.51.100.140 8080 {
        weight 1
        TCP_CHECK {
            connect_timeout 1
        }
    }
    real_server 198.51.100.141 8080 {
        weight 2
        TCP_CHECK {
            connect_timeout 1
        }
    }
}
"#;

#[test]
fn an_imported_lvs_nat_conf_serves_through_the_nat() {
    let name = "an_imported_lvs_nat_conf_serves_through_the_nat";
    if !require::lab(name, &[]) {
        return;
    }
    let spec = lab::LabSpec {
        vrrp: true,
        nat: true,
        ..lab::LabSpec::default()
    };
    let mut l = Lab::up(spec, &lab::bin("LAB_HTTP_BIN", "lab-http").unwrap(), false).unwrap();
    let conf = l.dir.join("keepalived.conf");
    std::fs::write(&conf, NAT_CONF).unwrap();
    let out = import(&conf, None);
    let report = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{report}");
    let imported = String::from_utf8(out.stdout).unwrap();
    for want in [
        "backend_interface = \"eth1\"",
        "forward = \"nat\"",
        "port = 8080",
        "[[vrrp_sync_group]]\nname = \"NAT_PAIR\"\ninstances = [\"VI_OUT\", \"VI_IN\"]",
    ] {
        assert!(
            imported.contains(want),
            "{want:?} missing from:\n{imported}"
        );
    }
    assert!(
        report.contains("lb_kind NAT: forward = \"nat\""),
        "{report}"
    );
    // The lab gives the node its own [agent] (pins, sizes); the rest runs as imported.
    let rest = imported
        .split_once("interface = \"eth0\"\n")
        .map(|(_, r)| r.to_string())
        .unwrap();
    let cfg = l.write_config("lb1", &rest).unwrap();
    l.start_agent("lb1", &lb(), &cfg).unwrap();
    wait_state(&l, "lb1", "MASTER", Duration::from_secs(10));
    let first = answered(&l);
    assert!(
        first.as_deref().is_ok_and(|b| b.starts_with('b')),
        "{first:?}\n{}",
        l.log("lb1")
    );
    // Every backend answers in turn (wrr), through the NAT.
    let names: std::collections::BTreeSet<String> = (0..12)
        .filter_map(|_| {
            http::get_until(&l.ns("c"), lab::vip(), Duration::from_secs(5), |_| true).ok()
        })
        .collect();
    assert_eq!(names.len(), 3, "all three backends answered: {names:?}");
}
