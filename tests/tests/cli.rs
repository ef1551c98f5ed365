//! `lb` as a user types it: check a config, ask for help, show without pins.

use std::process::{Command, Output};

use lb_tests::lab;

fn lb(args: &[&str]) -> Output {
    Command::new(lab::bin("LB_BIN", "lb").unwrap())
        .args(args)
        .output()
        .unwrap()
}

fn write(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("lb-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const GOOD: &str = "[agent]\ninterface = \"eth0\"\n\n[[service]]\nvip = \"203.0.113.10\"\nport = 80\nbackends = [\n  { address = \"198.51.100.11\", weight = 1 },\n  { address = \"198.51.100.12\", weight = 0 },\n]\n";

#[test]
fn check_prints_the_plan_of_a_good_config() {
    let p = write("good.toml", GOOD);
    let out = lb(&["check", "-c", p.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("OK"), "{text}");
    assert!(
        text.contains("service 203.0.113.10:80/tcp scheduler=maglev forward=dr"),
        "{text}"
    );
    assert!(
        text.contains("198.51.100.11:80") && text.contains("100.0%"),
        "{text}"
    );
    assert!(text.contains("drained"), "{text}");
}

#[test]
fn check_rejects_a_bad_config_with_file_line_column_and_hint() {
    let p = write("bad.toml", &GOOD.replace("weight = 0", "weight = 99999"));
    let out = lb(&["check", "-c", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!(
            "{}:9:41: error: weight 99999 is out of range",
            p.display()
        )),
        "{err}"
    );
    assert!(err.contains("hint: use 0 (drain"), "{err}");
    assert!(err.contains("^^^^^"), "{err}");
    let missing = lb(&["check", "-c", "/nonexistent/lb.toml"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read config"));
}

#[test]
fn show_without_pins_says_what_to_do() {
    let out = lb(&[
        "show",
        "services",
        "--pin-dir",
        "/sys/fs/bpf/lb-does-not-exist",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no pinned maps at /sys/fs/bpf/lb-does-not-exist")
            && err.contains("--pin-dir"),
        "{err}"
    );
    let out = lb(&[
        "show",
        "table",
        "nonsense",
        "--pin-dir",
        "/sys/fs/bpf/lb-does-not-exist",
    ]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn every_subcommand_has_help_with_an_example() {
    for args in [
        &["run", "--help"][..],
        &["check", "--help"],
        &["show", "--help"],
        &["show", "services", "--help"],
        &["show", "backends", "--help"],
        &["show", "flows", "--help"],
        &["show", "stats", "--help"],
        &["show", "table", "--help"],
    ] {
        let out = lb(args);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("Example"),
            "lb {args:?}:\n{text}"
        );
    }
}
