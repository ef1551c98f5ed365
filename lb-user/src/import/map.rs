//! keepalived's statements mapped to lb.toml, with keepalived's defaults
//! (not ours): VRRP version 2, `lb_algo wlc`, `lb_kind NAT`, `retry N`
//! meaning N + 1 attempts, `delay_loop` 60 s. Everything without an
//! equivalent is reported at its line, never dropped silently.

use std::{collections::HashMap, fmt::Write as _, time::Duration};

use super::grammar::{At, Node};

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Note {
    pub at: At,
    pub what: String,
    /// It changes what the balancer does (a service or instance could not
    /// be expressed at all): the import fails, naming every such line.
    pub essential: bool,
}

#[derive(Default)]
pub struct Out {
    /// Everything after the [agent] section.
    pub toml: String,
    /// [agent]: the clients' interface (the first instance's), the real
    /// servers' side for NAT, the outer sources of TUN services.
    pub interface: String,
    pub backend_interface: Option<String>,
    pub tunnel_source: Vec<std::net::IpAddr>,
    pub notes: Vec<Note>,
    /// Where a TUN service was mapped: [agent] needs a tunnel_source.
    pub tunnel: Option<At>,
    /// This node's addresses the file names (unicast_src_ip, mcast_src_ip).
    pub own: Vec<std::net::IpAddr>,
    /// Where the first NAT service was mapped: the backends' side matters.
    pub nat: Option<At>,
}

impl Out {
    /// The whole lb.toml: the [agent] section, then the rest.
    pub fn render(&self) -> String {
        let mut s = String::from(
            "# Imported from keepalived.conf by `lb import-keepalived`; read the report it printed.\n[agent]\n",
        );
        if !self.tunnel_source.is_empty() {
            let list: Vec<String> = self
                .tunnel_source
                .iter()
                .map(|a| format!("\"{a}\""))
                .collect();
            let _ = writeln!(s, "tunnel_source = [{}]", list.join(", "));
        }
        let _ = writeln!(s, "interface = {}", q(&self.interface));
        if let Some(b) = &self.backend_interface {
            let _ = writeln!(s, "backend_interface = {}", q(b));
        }
        s + &self.toml
    }

    pub fn note(&mut self, at: &At, what: impl Into<String>) {
        self.notes.push(Note {
            at: at.clone(),
            what: what.into(),
            essential: false,
        });
    }

    fn fail(&mut self, at: &At, what: impl Into<String>) {
        self.notes.push(Note {
            at: at.clone(),
            what: what.into(),
            essential: true,
        });
    }
}

/// A TOML string.
fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn child<'a>(n: &'a Node, key: &str) -> Option<&'a Node> {
    n.children.iter().find(|c| c.key == key)
}

/// keepalived reads times as (fractional) seconds.
fn seconds(s: &str) -> Option<Duration> {
    s.parse::<f64>()
        .ok()
        .filter(|x| x.is_finite() && *x >= 0.0)
        .map(Duration::from_secs_f64)
}

fn dur(d: Duration) -> String {
    q(&humantime::format_duration(d).to_string())
}

