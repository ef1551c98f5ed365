//! Installs what building and testing need, idempotently: Debian's
//! rustc-web toolchain (BPF backend + matching core sources), bpf-linker on
//! its LLVM 22, and the tools the lab and tests use. Each step says what it
//! does; a satisfied step is skipped.

use std::{path::Path, process::Command};

use anyhow::{Result, bail};

use crate::{exec, step};

/// The eBPF toolchain, as rustup names it (see lb-user/build.rs).
const TOOLCHAIN: &str = "debian-1.96";
const BPF_LINKER: &str = "0.13.0";

/// Debian packages: toolchain, then lab and test tools.
const PACKAGES: &[&str] = &[
    "rustc-web",
    "cargo-web",
    "rust-web-src",
    // `cargo xtask lint` checks the XDP program with the same toolchain.
    "rust-web-clippy",
    "llvm-22-dev",
    "bpftool",
    "iproute2",
    "ethtool",
    "curl",
    "procps",
    // Health-check tests: a silently dropped port.
    "nftables",
    // ring (TLS for HTTPS checks) compiles a little C.
    "gcc",
    "libc6-dev",
    // System CA roots for HTTPS checks that verify certificates.
    "ca-certificates",
    // VRRP interoperability tests run keepalived as the peer.
    "keepalived",
    // The API test scrapes the agent with a real Prometheus (and promtool).
    "prometheus",
    // systemd-analyze verifies the unit `cargo xtask install` installs.
    "systemd",
    // The scale-out lab and tests: BIRD in the router and on each balancer.
    "bird2",
];

pub fn ensure() -> Result<()> {
    apt()?;
    toolchain()?;
    bpf_linker()
}

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

fn apt() -> Result<()> {
    let missing: Vec<&str> = PACKAGES.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !Path::new("/usr/bin/apt-get").exists() {
        bail!(
            "missing packages {missing:?} and no apt-get: install them by hand (Debian/Ubuntu names)"
        );
    }
    step(&format!("apt-get install {}", missing.join(" ")));
    exec(Command::new("apt-get").args(["update", "-q"]))?;
    exec(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

fn toolchain() -> Result<()> {
    let linked = Command::new("rustup")
        .args(["run", TOOLCHAIN, "rustc", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if linked {
        return Ok(());
    }
    step(&format!(
        "rustup toolchain link {TOOLCHAIN} /usr (Debian's rustc-web, which has the BPF backend)"
    ));
    exec(Command::new("rustup").args(["toolchain", "link", TOOLCHAIN, "/usr"]))
}

/// `cargo` of the eBPF toolchain, run in `dir` (lb-ebpf). RUSTC_BOOTSTRAP
/// lets Debian's stable rustc take `-Z build-std=core`, as lb-user/build.rs.
pub fn bpf_cargo(dir: &Path) -> Command {
    let mut c = Command::new("cargo");
    c.arg(format!("+{TOOLCHAIN}"))
        .current_dir(dir)
        .env("RUSTC_BOOTSTRAP", "1");
    c
}

fn bpf_linker() -> Result<()> {
    let ok = Command::new("bpf-linker")
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(BPF_LINKER));
    if ok {
        return Ok(());
    }
    step(&format!(
        "cargo install bpf-linker@{BPF_LINKER} (against Debian's LLVM 22)"
    ));
    exec(
        Command::new("cargo")
            .args([
                "install",
                &format!("bpf-linker@{BPF_LINKER}"),
                "--locked",
                "--no-default-features",
                "--features",
                "llvm-22",
            ])
            .env("LLVM_PREFIX", "/usr/lib/llvm-22"),
    )
}
