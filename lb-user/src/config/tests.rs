use std::path::Path;

use std::time::Duration;

use super::*;

const GOOD: &str = r#"
[agent]
interface = "eth0"

[[service]]
vip = "203.0.113.10"
port = 80
protocol = "tcp"
backends = [
  { address = "198.51.100.11", weight = 1 },
  { address = "198.51.100.12", weight = 2 },
]

[[service]]
vip = "2001:db8:f::10"
port = 53
protocol = "udp"
backends = [ { address = "2001:db8:1::11" } ]
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("lb.toml"), text)
}

/// The error for `text`, checked to point at `line:col` and to carry a hint.
fn err_at(text: &str, line: usize, col: usize, needle: &str) -> ConfigError {
    let e = parse(text).expect_err("config should be rejected");
    assert_eq!((e.line, e.column), (line, col), "wrong position for: {e}");
    assert!(
        e.message.contains(needle),
        "message {:?} lacks {needle:?}",
        e.message
    );
    assert!(!e.hint.is_empty());
    assert!(
        e.to_string()
            .starts_with(&format!("lb.toml:{line}:{col}: error: ")),
        "{e}"
    );
    e
}

#[test]
fn good_config_parses_with_defaults() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.agent.interface, "eth0");
    assert_eq!(c.agent.table_size, 65537);
    assert_eq!(c.agent.flow_table_size, 1_048_576);
    assert_eq!(c.agent.pin_dir, Path::new("/sys/fs/bpf/lb"));
    assert_eq!(c.services.len(), 2);
    assert_eq!(c.services[0].name(), "203.0.113.10:80/tcp");
    assert_eq!(c.services[0].backends[1].weight, 2);
    assert_eq!(c.services[1].proto, PROTO_UDP);
    assert_eq!(c.services[1].backends[0].weight, 1);
    assert_eq!(c.services[0].scheduler, lb_common::Scheduler::Maglev);
}

#[test]
fn syntax_error_points_at_the_bad_token() {
    let e = err_at("[agent]\ninterface = \"eth0\nport = 1\n", 2, 18, "");
    assert!(e.hint.contains("syntax"), "{e}");
}

#[test]
fn unknown_key_is_named() {
    let text = "[agent]\ninterface = \"eth0\"\n\n[[service]]\nvip = \"203.0.113.10\"\nport = 80\nschedular = \"maglev\"\n";
    let e = err_at(text, 7, 1, "unknown field `schedular`");
    assert!(e.to_string().contains("^^^^^^^^^"), "{e}");
}

#[test]
fn bad_address_is_pointed_at() {
    let text = GOOD.replace("198.51.100.12", "198.51.100.x");
    err_at(&text, 11, 15, "bad backend address \"198.51.100.x\"");
    let text = GOOD.replace("vip = \"203.0.113.10\"", "vip = \"203.0.113.10/32\"");
    err_at(&text, 6, 7, "bad vip address");
    let text = GOOD.replace("2001:db8:1::11", "198.51.100.11");
    err_at(&text, 18, 26, "not of the VIP's address family");
}

#[test]
fn duplicate_service_names_the_first() {
    let text = format!("{GOOD}\n[[service]]\nvip = \"203.0.113.10\"\nport = 80\n");
    let e = err_at(
        &text,
        20,
        1,
        "duplicate service 203.0.113.10:80/tcp (first defined on line 5)",
    );
    assert!(e.hint.contains("merge"));
    let text = GOOD.replace("198.51.100.12", "198.51.100.11");
    err_at(&text, 11, 3, "listed twice");
}

#[test]
fn weight_out_of_range() {
    let text = GOOD.replace("weight = 2", "weight = 70000");
    let e = err_at(&text, 11, 41, "weight 70000 is out of range");
    assert!(e.hint.contains("65535"));
    err_at(
        &GOOD.replace("weight = 2", "weight = -1"),
        11,
        41,
        "out of range",
    );
}

#[test]
fn other_values_are_checked() {
    err_at(
        &GOOD.replace("protocol = \"udp\"", "protocol = \"sctp\""),
        17,
        12,
        "unknown protocol",
    );
    err_at(
        &GOOD.replace("port = 80", "port = 65536"),
        7,
        8,
        "port 65536",
    );
    err_at(
        &GOOD.replace(
            "protocol = \"tcp\"",
            "protocol = \"tcp\"\nscheduler = \"fifo\"",
        ),
        9,
        13,
        "unknown scheduler",
    );
    let e = err_at(
        &GOOD.replace(
            "interface = \"eth0\"",
            "interface = \"eth0\"\ntable_size = 65536",
        ),
        4,
        14,
        "not prime",
    );
    assert!(e.hint.contains("65537"));
    let e = parse("[[service]]\nvip = \"203.0.113.10\"\nport = 80\n").unwrap_err();
    assert!(e.message.contains("[agent]"), "{e}");
    let e = parse("[agent]\n").unwrap_err();
    assert_eq!(e.line, 1);
    assert!(e.message.contains("interface"));
}