/// `script` as keepalived runs it without a shell: words, quotes grouping.
pub fn argv(script: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut quote, mut any) = (None, false);
    for c in script.chars() {
        match (quote, c) {
            (None, '"' | '\'') => {
                quote = Some(c);
                any = true;
            }
            (Some(q), c) if c == q => quote = None,
            (None, c) if c.is_whitespace() => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            (_, c) => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

/// Keys that concern keepalived's own operation only: one line per block.
const KEEPALIVED_ONLY: &[&str] = &[
    "router_id",
    "notification_email",
    "notification_email_from",
    "smtp_server",
    "smtp_connect_timeout",
    "smtp_alert",
    "enable_traps",
    "enable_snmp_keepalived",
    "script_user",
    "enable_script_security",
    "lvs_id",
    "vrrp_skip_check_adv_addr",
    "vrrp_strict",
    "vrrp_garp_interval",
    "vrrp_gna_interval",
    "max_auto_priority",
    "net_namespace",
    "dynamic_interfaces",
    "vrrp_iptables",
];

pub fn map(nodes: &[Node]) -> Out {
    let mut out = Out::default();
    let mut version = 2u8;
    let mut scripts: HashMap<String, &Node> = HashMap::new();
    let mut groups: HashMap<String, &Node> = HashMap::new();
    for n in nodes {
        match n.key.as_str() {
            "global_defs" => {
                let mut own = Vec::new();
                for c in &n.children {
                    match c.key.as_str() {
                        "vrrp_version" => version = c.arg().parse().unwrap_or(2),
                        k if KEEPALIVED_ONLY.contains(&k) => own.push(k.to_string()),
                        k => out.note(&c.at, format!("global_defs {k}: no equivalent, left out")),
                    }
                }
                if !own.is_empty() {
                    out.note(
                        &n.at,
                        format!(
                            "global_defs {}: keepalived's own operation, no equivalent",
                            own.join(", ")
                        ),
                    );
                }
            }
            "vrrp_script" => {
                scripts.insert(n.arg().to_string(), n);
            }
            "virtual_server_group" => {
                groups.insert(n.arg().to_string(), n);
            }
            _ => {}
        }
    }
    let first_if = nodes
        .iter()
        .filter(|n| n.key == "vrrp_instance")
        .find_map(|n| child(n, "interface"))
        .map(|c| c.arg().to_string());
    out.interface = first_if.clone().unwrap_or_else(|| "eth0".into());
    if first_if.is_none() {
        out.note(
            &nodes.first().map(|n| n.at.clone()).unwrap_or(At {
                file: Default::default(),
                line: 0,
            }),
            "no vrrp_instance names an interface: [agent] interface = \"eth0\"; set the one facing clients",
        );
    }
    // A second block of the same name: refused, both lines named.
    let mut seen: HashMap<(String, String), At> = HashMap::new();
    for n in nodes {
        if matches!(n.key.as_str(), "vrrp_instance" | "virtual_server") {
            let id = (n.key.clone(), n.args.join(" "));
            if let Some(first) = seen.get(&id) {
                out.fail(
                    &n.at,
                    format!("{} {} is defined again (first at {first})", n.key, id.1),
                );
                continue;
            }
            seen.insert(id, n.at.clone());
        }
        match n.key.as_str() {
            "global_defs" | "vrrp_script" | "virtual_server_group" => {}
            "vrrp_instance" => instance(&mut out, n, version, &scripts),
            "virtual_server" => virtual_server(&mut out, n, &groups),
            "vrrp_sync_group" => sync_group(&mut out, n),
            k => out.note(&n.at, format!("{k}: no equivalent, left out")),
        }
    }
    if let Some(at) = out.nat.clone() {
        nat_side(&mut out, nodes, &at);
    }
    out
}

/// `vrrp_sync_group NAME { group { A B } }`: the same group of ours.
fn sync_group(out: &mut Out, n: &Node) {
    let members: Vec<String> = child(n, "group")
        .map(|g| g.children.iter().map(|c| q(&c.key)).collect())
        .unwrap_or_default();
    if members.is_empty() {
        out.fail(
            &n.at,
            format!("vrrp_sync_group {}: no group {{ }} of instances", n.arg()),
        );
        return;
    }
    for c in n.children.iter().filter(|c| c.key != "group") {
        out.note(
            &c.at,
            format!("vrrp_sync_group {}: no equivalent, left out", c.key),
        );
    }
    let _ = write!(
        out.toml,
        "\n[[vrrp_sync_group]]\nname = {}\ninstances = [{}]\n",
        q(n.arg()),
        members.join(", ")
    );
}

/// NAT services: the real servers' replies come back through us. A VRRP
/// instance on another interface than the clients' is the real servers'
/// gateway (LVS-NAT's usual pair): the program runs there too.
fn nat_side(out: &mut Out, nodes: &[Node], at: &At) {
    let inside = nodes
        .iter()
        .filter(|n| n.key == "vrrp_instance")
        .filter_map(|n| child(n, "interface"))
        .map(|c| c.arg().to_string())
        .find(|i| *i != out.interface);
    match inside {
        Some(i) => {
            out.note(at, format!("lb_kind NAT: forward = \"nat\"; the real servers' gateway instance is on {i}: backend_interface = {}", q(&i)));
            out.backend_interface = Some(i);
        }
        None => out.note(
            at,
            "lb_kind NAT: forward = \"nat\"; the real servers' default route must be this balancer (on the clients' interface here); if they sit on another interface, set [agent] backend_interface",
        ),
    }
}

fn instance(out: &mut Out, n: &Node, default_version: u8, scripts: &HashMap<String, &Node>) {
    let mut t = format!("\n[[vrrp]]\nname = {}\n", q(n.arg()));
    let mut version = default_version;
    let mut vips: Vec<String> = Vec::new();
    let mut excluded: Vec<String> = Vec::new();
    let mut advert = 1.0f64;
    let mut peers: Vec<String> = Vec::new();
    let mut track_if: Vec<String> = Vec::new();
    let mut track_scripts: Vec<String> = Vec::new();
    let mut auth: Option<(String, At)> = None;
    let iface = child(n, "interface").map(|c| c.arg().to_string());
    let addr_list = |c: &Node, into: &mut Vec<String>, out: &mut Out| {
        for a in &c.children {
            into.push(q(&a.key));
            let on_iface =
                matches!(a.args.as_slice(), [d, i] if d == "dev" && Some(i) == iface.as_ref());
            if !a.args.is_empty() && !on_iface {
                out.note(
                    &a.at,
                    format!(
                        "{} {}: only the address moves (on the instance's interface)",
                        a.key,
                        a.args.join(" ")
                    ),
                );
            }
        }
    };
    for c in &n.children {
        match c.key.as_str() {
            "interface" => {
                let _ = writeln!(t, "interface = {}", q(c.arg()));
            }
            "virtual_router_id" => {
                let _ = writeln!(t, "vrid = {}", c.arg());
            }
            "priority" => {
                let _ = writeln!(t, "priority = {}", c.arg());
            }
            "advert_int" => advert = c.arg().parse().unwrap_or(1.0),
            "version" | "vrrp_version" => version = c.arg().parse().unwrap_or(version),
            "nopreempt" => t.push_str("preempt = false\n"),
            "preempt_delay" => {
                if let Some(d) = seconds(c.arg()) {
                    let _ = writeln!(t, "preempt_delay = {}", dur(d));
                }
            }
            "state" => out.note(
                &c.at,
                format!(
                    "state {}: every node starts as backup and the priorities elect the master",
                    c.arg()
                ),
            ),
            "authentication" => {
                let ty = child(c, "auth_type").map(|x| x.arg()).unwrap_or("PASS");
                match (ty, child(c, "auth_pass")) {
                    ("PASS", Some(p)) => {
                        // keepalived keeps the first 8 characters.
                        let pass: String = p.arg().chars().take(8).collect();
                        if pass.len() < p.arg().len() {
                            out.note(&p.at, "auth_pass cut to 8 characters, as keepalived does");
                        }
                        auth = Some((pass, c.at.clone()));
                    }
                    (ty, _) => out.fail(&c.at, format!("auth_type {ty}: only PASS is supported")),
                }
            }
            "virtual_ipaddress" => addr_list(c, &mut vips, out),
            "virtual_ipaddress_excluded" => addr_list(c, &mut excluded, out),
            "unicast_peer" => peers.extend(c.children.iter().map(|p| q(&p.key))),
            "unicast_src_ip" | "mcast_src_ip" => {
                // This node's address: also a TUN service's outer source.
                if let Ok(a) = c.arg().parse::<std::net::IpAddr>()
                    && !out.own.contains(&a)
                {
                    out.own.push(a);
                }
                out.note(
                    &c.at,
                    format!(
                        "{}: adverts leave from the interface's first address",
                        c.key
                    ),
                )
            }
            "track_interface" => {
                for i in &c.children {
                    track_if.push(q(&i.key));
                    if i.args.first().map(String::as_str) == Some("weight") {
                        out.note(&i.at, "track_interface weight: a tracked interface going down means FAULT here");
                    }
                }
            }
            "track_script" => {
                for s in &c.children {
                    match scripts.get(&s.key) {
                        Some(def) if child(def, "script").is_none() => out.fail(
                            &def.at,
                            format!("vrrp_script {}: no script line (a conditional one for another router id?)", s.key),
                        ),
                        Some(def) => track_scripts.push(track_script(out, def)),
                        None => out.fail(&s.at, format!("track_script {}: no vrrp_script of that name", s.key)),
                    }
                }
            }
            "notify" => {
                let cmd: Vec<String> = argv(c.arg()).iter().map(|a| q(a)).collect();
                let _ = writeln!(t, "notify = [{}]", cmd.join(", "));
                out.note(
                    &c.at,
                    "notify: ours is called with NAME FROM TO (keepalived: TYPE NAME STATE PRIORITY)",
                );
            }
            "garp_master_refresh" => {
                if let Some(d) = seconds(c.arg()).filter(|d| !d.is_zero()) {
                    let _ = writeln!(t, "garp_refresh = {}", dur(d));
                }
            }
            k => out.note(&c.at, format!("{k}: no equivalent, left out")),
        }
    }
    let v6 = vips.first().is_some_and(|v| v.contains(':'));
    if v6 {
        version = 3;
    }
    // keepalived: v2 counts whole seconds (rounded), v3 centiseconds.
    let advert = if version == 2 {
        Duration::from_secs((advert.round() as u64).max(1))
    } else {
        Duration::from_millis(((advert * 100.0).round() as u64).max(1) * 10)
    };
    let _ = writeln!(t, "version = {version}\nadvert_interval = {}", dur(advert));
    match auth {
        Some((pass, _)) if version == 2 => {
            let _ = writeln!(t, "auth_pass = {}", q(&pass));
        }
        Some((_, at)) => out.note(
            &at,
            "authentication: VRRPv3 has none (keepalived ignores it too)",
        ),
        None => {}
    }
    let _ = writeln!(t, "vips = [{}]", vips.join(", "));
    if !excluded.is_empty() {
        let _ = writeln!(t, "vips_excluded = [{}]", excluded.join(", "));
    }
    if !peers.is_empty() {
        let _ = writeln!(t, "unicast_peers = [{}]", peers.join(", "));
    }
    if !track_if.is_empty() {
        let _ = writeln!(t, "track_interfaces = [{}]", track_if.join(", "));
    }
    for s in track_scripts {
        t.push_str(&s);
    }
    if vips.is_empty() {
        out.fail(
            &n.at,
            format!("vrrp_instance {}: no virtual_ipaddress", n.arg()),
        );
    }
    out.toml.push_str(&t);
}

/// A `vrrp_script` as a `track_scripts` entry (an inline table line).
fn track_script(out: &mut Out, def: &Node) -> String {
    let cmd = child(def, "script")
        .map(|s| argv(s.arg()))
        .unwrap_or_default();
    let interval = child(def, "interval")
        .and_then(|i| seconds(i.arg()))
        .unwrap_or(Duration::from_secs(1));
    let weight: i64 = child(def, "weight")
        .and_then(|w| w.arg().parse().ok())
        .unwrap_or(0);
    for k in ["fall", "rise", "user", "init_fail"] {
        if let Some(c) = child(def, k) {
            out.note(&c.at, format!("vrrp_script {k}: ours acts on each result"));
        }
    }
    if weight == 0 {
        out.note(
            &def.at,
            "vrrp_script weight 0 (keepalived: FAULT while it fails): here it lowers the priority by 1",
        );
    }
    if weight > 0 {
        out.note(&def.at, "vrrp_script weight > 0 (raise on success): ours lowers the priority by the weight on failure");
    }
    let weight = weight.unsigned_abs().clamp(1, 254);
    let timeout = child(def, "timeout")
        .and_then(|i| seconds(i.arg()))
        .unwrap_or(interval)
        .min(interval);
    let cmd: Vec<String> = cmd.iter().map(|a| q(a)).collect();
    format!(
        "[[vrrp.track_scripts]]\ncommand = [{}]\ninterval = {}\ntimeout = {}\nweight = {weight}\n",
        cmd.join(", "),
        dur(interval),
        dur(timeout)
    )
}

fn virtual_server(out: &mut Out, n: &Node, groups: &HashMap<String, &Node>) {
    // virtual_server IP PORT | group NAME | fwmark N
    let addrs: Vec<(String, String, At)> = match n.args.as_slice() {
        [kind, name] if kind == "group" => match groups.get(name) {
            Some(g) => {
                let mut v = Vec::new();
                for m in &g.children {
                    if m.key == "fwmark" {
                        out.fail(
                            &m.at,
                            "virtual_server_group fwmark: firewall marks are not supported",
                        );
                        continue;
                    }
                    match address_range(&m.key) {
                        Some(addrs) => v.extend(
                            addrs
                                .into_iter()
                                .map(|a| (a, m.arg().to_string(), m.at.clone())),
                        ),
                        None => out.fail(
                            &m.at,
                            format!("virtual_server_group {}: not an address or range", m.key),
                        ),
                    }
                }
                v
            }
            None => {
                out.fail(
                    &n.at,
                    format!("virtual_server group {name}: no virtual_server_group of that name"),
                );
                return;
            }
        },
        [kind, _] if kind == "fwmark" => {
            out.fail(
                &n.at,
                "virtual_server fwmark: firewall marks are not supported",
            );
            return;
        }
        [ip, port] => vec![(ip.clone(), port.clone(), n.at.clone())],
        _ => {
            out.fail(
                &n.at,
                format!(
                    "virtual_server {}: not an address and port",
                    n.args.join(" ")
                ),
            );
            return;
        }
    };
    let get = |k: &str| child(n, k).map(|c| c.arg().to_string());
    let kind = get("lb_kind").unwrap_or_else(|| "NAT".into());
    let at_kind = child(n, "lb_kind").map_or(n.at.clone(), |c| c.at.clone());
    let forward = match kind.as_str() {
        "DR" => "dr",
        "TUN" => {
            out.note(
                &at_kind,
                "lb_kind TUN: forward = \"ipip\"; run `lb realserver up --mode ipip` on each real server",
            );
            out.tunnel.get_or_insert(at_kind.clone());
            "ipip"
        }
        "NAT" => {
            out.nat.get_or_insert(at_kind.clone());
            "nat"
        }
        _ => {
            out.fail(
                &at_kind,
                format!("lb_kind {kind}: not a forwarding method (DR, TUN or NAT)"),
            );
            return;
        }
    };
    let algo = get("lb_algo").unwrap_or_else(|| "wlc".into());
    let at_algo = child(n, "lb_algo").map_or(n.at.clone(), |c| c.at.clone());
    let (scheduler, mut hash) = match algo.as_str() {
        "rr" | "wrr" => ("wrr", None),
        "lc" | "wlc" => ("least-conn", None),
        "sed" | "nq" => {
            out.note(
                &at_algo,
                format!("lb_algo {algo}: least-conn is the nearest"),
            );
            ("least-conn", None)
        }
        "sh" | "mh" => ("maglev", Some("src-ip")),
        other => {
            out.note(
                &at_algo,
                format!("lb_algo {other}: not supported; maglev instead"),
            );
            ("maglev", None)
        }
    };
    if let Some(c) = child(n, "persistence_timeout") {
        hash = Some("src-ip");
        out.note(&c.at, "persistence_timeout: hash = \"src-ip\" keeps clients on one backend, and it does not expire");
    }
    let proto = get("protocol")
        .unwrap_or_else(|| "TCP".into())
        .to_lowercase();
    if proto != "tcp" && proto != "udp" {
        out.fail(&n.at, format!("protocol {proto}: tcp or udp only"));
        return;
    }
    let interval = get("delay_loop")
        .and_then(|d| seconds(&d))
        .unwrap_or(Duration::from_secs(60));
    for c in &n.children {
        if !matches!(
            c.key.as_str(),
            "lb_kind"
                | "lb_algo"
                | "persistence_timeout"
                | "protocol"
                | "delay_loop"
                | "real_server"
        ) {
            out.note(&c.at, format!("{}: no equivalent, left out", c.key));
        }
    }
    for (ip, port, at) in addrs {
        let mut t = format!(
            "\n[[service]]\nvip = {}\nport = {port}\nprotocol = {}\nscheduler = {}\nforward = {}\n",
            q(&ip),
            q(&proto),
            q(scheduler),
            q(forward)
        );
        if let Some(h) = hash {
            let _ = writeln!(t, "hash = {}", q(h));
        }
        t.push_str("backends = [\n");
        for rs in n.children.iter().filter(|c| c.key == "real_server") {
            let (Some(addr), rport) = (rs.args.first(), rs.args.get(1)) else {
                out.fail(&rs.at, "real_server without an address");
                continue;
            };
            let other_port = rport.filter(|p| **p != port);
            if forward != "nat"
                && let Some(p) = other_port
            {
                out.fail(&rs.at, format!("real_server port {p} differs from the virtual port {port}: direct routing and tunnels keep the port (lb_kind NAT translates it)"));
                continue;
            }
            let weight = child(rs, "weight").map_or("1", |w| w.arg());
            let check = real_server_check(out, rs, interval);
            let _ = writeln!(
                t,
                "  {{ address = {}, weight = {weight}{}{} }},",
                q(addr),
                other_port
                    .map(|p| format!(", port = {p}"))
                    .unwrap_or_default(),
                check.map(|c| format!(", check = {c}")).unwrap_or_default()
            );
        }
        t.push_str("]\n");
        let _ = at;
        out.toml.push_str(&t);
    }
}

/// A real_server's check as an inline table, keepalived's defaults.
fn real_server_check(out: &mut Out, rs: &Node, interval: Duration) -> Option<String> {
    for c in &rs.children {
        if !matches!(
            c.key.as_str(),
            "weight" | "HTTP_GET" | "SSL_GET" | "TCP_CHECK" | "MISC_CHECK"
        ) {
            out.note(&c.at, format!("{}: no equivalent, left out", c.key));
        }
    }
    let c = rs.children.iter().find(|c| {
        matches!(
            c.key.as_str(),
            "HTTP_GET" | "SSL_GET" | "TCP_CHECK" | "MISC_CHECK"
        )
    })?;
    let get = |k: &str| child(c, k).map(|x| x.arg().to_string());
    let mut fields = Vec::new();
    match c.key.as_str() {
        "HTTP_GET" | "SSL_GET" => {
            fields.push("kind = \"http\"".to_string());
            let urls: Vec<&Node> = c.children.iter().filter(|x| x.key == "url").collect();
            if let Some(u) = urls.first() {
                if let Some(p) = child(u, "path") {
                    fields.push(format!("path = {}", q(p.arg())));
                }
                if let Some(s) = child(u, "status_code") {
                    match status_codes(&s.args) {
                        Some(codes) => fields.push(format!("expect_status = {codes}")),
                        None => out.note(
                            &s.at,
                            "status_code: not a list of codes and ranges; any 2xx/3xx is expected",
                        ),
                    }
                }
                if let Some(d) = child(u, "digest") {
                    out.note(
                        &d.at,
                        "url digest: not supported; the status code (and expect_body) decide",
                    );
                }
            }
            for u in urls.iter().skip(1) {
                out.note(&u.at, "a further url: ours checks the first one");
            }
            if c.key == "SSL_GET" {
                fields.push("tls = true".into());
                fields.push("tls_verify = false".into());
            }
        }
        "TCP_CHECK" => fields.push("kind = \"tcp\"".into()),
        _ => {
            fields.push("kind = \"script\"".into());
            let cmd: Vec<String> = get("misc_path")
                .map(|p| argv(&p))
                .unwrap_or_default()
                .iter()
                .map(|a| q(a))
                .collect();
            fields.push(format!("command = [{}]", cmd.join(", ")));
            if let Some(d) = child(c, "misc_dynamic") {
                out.note(
                    &d.at,
                    "misc_dynamic: the exit code does not set the weight here",
                );
            }
        }
    }
    if let Some(p) = get("connect_port") {
        fields.push(format!("port = {p}"));
    }
    if let Some(x) = child(c, "connect_ip") {
        out.note(
            &x.at,
            "connect_ip: ours checks the real server's own address",
        );
    }
    let timeout_key = if c.key == "MISC_CHECK" {
        "misc_timeout"
    } else {
        "connect_timeout"
    };
    let mut timeout = get(timeout_key)
        .and_then(|t| seconds(&t))
        .unwrap_or(Duration::from_secs(5));
    if timeout > interval {
        out.note(
            &child(c, timeout_key).map_or(c.at.clone(), |x| x.at.clone()),
            format!(
                "{timeout_key} longer than delay_loop: cut to {}",
                humantime::format_duration(interval)
            ),
        );
        timeout = interval;
    }
    // keepalived's `retry N` is N + 1 attempts before down (default 1).
    let retry: u32 = get("retry")
        .or_else(|| get("nb_get_retry"))
        .and_then(|r| r.parse().ok())
        .unwrap_or(1);
    let delay = get("delay_before_retry")
        .and_then(|d| seconds(&d))
        .unwrap_or(Duration::from_secs(1));
    fields.push(format!("interval = {}", dur(interval)));
    fields.push(format!("timeout = {}", dur(timeout)));
    fields.push(format!("retries = {}", retry + 1));
    fields.push(format!("retry_delay = {}", dur(delay)));
    if let Some(w) = child(c, "warmup") {
        out.note(&w.at, "warmup: keepalived's is a random delay before the first check, not a slow start; left out");
    }
    Some(format!("{{ {} }}", fields.join(", ")))
}

/// keepalived's `status_code 200-299 404 ...` as our expect_status: one
/// code, or a list of every code the ranges cover.
fn status_codes(args: &[String]) -> Option<String> {
    let mut codes = Vec::new();
    for a in args {
        let (lo, hi) = match a.split_once('-') {
            Some((lo, hi)) => (lo.parse::<u16>().ok()?, hi.parse::<u16>().ok()?),
            None => {
                let c = a.parse::<u16>().ok()?;
                (c, c)
            }
        };
        if !(100..=599).contains(&lo) || !(lo..=599).contains(&hi) {
            return None;
        }
        codes.extend((lo..=hi).map(|c| c.to_string()));
    }
    match codes.as_slice() {
        [] => None,
        [one] => Some(one.clone()),
        _ => Some(format!("[{}]", codes.join(", "))),
    }
}

/// keepalived's `A.B.C.X-Y` (the last byte a range), or one address.
fn address_range(text: &str) -> Option<Vec<String>> {
    let Some((first, last)) = text.split_once('-') else {
        return Some(vec![text.to_string()]);
    };
    let a: std::net::Ipv4Addr = first.parse().ok()?;
    let last: u8 = last.parse().ok()?;
    let o = a.octets();
    (o[3] <= last).then(|| {
        (o[3]..=last)
            .map(|x| std::net::Ipv4Addr::new(o[0], o[1], o[2], x).to_string())
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_split_as_keepalived_runs_them() {
        assert_eq!(
            argv("/bin/check -x 'a b' \"c d\"e"),
            ["/bin/check", "-x", "a b", "c de"]
        );
        assert!(argv("   ").is_empty());
    }

    #[test]
    fn times_are_keepalived_seconds() {
        assert_eq!(seconds("1.5"), Some(Duration::from_millis(1500)));
        assert_eq!(seconds("-1"), None);
        assert_eq!(seconds("x"), None);
    }
}
