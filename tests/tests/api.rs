//! The agent's HTTP API in the lab: `/healthz`, `/status` (the rows of
//! `lb show`), `/metrics` in both text formats, linted by `promtool`, and
//! scraped by a real Prometheus server whose PromQL answers carry the
//! backends' packet counts after traffic.

use std::{
    net::SocketAddr,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use lb_tests::{
    http,
    lab::{self, Lab, LabSpec},
    netns, require,
};

/// lb1's LAN address: the API listens there, reachable from the client.
const API: &str = "198.51.100.5:9100";
const PROMETHEUS: &str = "127.0.0.1:9090";

fn try_fetch(
    lab: &Lab,
    addr: &str,
    path: &str,
    accept: Option<&'static str>,
) -> anyhow::Result<(u16, String, String)> {
    let addr: SocketAddr = addr.parse().unwrap();
    let p = path.to_string();
    netns::in_ns(&lab.ns("c"), move || http::fetch(addr, &p, accept))?
}

fn fetch(lab: &Lab, addr: &str, path: &str, accept: Option<&'static str>) -> (u16, String, String) {
    try_fetch(lab, addr, path, accept).unwrap_or_else(|e| panic!("GET {addr}{path}: {e:#}"))
}

/// A PromQL instant query's first value, if any.
fn query(lab: &Lab, promql: &str) -> Option<f64> {
    let q: String = promql
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    // Prometheus may still be starting.
    let (status, _, body) =
        try_fetch(lab, PROMETHEUS, &format!("/api/v1/query?query={q}"), None).ok()?;
    if status != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

#[test]
fn metrics_status_and_healthz_and_a_real_prometheus_scrape() {
    let name = "metrics_status_and_healthz_and_a_real_prometheus_scrape";
    if !require::lab(name, &["prometheus", "promtool"]) {
        return;
    }
    let check =
        r#"check = { kind = "http", path = "/healthz", interval = "500ms", timeout = "300ms" }"#;
    let (mut lab, _) = lab::serving_agent(
        LabSpec::default(),
        &format!("api = \"{API}\""),
        |l| l.services_with(check),
        &[],
    )
    .unwrap();

    let (status, _, body) = fetch(&lab, API, "/healthz", None);
    assert_eq!((status, body.trim()), (200, "serving"));
    assert_eq!(fetch(&lab, API, "/nope", None).0, 404);

    // Traffic through the VIP, so the counters move.
    let vip = lab::vip();
    let answered = netns::in_ns(&lab.ns("c"), move || {
        (0..30).filter(|_| http::get(vip).is_ok()).count()
    })
    .unwrap();
    assert_eq!(answered, 30);

    // /status: the rows of lb show services, backends and vrrp, one document.
    let (status, _, body) = fetch(&lab, API, "/status", None);
    assert_eq!(status, 200, "{body}");
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["services"].as_array().unwrap().len(), 2, "{doc:#}");
    assert_eq!(doc["backends"].as_array().unwrap().len(), 6, "{doc:#}");
    assert!(doc["vrrp"].as_array().unwrap().is_empty());
    let shown = lab::lb_show(&[
        "backends",
        "--pin-dir",
        lab.pin_dir("lb1").to_str().unwrap(),
    ])
    .unwrap();
    let keys = |v: &serde_json::Value| {
        v.as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    assert_eq!(keys(&doc["backends"][0]), keys(&shown["backends"][0]));

    // The classic text format, as promtool lints it.
    let (status, head, text) = fetch(&lab, API, "/metrics", None);
    assert_eq!(status, 200);
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    for want in [
        "lb_backend_packets_total{service=\"203.0.113.10:80/tcp\",backend=\"198.51.100.11\"}",
        "lb_verdicts_total{reason=\"fwd_flow_miss\"}",
        "lb_backend_check_duration_seconds_bucket",
        "lb_backend_checks_total{service=\"203.0.113.10:80/tcp\",backend=\"198.51.100.13\",outcome=\"ok\"}",
        "lb_flow_table_capacity 65536",
        "lb_build_info{version=",
    ] {
        assert!(text.contains(want), "no {want} in:\n{text}");
    }
    let mut lint = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    lint.stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = lint.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // OpenMetrics on request.
    let (_, head, om) = fetch(
        &lab,
        API,
        "/metrics",
        Some("application/openmetrics-text; version=1.0.0"),
    );
    assert!(head.contains("application/openmetrics-text"), "{head}");
    assert!(om.trim_end().ends_with("# EOF"), "{om}");

    // A real Prometheus scrapes it every second.
    let cfg = lab.dir.join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: lb\n    static_configs:\n      - targets: ['{API}']\n"
        ),
    )
    .unwrap();
    let mut prom = Command::new("prometheus");
    prom.arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            lab.dir.join("prometheus-data").display()
        ))
        .arg(format!("--web.listen-address={PROMETHEUS}"));
    lab.spawn("c", "prometheus", prom).unwrap();
    let deadline = Instant::now() + Duration::from_secs(40);
    let packets = loop {
        if let Some(v) = query(&lab, "sum(lb_backend_packets_total)").filter(|v| *v > 0.0) {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never had the packet counts; its log:\n{}",
            lab.log("prometheus")
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let series = query(&lab, "count(lb_backend_packets_total)");
    let up = query(&lab, "sum(lb_backend_up)");
    println!(
        "prometheus: sum(lb_backend_packets_total) = {packets}, {series:?} series, {up:?} backends up"
    );
    assert!(packets >= 30.0, "{packets}");
    // One series per configured backend: the label set is the config's.
    assert_eq!(series, Some(6.0));
    assert_eq!(up, Some(6.0));
}
