//! Capability checks: a test that cannot run here says why and skips, except
//! under CI=true, where a missing capability is a failure.

/// True when running as root; otherwise skips (or fails under CI) with `why`.
pub fn root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    skip(test, "needs root (BPF, network namespaces)")
}

/// True when `cmd` is on PATH; otherwise skips (or fails under CI).
pub fn command(test: &str, cmd: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(cmd).is_file()))
        .unwrap_or(false);
    found
        || skip(
            test,
            &format!("needs `{cmd}` on PATH (cargo xtask test installs it)"),
        )
}

/// A namespace lab can run: root, `ethtool` (the lab turns the client's
/// checksum offload off), and the test's own `commands`.
pub fn lab(test: &str, commands: &[&str]) -> bool {
    root(test) && ["ethtool"].iter().chain(commands).all(|c| command(test, c))
}

fn skip(test: &str, why: &str) -> bool {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: {why}; under CI=true this is a failure, not a skip");
    }
    eprintln!("SKIP {test}: {why}");
    false
}
