//! `cargo xtask`: installs what is missing, then builds, runs, tests and
//! benchmarks. It drives cargo and the lab; it hides no build step.

mod install;
mod setup;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Build, run, test and benchmark the XDP load balancer"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install missing prerequisites (apt packages, bpf-linker, toolchain link).
    Setup,
    /// Build `lb` (with its XDP object) and the lab tools, release mode.
    Build,
    /// Install `lb`, its systemd unit, an example /etc/lb/lb.toml (never
    /// over an existing one), shell completions and the man page.
    Install {
        #[arg(long, default_value = "/usr/local")]
        prefix: PathBuf,
        /// Stage everything under this directory instead of / (packaging).
        #[arg(long)]
        destdir: Option<PathBuf>,
    },
    /// Run the balancer: `lb run -c CONFIG`, or with no config a throw-away
    /// namespace lab (client, lb1, three backends) serving a VIP until Ctrl-C.
    Run {
        /// Agent config; without it the lab is built.
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
    /// The whole test suite: unit, BPF (BPF_PROG_TEST_RUN) and namespace tests.
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Benchmarks: XDP ns/packet against an empty and a floor program (DR
    /// and tunnels), Maglev build times, flow-sync lag and CPU
    /// (--sync-only), agent CPU checking 1,000 backends (--health-secs N,
    /// --health-only); --packets-only stops after the XDP and table figures;
    /// --lab measures packets per second through a forwarding path in
    /// namespaces (ours, nftables DNAT, kernel forwarding).
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// rustfmt check, then clippy (-D warnings) on the host crates and on
    /// the XDP program for the BPF target.
    Lint,
    /// The XDP program against hostile frames (BPF_PROG_TEST_RUN): every
    /// truncation and single-field mutation of valid VIP frames, then
    /// random ones. `cargo xtask test` runs 200,000; this runs as many as
    /// asked.
    Fuzz {
        /// Random frames to send.
        #[arg(long, default_value_t = 5_000_000)]
        frames: u64,
        /// Seed of the frame generator (a failure prints the one it used).
        #[arg(long)]
        seed: Option<u64>,
    },
    /// A lab that stays up in the background: up | down | status; sweep
    /// removes labs whose processes are all gone.
    Lab {
        #[arg(value_parser = ["up", "down", "status", "sweep"])]
        action: String,
        /// With `down`: only this lab (default: all).
        prefix: Option<String>,
        /// With `up`: N balancers announcing the VIPs over BGP (each with
        /// its own BIRD) to a router that spreads flows with ECMP, instead
        /// of the VRRP pair.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=8))]
        bgp: Option<u8>,
    },
}

/// Where the upgrade test's other-layout build of `lb` goes.
const LAYOUT_TEST_DIR: &str = "target/layout-test";

fn main() -> Result<()> {
    let cli = Cli::parse();
    preflight()?;
    let root = workspace_root();
    std::env::set_current_dir(&root)?;
    match cli.cmd {
        Cmd::Setup => setup::ensure(),
        Cmd::Build => {
            setup::ensure()?;
            build(true)
        }
        Cmd::Install { prefix, destdir } => {
            setup::ensure()?;
            build(true)?;
            install::install(&root, &prefix, destdir.as_deref())
        }
        Cmd::Run { config } => {
            setup::ensure()?;
            build(true)?;
            let bin = root.join("target/release");
            match config {
                Some(c) => {
                    step(&format!("running lb run -c {}", c.display()));
                    replace(Command::new(bin.join("lb")).args(["run", "-c"]).arg(c))
                }
                None => {
                    step("no config given: building a namespace lab and serving a VIP in it");
                    replace(
                        Command::new(bin.join("lab"))
                            .arg("run")
                            .arg(bin.join("lb"))
                            .arg(bin.join("lab-http")),
                    )
                }
            }
        }
        Cmd::Test { args } => {
            setup::ensure()?;
            build(false)?;
            let bin = root.join("target/debug");
            step("building lb with a changed map layout, for the upgrade test");
            exec(Command::new("cargo").args([
                "build",
                "-p",
                "lb-user",
                "--bin",
                "lb",
                "--features",
                "layout-test",
                "--target-dir",
                LAYOUT_TEST_DIR,
            ]))?;
            step("removing labs left behind by killed runs, if any");
            exec(Command::new(bin.join("lab")).arg("sweep"))?;
            step("cargo test: unit, BPF (BPF_PROG_TEST_RUN) and namespace tests");
            exec(
                Command::new("cargo")
                    // lb-ebpf builds only for the BPF target (lb-user's build.rs does that).
                    .args(["test", "--workspace", "--exclude", "lb-ebpf"])
                    .args(&args)
                    .env("LB_BIN", bin.join("lb"))
                    .env("LB_LAYOUT_BIN", root.join(LAYOUT_TEST_DIR).join("debug/lb"))
                    .env("LAB_BIN", bin.join("lab"))
                    .env("LAB_HTTP_BIN", bin.join("lab-http")),
            )
        }
        Cmd::Bench { args } => {
            setup::ensure()?;
            build(true)?;
            step("running benchmarks (release build)");
            let bin = root.join("target/release");
            exec(
                Command::new(bin.join("lb-bench"))
                    .args(&args)
                    .env("LB_BIN", bin.join("lb"))
                    .env("LAB_HTTP_BIN", bin.join("lab-http")),
            )
        }
        Cmd::Fuzz { frames, seed } => {
            setup::ensure()?;
            step(&format!(
                "fuzzing the XDP program with {frames} random frames"
            ));
            let mut c = Command::new("cargo");
            c.args([
                "test",
                "-p",
                "lb-tests",
                "--test",
                "fuzz",
                "--",
                "--nocapture",
            ])
            .env("FUZZ_FRAMES", frames.to_string());
            if let Some(s) = seed {
                c.env("FUZZ_SEED", s.to_string());
            }
            exec(&mut c)
        }
        Cmd::Lint => {
            setup::ensure()?;
            step("cargo fmt --check");
            exec(Command::new("cargo").args(["fmt", "--all", "--", "--check"]))?;
            step("cargo clippy: host crates");
            exec(Command::new("cargo").args([
                "clippy",
                "--workspace",
                "--exclude",
                "lb-ebpf",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]))?;
            step("cargo clippy: the XDP program, BPF target");
            exec(
                setup::bpf_cargo(&root.join("lb-ebpf"))
                    .args([
                        "clippy",
                        "--target",
                        "bpfel-unknown-none",
                        "-Z",
                        "build-std=core",
                        "--release",
                        "--target-dir",
                    ])
                    .arg(root.join("target/bpf-clippy"))
                    .args(["--", "-D", "warnings"]),
            )
        }
        Cmd::Lab {
            action,
            prefix,
            bgp,
        } => {
            setup::ensure()?;
            build(true)?;
            let bin = root.join("target/release");
            let mut c = Command::new(bin.join("lab"));
            match action.as_str() {
                "up" => {
                    c.arg("up").arg(bin.join("lb")).arg(bin.join("lab-http"));
                    if let Some(n) = bgp {
                        c.arg("--bgp").arg(n.to_string());
                    }
                    &mut c
                }
                "down" => c.arg("down").args(prefix),
                "sweep" => c.arg("sweep"),
                _ => c.arg("status"),
            };
            exec(&mut c)
        }
    }
}

fn preflight() -> Result<()> {
    if !cfg!(target_os = "linux") {
        bail!("this needs Linux (XDP, network namespaces)");
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc_geteuid() } != 0 {
        bail!(
            "run as root: loading XDP programs and building namespaces need it (e.g. sudo -E cargo xtask ...)"
        );
    }
    Ok(())
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

pub fn step(msg: &str) {
    eprintln!("xtask: {msg}");
}

fn build(release: bool) -> Result<()> {
    let mode = if release { "release" } else { "debug" };
    step(&format!(
        "building lb, its XDP object and the lab tools ({mode})"
    ));
    let mut c = Command::new("cargo");
    c.args(["build", "-p", "lb-user", "-p", "lb-tests", "--bins"]);
    if release {
        c.arg("--release");
    }
    exec(&mut c)
}

/// Become `c` (exec): a signal sent to `cargo xtask run` (Ctrl-C, kill,
/// the terminal hanging up) reaches the program that cleans up, not an
/// xtask that would die and leave it behind.
fn replace(c: &mut Command) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let e = c.exec();
    Err(e).with_context(|| format!("starting {c:?}"))
}

/// Run to completion; fail if it fails.
pub fn exec(c: &mut Command) -> Result<()> {
    let status = c.status().with_context(|| format!("starting {c:?}"))?;
    if !status.success() {
        bail!("{c:?} failed ({status})");
    }
    Ok(())
}
