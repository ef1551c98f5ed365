//! `cargo xtask install`: the release `lb`, its systemd unit, an example
//! config, completions and the man page, where a Debian system looks for
//! them. Each step says what it writes.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use crate::step;

/// `path` under `destdir` (or as is).
fn staged(destdir: Option<&Path>, path: &Path) -> PathBuf {
    match destdir {
        Some(d) => d.join(path.strip_prefix("/").unwrap_or(path)),
        None => path.to_path_buf(),
    }
}

fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    step(&format!("installed {}", path.display()));
    Ok(())
}

/// What `lb ARGS` prints.
fn lb_output(lb: &Path, args: &[&str]) -> Result<Vec<u8>> {
    let out = Command::new(lb).args(args).output()?;
    if !out.status.success() {
        bail!(
            "lb {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out.stdout)
}

pub fn install(root: &Path, prefix: &Path, destdir: Option<&Path>) -> Result<()> {
    let built = root.join("target/release/lb");
    let bindir = prefix.join("bin");
    let at = |p: &Path| staged(destdir, p);
    write(&at(&bindir.join("lb")), &fs::read(&built)?, 0o755)?;
    let unit = fs::read_to_string(root.join("dist/lb.service.in"))?
        .replace("@BINDIR@", &bindir.display().to_string());
    write(
        &at(Path::new("/etc/systemd/system/lb.service")),
        unit.as_bytes(),
        0o644,
    )?;
    let config = at(Path::new("/etc/lb/lb.toml"));
    if config.exists() {
        step(&format!("kept the existing {}", config.display()));
    } else {
        write(&config, &fs::read(root.join("dist/lb.toml"))?, 0o644)?;
    }
    let share = prefix.join("share");
    for (shell, path) in [
        ("bash", "bash-completion/completions/lb"),
        ("zsh", "zsh/site-functions/_lb"),
        ("fish", "fish/vendor_completions.d/lb.fish"),
    ] {
        let script = lb_output(&built, &["completions", shell])?;
        write(&at(&share.join(path)), &script, 0o644)?;
    }
    // [bgp]: the balancer's side of BIRD, for the operator to adapt.
    write(
        &at(&share.join("doc/lb/bird-lb.conf")),
        &fs::read(root.join("dist/bird-lb.conf"))?,
        0o644,
    )?;
    write(
        &at(&share.join("man/man8/lb.8")),
        &lb_output(&built, &["manpage"])?,
        0o644,
    )?;
    println!(
        "\nNext: edit /etc/lb/lb.toml (`lb check -c /etc/lb/lb.toml` says what it would do), then\n  systemctl daemon-reload && systemctl enable --now lb\n  systemctl reload lb     # after editing the config; a bad file keeps the old one running\n  journalctl -u lb -f"
    );
    Ok(())
}
