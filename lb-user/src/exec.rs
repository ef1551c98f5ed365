//! Running a configured program (argv, never a shell) for script checks,
//! VRRP track scripts and notify hooks: in its own process group, which is
//! killed whole when the run is dropped or times out, so a hanging program
//! and its children never pile up.

use std::{
    os::unix::process::ExitStatusExt,
    process::{ExitStatus, Stdio},
    time::Duration,
};

use tokio::process::Command;

/// How a run ended when it did not exit 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Exit(i32),
    Signal(i32),
    /// Could not be started (missing binary, no permission).
    Spawn(String),
    /// Still running at the timeout; its group was killed.
    Timeout(Duration),
}

/// Kills the process group unless the leader was reaped first.
struct GroupGuard {
    pgid: Option<i32>,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid {
            // SAFETY: plain kill(2) of a group we created.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
    }
}

/// Run `argv` plus `args` with `env`, stdin/stdout/stderr closed, and wait.
/// Dropping the future kills the group (a caller's timeout does that).
pub async fn run(argv: &[String], args: &[&str], env: &[(&str, &str)]) -> Result<(), Failure> {
    let Some((program, rest)) = argv.split_first() else {
        return Err(Failure::Spawn("empty command".into()));
    };
    let mut child = Command::new(program)
        .args(rest)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        // Reaped in the background if the run is dropped.
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Failure::Spawn(format!("{program}: {e}")))?;
    let mut guard = GroupGuard {
        pgid: child.id().map(|p| p as i32),
    };
    let status = child
        .wait()
        .await
        .map_err(|e| Failure::Spawn(e.to_string()))?;
    // The leader is reaped: its pgid may be reused, so never kill it now.
    guard.pgid = None;
    outcome(status)
}

/// `run` bounded by `timeout`.
pub async fn run_for(
    argv: &[String],
    args: &[&str],
    env: &[(&str, &str)],
    timeout: Duration,
) -> Result<(), Failure> {
    tokio::time::timeout(timeout, run(argv, args, env))
        .await
        .unwrap_or(Err(Failure::Timeout(timeout)))
}

fn outcome(status: ExitStatus) -> Result<(), Failure> {
    match (status.code(), status.signal()) {
        (Some(0), _) => Ok(()),
        (Some(c), _) => Err(Failure::Exit(c)),
        (None, Some(s)) => Err(Failure::Signal(s)),
        (None, None) => Err(Failure::Exit(-1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[tokio::test]
    async fn exit_codes_args_and_env() {
        assert_eq!(run(&argv(&["true"]), &[], &[]).await, Ok(()));
        assert_eq!(
            run(&argv(&["false"]), &[], &[]).await,
            Err(Failure::Exit(1))
        );
        let script = argv(&["sh", "-c", "[ \"$1\" = a ] && [ \"$X\" = y ]", "sh"]);
        assert_eq!(run(&script, &["a"], &[("X", "y")]).await, Ok(()));
        assert_eq!(
            run(&script, &["b"], &[("X", "y")]).await,
            Err(Failure::Exit(1))
        );
        assert!(matches!(
            run(&argv(&["/nonexistent/prog"]), &[], &[]).await,
            Err(Failure::Spawn(_))
        ));
        assert!(matches!(run(&[], &[], &[]).await, Err(Failure::Spawn(_))));
    }

    #[tokio::test]
    async fn a_timeout_kills_the_whole_group() {
        let dir = std::env::temp_dir().join(format!("lb-exec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pidfile = dir.join("child");
        // A child in the background that would outlive a plain kill of the leader.
        let cmd = argv(&[
            "sh",
            "-c",
            &format!("sleep 30 & echo $! > {}; wait", pidfile.display()),
        ]);
        let r = run_for(&cmd, &[], &[], Duration::from_millis(300)).await;
        assert_eq!(r, Err(Failure::Timeout(Duration::from_millis(300))));
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        // Gone, or a zombie waiting for whoever adopted it.
        let alive = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|r| !r.trim_start().starts_with('Z'))
            })
        };
        while alive() {
            assert!(
                std::time::Instant::now() < deadline,
                "background child {pid} survived"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}
