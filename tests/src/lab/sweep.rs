//! Removing labs: a detached lab by prefix, and labs a killed run left
//! behind (no recorded process alive).

use std::{fs, path::Path, time::Duration};

use super::{OWNER, RUN_DIR};
use crate::netns;

/// Remove everything a detached lab with `prefix` made: the processes
/// recorded in its run directory, then its namespaces, pins and directory.
pub fn remove(prefix: &str) {
    let dir = Path::new(RUN_DIR).join(prefix);
    for pid in child_pids(&dir) {
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    if dir.exists() {
        // Give agents a moment to detach and unpin on SIGTERM.
        std::thread::sleep(Duration::from_millis(300));
    }
    for pid in child_pids(&dir) {
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    remove_resources(prefix);
}

/// The processes a lab started (`NAME.pid` in its run directory).
fn child_pids(dir: &Path) -> Vec<i32> {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "pid"))
        .filter_map(|e| read_pid(&e.path()))
        .collect()
}

fn read_pid(path: &Path) -> Option<i32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Namespaces, pins and the run directory of lab `prefix`.
pub(super) fn remove_resources(prefix: &str) {
    let dir = Path::new(RUN_DIR).join(prefix);
    for ns in netns::list(&format!("{prefix}-")) {
        netns::delete(&ns);
    }
    if let Ok(entries) = fs::read_dir("/sys/fs/bpf") {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with(&format!("lb-lab-{prefix}-")) {
                lb_user::maps::loader::unpin_all(&e.path());
                // What else a lab pins there (a real server's decap program).
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
    let _ = fs::remove_dir_all(&dir);
}

/// Remove the labs left behind by a run that was killed before it could
/// tear down (SIGKILL, a machine restart): no process recorded in the run
/// directory, owner or child, is alive. Labs younger than a minute may still
/// be being built and are left alone. Nothing is signalled: every recorded
/// pid is dead, or reused by a process that is not ours. Returns the prefixes
/// removed.
pub fn sweep() -> Vec<String> {
    let alive = |pid: i32| {
        // SAFETY: signal 0 only checks that the process exists.
        pid > 0
            && (unsafe { libc::kill(pid, 0) } == 0
                || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM))
    };
    let abandoned: Vec<String> = running()
        .into_iter()
        .filter(|prefix| {
            let dir = Path::new(RUN_DIR).join(prefix);
            let young = fs::metadata(&dir)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_none_or(|age| age < Duration::from_secs(60));
            let mut pids = child_pids(&dir);
            pids.extend(read_pid(&dir.join(OWNER)));
            !young && !pids.into_iter().any(alive)
        })
        .collect();
    for prefix in &abandoned {
        remove_resources(prefix);
    }
    abandoned
}

/// Prefixes of labs that are up (have a run directory).
pub fn running() -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(RUN_DIR)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    v.sort();
    v
}
