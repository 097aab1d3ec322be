//! Local processes a fault signals: a member's postmaster (its `postmaster.pid`) and, in
//! distributed mode, the `pgha agent` above its supervisor; SIGSTOP undone when dropped.

use std::path::Path;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use pgha_pg::pid_file::PidFileHolder;

/// The pid in `data_dir/postmaster.pid`, when that process is the directory's postmaster
/// (never a process that took the pid of one that crashed: a fault must not signal it).
pub fn postmaster_pid(data_dir: &Path) -> Option<i32> {
    match pgha_pg::pid_file::holder(data_dir) {
        PidFileHolder::Postmaster(pid) => Some(pid),
        PidFileHolder::Nobody | PidFileHolder::Zombie(_) | PidFileHolder::Stranger(_) => None,
    }
}

/// The parent of `pid` (`/proc/PID/stat`).
pub fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // pid (comm) state ppid ...: comm may hold spaces and parentheses; it ends at the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The arguments `pid` was started with.
pub fn args_of(pid: i32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            raw.split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The `pgha agent` process that runs the member whose data directory is `data_dir`: the
/// parent of the postmaster is `pgha supervise`, whose parent is the agent that started it.
pub fn agent_pid(data_dir: &Path) -> Result<i32, String> {
    let postmaster = postmaster_pid(data_dir)
        .ok_or_else(|| format!("no running postmaster in {}", data_dir.display()))?;
    let supervisor = parent_of(postmaster).ok_or("the postmaster has no parent")?;
    if !args_of(supervisor).iter().any(|a| a == "supervise") {
        return Err(format!(
            "the postmaster's parent {supervisor} is not `pgha supervise`"
        ));
    }
    let agent = parent_of(supervisor).ok_or("the supervisor has no parent")?;
    let args = args_of(agent);
    if !args.iter().any(|a| a == "agent") {
        return Err(format!(
            "the supervisor's parent {agent} is not `pgha agent` ({}): an agent restarted \
             since it started PostgreSQL",
            args.join(" ")
        ));
    }
    Ok(agent)
}

/// SIGKILL to `pid`.
pub fn kill9(pid: i32) -> Result<(), String> {
    kill(Pid::from_raw(pid), Signal::SIGKILL).map_err(|e| format!("SIGKILL to {pid}: {e}"))
}

/// A process stopped with SIGSTOP until this is dropped (then SIGCONT).
pub struct Stopped {
    pid: i32,
}

impl Stopped {
    pub fn stop(pid: i32) -> Result<Stopped, String> {
        kill(Pid::from_raw(pid), Signal::SIGSTOP).map_err(|e| format!("SIGSTOP to {pid}: {e}"))?;
        Ok(Stopped { pid })
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.pid), Signal::SIGCONT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pid_file_naming_a_dead_pid_or_another_process_names_no_postmaster() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(postmaster_pid(dir.path()), None);
        let me = std::process::id() as i32;
        let pid_file = dir.path().join("postmaster.pid");
        std::fs::write(&pid_file, format!("{me}\n/x\n")).unwrap();
        assert_eq!(
            postmaster_pid(dir.path()),
            None,
            "a live process, not a postmaster"
        );
        std::fs::write(&pid_file, "999999999\n").unwrap();
        assert_eq!(postmaster_pid(dir.path()), None);
    }

    #[test]
    fn parents_and_arguments_come_from_proc() {
        let me = std::process::id() as i32;
        assert_eq!(parent_of(me), Some(nix::unistd::getppid().as_raw()));
        assert!(!args_of(me).is_empty());
        // This test's own data directory holds no postmaster: no agent either.
        assert!(agent_pid(Path::new("/nonexistent")).is_err());
    }
}