/// GOOD's first service with `check` (a TOML inline table body) and one
/// backend override; the check line is line 9.
fn with_check(check: &str, override_: &str) -> String {
    format!(
        "[agent]\ninterface = \"eth0\"\n\n[[service]]\nvip = \"203.0.113.10\"\nport = 80\nwarmup = \"30s\"\nwarmup_step = \"500ms\"\ncheck = {{ {check} }}\nbackends = [\n  {{ address = \"198.51.100.11\" }},\n  {{ address = \"198.51.100.12\", check = {{ {override_} }} }},\n]\n"
    )
}

#[test]
fn checks_parse_merge_and_default() {
    let c = parse(&with_check(
        r#"kind = "http", path = "/healthz", expect_status = [200, 204], expect_body = "ok", interval = "1s", timeout = "300ms", retries = 2, retry_delay = "200ms", rise = 3"#,
        r#"expect_status = 503, initial = "up""#,
    ))
    .unwrap();
    let s = &c.services[0];
    assert_eq!(s.warmup, Duration::from_secs(30));
    assert_eq!(s.warmup_step, Duration::from_millis(500));
    let b1 = &s.backends[0].check;
    let Probe::Http(h) = &b1.probe else {
        panic!("{b1:?}")
    };
    assert_eq!(h.path, "/healthz");
    assert_eq!(h.expect_status, vec![200, 204]);
    assert_eq!(h.expect_body.as_deref(), Some("ok"));
    assert!(!h.tls && h.tls_verify);
    assert_eq!(
        (b1.interval, b1.timeout, b1.retries, b1.retry_delay, b1.rise),
        (
            Duration::from_secs(1),
            Duration::from_millis(300),
            2,
            Duration::from_millis(200),
            3
        )
    );
    assert_eq!(b1.initial, Initial::Down);
    // The override changes its keys and inherits the rest.
    let b2 = &s.backends[1].check;
    let Probe::Http(h2) = &b2.probe else {
        panic!("{b2:?}")
    };
    assert_eq!(h2.expect_status, vec![503]);
    assert_eq!(h2.path, "/healthz");
    assert_eq!(b2.initial, Initial::Up);
    assert_eq!(b2.retries, 2);

    // Another kind keeps only the timing.
    let c = parse(&with_check(
        r#"kind = "http", path = "/healthz", interval = "1s", timeout = "300ms""#,
        r#"kind = "script", command = ["/bin/true"]"#,
    ))
    .unwrap();
    let b2 = &c.services[0].backends[1].check;
    assert_eq!(
        b2.probe,
        Probe::Script {
            command: vec!["/bin/true".into()]
        }
    );
    assert_eq!(b2.timeout, Duration::from_millis(300));

    // No check at all: always up, from the start.
    let c = parse(GOOD).unwrap();
    assert_eq!(c.services[0].backends[0].check, Check::default());
    assert_eq!(c.services[0].warmup, Duration::ZERO);
}

