//! Local processes a fault signals: a member's postmaster (its `postmaster.pid`) and, in
//! distributed mode, the `pgha agent` above its supervisor; SIGSTOP undone when dropped.

use std::path::Path;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::inject_error::ProcessError;

/// The pid in `data_dir/postmaster.pid`, when that process is the directory's postmaster
/// (never a process that took the pid of one that crashed: a fault must not signal it).
pub fn postmaster_pid(data_dir: &Path) -> Option<i32> {
    pgha_pg::pid_file::holder(data_dir).postmaster()
}

pub use pgha_pg::supervisor::parent_of;

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

/// The `pgha agent` process that runs the member whose data directory is `data_dir`: the pid
/// in the member's agent lock (`<member_dir>.agent`) while a `pgha agent` runs under it; else
/// (an agent without that lock) the parent of the postmaster's `pgha supervise`, which is the
/// agent that started it unless that agent has been restarted since.
pub fn agent_pid(data_dir: &Path) -> Result<i32, ProcessError> {
    let locked = data_dir
        .parent()
        .and_then(pgha_pg::agent_lock::written_pid)
        .filter(|pid| args_of(*pid).iter().any(|a| a == "agent"));
    if let Some(agent) = locked {
        return Ok(agent);
    }
    let postmaster =
        postmaster_pid(data_dir).ok_or_else(|| ProcessError::NoPostmaster(data_dir.into()))?;
    let supervisor = parent_of(postmaster).ok_or(ProcessError::NoParent {
        what: "postmaster",
        pid: postmaster,
    })?;
    if !args_of(supervisor).iter().any(|a| a == "supervise") {
        return Err(ProcessError::NotSupervised(supervisor));
    }
    let agent = parent_of(supervisor).ok_or(ProcessError::NoParent {
        what: "supervisor",
        pid: supervisor,
    })?;
    let args = args_of(agent);
    if !args.iter().any(|a| a == "agent") {
        return Err(ProcessError::AgentNotFound {
            pid: agent,
            args: args.join(" "),
        });
    }
    Ok(agent)
}

/// Sends `signal` to `pid`.
fn send(pid: i32, signal: Signal) -> Result<(), ProcessError> {
    kill(Pid::from_raw(pid), signal).map_err(|errno| ProcessError::Signal { signal, pid, errno })
}

/// SIGKILL to `pid`.
pub fn kill9(pid: i32) -> Result<(), ProcessError> {
    send(pid, Signal::SIGKILL)
}

/// A process stopped with SIGSTOP until this is dropped (then SIGCONT).
pub struct Stopped {
    pid: i32,
}

impl Stopped {
    pub fn stop(pid: i32) -> Result<Stopped, ProcessError> {
        send(pid, Signal::SIGSTOP)?;
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
