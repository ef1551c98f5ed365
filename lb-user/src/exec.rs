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
    async fn run_for_gives_up_at_the_timeout() {
        // That the whole group dies is tested through the script checker
        // (health::tests), which runs the same code.
        let t0 = std::time::Instant::now();
        let r = run_for(
            &argv(&["sleep", "30"]),
            &[],
            &[],
            Duration::from_millis(200),
        )
        .await;
        assert_eq!(r, Err(Failure::Timeout(Duration::from_millis(200))));
        assert!(t0.elapsed() < Duration::from_secs(5));
    }
}