#[test]
fn check_errors_point_at_the_value() {
    let e = err_at(
        &with_check(r#"kind = "ping""#, ""),
        9,
        18,
        "unknown check kind \"ping\"",
    );
    assert!(
        e.hint.contains("\"http\", \"tcp\", \"script\", \"none\""),
        "{e}"
    );
    err_at(
        &with_check(r#"kind = "tcp", interval = "0s""#, ""),
        9,
        36,
        "interval is zero",
    );
    let e = err_at(
        &with_check(r#"kind = "tcp", interval = "1s", timeout = "3s""#, ""),
        9,
        52,
        "timeout 3s is longer than its interval 1s",
    );
    assert!(e.hint.contains("lower timeout"), "{e}");
    err_at(
        &with_check(r#"kind = "http", path = """#, ""),
        9,
        33,
        "empty check path",
    );
    err_at(
        &with_check(r#"kind = "http", expect_status = 600"#, ""),
        9,
        42,
        "status 600 is outside 100-599",
    );
    err_at(
        &with_check(r#"kind = "http", expect_status = [200, 99]"#, ""),
        9,
        42,
        "status 99 is outside 100-599",
    );
    err_at(
        &with_check(r#"kind = "tcp", interval = "soon""#, ""),
        9,
        36,
        "bad interval \"soon\"",
    );
    err_at(
        &with_check(r#"kind = "tcp", path = "/""#, ""),
        9,
        32,
        "path does not apply to a tcp check",
    );
    err_at(
        &with_check(r#"kind = "script""#, ""),
        9,
        18,
        "needs a command",
    );
    err_at(
        &with_check(r#"kind = "tcp", retries = 0"#, ""),
        9,
        35,
        "retries 0 is out of range",
    );
    // An override is validated too, and pointed at.
    err_at(
        &with_check(r#"kind = "http""#, r#"expect_status = 42"#),
        12,
        58,
        "status 42",
    );
    err_at(
        &with_check(r#"kind = "tcp""#, r#"port = 0"#),
        12,
        49,
        "check port 0",
    );
    err_at(
        &with_check(r#"kind = "tcp""#, "")
            .replace("warmup_step = \"500ms\"", "warmup_step = \"0s\""),
        8,
        15,
        "warmup_step is zero",
    );
}

#[test]
fn scheduler_errors_point_at_the_value() {
    let base = "[agent]\ninterface = \"eth0\"\n\n[[service]]\nvip = \"203.0.113.10\"\nport = 80\n";
    let e = err_at(
        &format!("{base}scheduler = \"lc\"\n"),
        7,
        13,
        "unknown scheduler \"lc\"",
    );
    assert!(e.hint.contains("\"ring\""), "{e}");
    err_at(
        &format!("{base}scheduler = \"ring\"\nvirtual_nodes = 0\n"),
        8,
        17,
        "virtual_nodes 0 is out of range",
    );
    err_at(
        &format!("{base}virtual_nodes = 40\n"),
        7,
        17,
        "virtual_nodes does not apply",
    );
    let e = err_at(
        &format!("{base}hash = \"dst-ip\"\n"),
        7,
        8,
        "unknown hash \"dst-ip\"",
    );
    assert!(e.hint.contains("src-ip"), "{e}");
    let c = parse(&format!("{base}scheduler = \"ring\"\nvirtual_nodes = 40\n")).unwrap();
    assert_eq!(c.services[0].virtual_nodes, 40);
    assert_eq!(c.services[0].scheduler, lb_common::Scheduler::Ring);
    for s in lb_common::Scheduler::ALL {
        let c = parse(&format!("{base}scheduler = \"{}\"\n", s.name())).unwrap();
        assert_eq!(c.services[0].scheduler, s);
    }
}

#[test]
fn api_address_is_parsed_or_pointed_at() {
    let c = parse(&GOOD.replace(
        "interface = \"eth0\"",
        "interface = \"eth0\"\napi = \"[::1]:9100\"",
    ))
    .unwrap();
    assert_eq!(c.agent.api, Some("[::1]:9100".parse().unwrap()));
    assert_eq!(parse(GOOD).unwrap().agent.api, None);
    let e = err_at(
        &GOOD.replace(
            "interface = \"eth0\"",
            "interface = \"eth0\"\napi = \"localhost\"",
        ),
        4,
        7,
        "bad api address",
    );
    assert!(e.hint.contains("127.0.0.1:9100"), "{e}");
}

const TUNNEL: &str = r#"
[agent]
interface = "eth0"
tunnel_source = ["198.51.100.5", "2001:db8:1::5"]

[[service]]
vip = "203.0.113.10"
port = 80
forward = "ipip"
backends = [ { address = "192.0.2.11" }, { address = "2001:db8:2::12" } ]

[[service]]
vip = "2001:db8:f::10"
port = 80
forward = "gue"
check = { kind = "tcp", via = "dataplane" }
backends = [ { address = "2001:db8:2::11" } ]
"#;

#[test]
fn tunnel_services_parse_with_their_sources() {
    let c = parse(TUNNEL).unwrap();
    assert_eq!(c.services[0].forward, Forward::Ipip);
    assert_eq!(c.services[1].forward, Forward::Gue);
    assert_eq!(c.services[1].backends[0].check.via, Via::Dataplane);
    assert_eq!(c.services[0].backends[0].check.via, Via::Direct);
    let t = c.agent.tunnel.record();
    assert_eq!(t.src4, [198, 51, 100, 5]);
    assert_eq!(t.flags, lb_common::TUNNEL_V4 | lb_common::TUNNEL_V6);
    assert_eq!((t.hash_mask4, t.hash_mask6), (0, 0));
    assert_eq!(t.gue_port, lb_common::DEFAULT_GUE_PORT);
    // One address is fine as a plain string; hashed sources are prefixes.
    let one = TUNNEL.replace(
        "tunnel_source = [\"198.51.100.5\", \"2001:db8:1::5\"]",
        "tunnel_source = \"198.51.100.5\"\ngue_port = 7000",
    );
    let e = parse(&one).expect_err("IPv6 backends need an IPv6 source");
    assert!(e.message.contains("needs an IPv6 tunnel_source"), "{e}");
    let hashed = TUNNEL.replace(
        "tunnel_source = [\"198.51.100.5\", \"2001:db8:1::5\"]",
        "tunnel_source = [\"198.51.100.64/26\", \"2001:db8:1::/96\"]\ntunnel_source_hash = true",
    );
    let t = parse(&hashed).unwrap().agent.tunnel.record();
    assert_eq!((t.hash_mask4, t.hash_mask6), (0x3f, u32::MAX));
}

#[test]
fn tunnel_mistakes_point_at_their_key() {
    // A tunnel service without a source of its backends' family.
    let no_source = TUNNEL.replace(
        "tunnel_source = [\"198.51.100.5\", \"2001:db8:1::5\"]\n",
        "",
    );
    err_at(&no_source, 8, 11, "needs an IPv4 tunnel_source");
    // A prefix without hashing, an address with it, two of one family, junk.
    let prefix = TUNNEL.replace("\"198.51.100.5\"", "\"198.51.100.0/24\"");
    err_at(&prefix, 4, 17, "is a prefix, but tunnel_source_hash is off");
    let addr_hashed = TUNNEL.replace(
        "tunnel_source = [",
        "tunnel_source_hash = true\ntunnel_source = [",
    );
    err_at(&addr_hashed, 5, 17, "needs a prefix");
    let twice = TUNNEL.replace("\"2001:db8:1::5\"", "\"198.51.100.6\"");
    err_at(&twice, 4, 17, "a second tunnel_source of the same family");
    let junk = TUNNEL.replace("\"198.51.100.5\"", "\"eth0\"");
    err_at(&junk, 4, 17, "bad tunnel_source");
    let shape = TUNNEL.replace("[\"198.51.100.5\", \"2001:db8:1::5\"]", "5");
    err_at(&shape, 4, 17, "an address or a list of addresses");
    // An IPv6 VIP cannot be carried to an IPv4 backend; DR keeps families.
    let v6_to_v4 = TUNNEL.replace("address = \"2001:db8:2::11\"", "address = \"192.0.2.11\"");
    err_at(&v6_to_v4, 17, 26, "not of the VIP's address family");
    let dr_mixed = TUNNEL.replacen("forward = \"ipip\"", "forward = \"dr\"", 1);
    err_at(&dr_mixed, 10, 54, "not of the VIP's address family");
    // The FIB picks a tunnel's egress: no per-backend interface.
    let iface = TUNNEL.replace(
        "{ address = \"192.0.2.11\" }",
        "{ address = \"192.0.2.11\", interface = \"eth1\" }",
    );
    err_at(&iface, 10, 52, "interface does not apply");
    let port = TUNNEL
        .replace("forward = \"gue\"", "forward = \"gue\"\n")
        .replace("[agent]\n", "[agent]\ngue_port = 0\n");
    err_at(&port, 3, 12, "gue_port 0 is out of range");
}

#[test]
fn dataplane_checks_only_for_connections() {
    let script = TUNNEL.replace(
        "check = { kind = \"tcp\", via = \"dataplane\" }",
        "check = { kind = \"script\", command = [\"/bin/true\"], via = \"dataplane\" }",
    );
    err_at(&script, 16, 59, "does not apply to check kind \"script\"");
    let unknown = TUNNEL.replace("via = \"dataplane\"", "via = \"vip\"");
    err_at(&unknown, 16, 31, "unknown check via");
}

#[test]
fn a_dataplane_check_of_an_all_ports_service_needs_a_port() {
    let all = TUNNEL.replace(
        "port = 80\nforward = \"gue\"",
        "port = 0\nforward = \"gue\"",
    );
    err_at(
        &all,
        17,
        14,
        "goes to the VIP, but the service has every port",
    );
    let given = all.replace("via = \"dataplane\"", "via = \"dataplane\", port = 80");
    parse(&given).unwrap();
}

const NAT: &str = r#"
[agent]
interface = "eth0"
backend_interface = "eth1"
snat_addresses = ["198.51.100.129"]
snat_ports = "20000-20999"
nat_udp_timeout = "60s"

[[service]]
vip = "203.0.113.10"
port = 80
forward = "fullnat"
backends = [ { address = "198.51.100.140", port = 8080 } ]

[[service]]
vip = "203.0.113.10"
port = 53
protocol = "udp"
forward = "nat"
backends = [ { address = "198.51.100.141" } ]
"#;

#[test]
fn nat_config_parses() {
    let c = parse(NAT).unwrap();
    assert_eq!(c.agent.backend_interface.as_deref(), Some("eth1"));
    assert_eq!(c.agent.interfaces().collect::<Vec<_>>(), ["eth0", "eth1"]);
    assert_eq!(c.agent.nat.ports, (20000, 20999));
    assert_eq!(c.agent.nat.udp, Duration::from_secs(60));
    assert_eq!(c.agent.nat.tcp, Duration::from_secs(900));
    assert_eq!(c.services[0].forward, Forward::FullNat);
    assert_eq!(c.services[0].backends[0].port, Some(8080));
    assert_eq!(c.services[1].backends[0].port, None);
    let r = c.agent.nat.record();
    assert_eq!((r.n4, r.n6), (1, 0));
    assert_eq!(r.snat4[0], [198, 51, 100, 129]);
}

#[test]
fn nat_mistakes_are_pointed_at() {
    // A backend port on a service that does not translate.
    err_at(
        &GOOD.replace(
            "{ address = \"198.51.100.12\", weight = 2 }",
            "{ address = \"198.51.100.12\", port = 8080 }",
        ),
        11,
        39,
        "port does not apply",
    );
    // Full-NAT of a family without a source address.
    err_at(
        &NAT.replace(
            "snat_addresses = [\"198.51.100.129\"]",
            "snat_addresses = [\"2001:db8:2::1\"]",
        ),
        12,
        11,
        "needs an IPv4 address in snat_addresses",
    );
    err_at(
        &NAT.replace("20000-20999", "20999-20000"),
        6,
        14,
        "bad snat_ports",
    );
    err_at(
        &NAT.replace("\"60s\"", "\"100ms\""),
        7,
        19,
        "under a second",
    );
    err_at(
        &NAT.replace("port = 8080", "port = 70000"),
        13,
        51,
        "out of range",
    );
}

#[test]
fn sync_groups_name_their_instances() {
    let vrrp = r#"
[[vrrp]]
name = "VI_OUT"
vrid = 51
vips = ["203.0.113.10/32"]

[[vrrp]]
name = "VI_IN"
interface = "eth1"
vrid = 52
vips = ["198.51.100.129/25"]

[[vrrp_sync_group]]
name = "NAT_PAIR"
instances = ["VI_OUT", "VI_IN"]
"#;
    let c = parse(&format!("{GOOD}{vrrp}")).unwrap();
    assert!(
        c.vrrp
            .iter()
            .all(|v| v.sync_group.as_deref() == Some("NAT_PAIR"))
    );
    let unknown = format!("{GOOD}{}", vrrp.replace("\"VI_IN\"]", "\"VI_X\"]"));
    err_at(&unknown, 33, 24, "no [[vrrp]] named \"VI_X\"");
    let twice =
        format!("{GOOD}{vrrp}\n[[vrrp_sync_group]]\nname = \"OTHER\"\ninstances = [\"VI_IN\"]\n");
    err_at(&twice, 37, 14, "already in vrrp_sync_group");
}

#[test]
fn bgp_defaults_and_errors_point_at_the_value() {
    let c = parse(&format!("{GOOD}[bgp]\n")).unwrap();
    let b = c.bgp.expect("[bgp]");
    assert_eq!(b.device, "lb-bgp");
    assert_eq!(b.min_backends, 1);
    assert_eq!(b.grace, Duration::from_secs(2));
    assert_eq!(
        (b.drain_idle, b.drain_timeout),
        (Duration::from_secs(5), Duration::from_secs(300))
    );
    let at = GOOD.lines().count() + 2;
    err_at(
        &format!("{GOOD}[bgp]\ndevice = \"a-name-longer-than-15\"\n"),
        at,
        10,
        "bad device name",
    );
    err_at(
        &format!("{GOOD}[bgp]\nmin_backends = 0\n"),
        at,
        16,
        "min_backends 0",
    );
    err_at(
        &format!("{GOOD}[bgp]\ngrace = \"soon\"\n"),
        at,
        9,
        "bad grace",
    );
    let e = err_at(
        &format!("{GOOD}[bgp]\ndrain_idle = \"10m\"\n"),
        at,
        14,
        "drain_idle",
    );
    assert!(e.hint.contains("at most drain_timeout"), "{e}");
    err_at(
        "[agent]\ninterface = \"eth0\"\n[bgp]\n",
        3,
        1,
        "no [[service]]",
    );
}
