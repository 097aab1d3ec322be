//! Processes on test hosts: one started in a namespace, and a member's agent.

use super::*;

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use nix::sys::signal::Signal;
use pgha_testkit::{crash_postmaster, parent_of, postmaster_pid, signal, spawn_logged};
use pgha_testkit::{stop_child, stop_postmaster};

/// A process started with `ip netns exec` (which execs the program itself: the child's pid is
/// the program's pid).
pub struct NsProcess {
    pub what: String,
    child: Option<Child>,
    pub log: PathBuf,
    pub(super) log_start: u64,
}

impl NsProcess {
    pub(super) fn spawn(what: &str, mut cmd: Command, log: &Path) -> NsProcess {
        let (child, log_start) =
            spawn_logged(&mut cmd, log).unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        NsProcess {
            what: what.to_string(),
            child: Some(child),
            log: log.to_path_buf(),
            log_start,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().ok().flatten().is_none(),
            None => false,
        }
    }

    pub fn signal(&self, sig: Signal) {
        if let Some(pid) = self.pid() {
            signal(pid, sig);
        }
    }

    /// Sends `sig` (after SIGCONT, so a stopped process sees it), waits up to `patience`,
    /// then SIGKILL; reaps.
    pub fn stop(&mut self, sig: Signal, patience: Duration) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, sig, patience);
        }
    }

    /// This run's output.
    pub fn output(&self) -> String {
        let all = std::fs::read(&self.log).unwrap_or_default();
        String::from_utf8_lossy(&all[(self.log_start as usize).min(all.len())..]).to_string()
    }
}

impl Drop for NsProcess {
    fn drop(&mut self) {
        self.stop(Signal::SIGKILL, Duration::from_secs(5));
    }
}

/// One member: its host, config and (when started) its `pgha agent` process.
pub struct Member {
    pub name: String,
    pub host: Host,
    pub config: PathBuf,
    pub dir: PathBuf,
    pub log: PathBuf,
    pub(super) agent: Option<NsProcess>,
    /// Every run's start offset in the log (the first is 0).
    pub runs: Vec<u64>,
    /// The libfaketime timestamp file of this member's agent (with [`Opts::fake_wall_clock`]).
    pub wall_clock: Option<PathBuf>,
}

impl Member {
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn api(&self) -> String {
        format!("{}:{API_PORT}", self.host.ip)
    }

    pub fn agent_pid(&self) -> Option<u32> {
        self.agent.as_ref().and_then(|a| a.pid())
    }

    pub fn agent_running(&mut self) -> bool {
        self.agent.as_mut().is_some_and(|a| a.running())
    }

    /// The postmaster's pid from `postmaster.pid`, if the file exists and the process lives.
    pub fn postmaster_pid(&self) -> Option<u32> {
        postmaster_pid(&self.data_dir())
    }

    /// `<member dir>.lease`: the deadline the agent hands to its supervisor.
    pub fn lease_file(&self) -> PathBuf {
        self.dir.with_file_name(format!("{}.lease", self.name))
    }

    /// The armed deadline (boot clock, ms), `None` when disarmed.
    pub fn lease_deadline(&self) -> Option<u64> {
        read_lease(&self.lease_file())
    }

    /// The `pgha supervise` process whose child is the running postmaster.
    pub fn supervisor_pid(&self) -> Option<u32> {
        self.postmaster_pid().and_then(parent_of)
    }

    /// Sends `sig` to the agent process only.
    pub fn signal_agent(&self, sig: Signal) {
        let pid = self.agent_pid().expect("agent not running");
        assert!(
            signal(pid, sig),
            "{sig} to {}'s agent (pid {pid})",
            self.name
        );
    }

    /// SIGKILL of the agent only (PostgreSQL keeps running).
    pub fn kill_agent(&mut self) {
        if let Some(mut a) = self.agent.take() {
            a.stop(Signal::SIGKILL, Duration::from_secs(5));
        }
    }

    /// SIGTERM of the agent (it stops PostgreSQL and leaves the cluster), SIGKILL after 20 s.
    pub fn terminate_agent(&mut self) {
        if let Some(mut a) = self.agent.take() {
            a.stop(Signal::SIGTERM, Duration::from_secs(20));
        }
    }

    /// A node crash: SIGKILL of the agent, and of its postmaster with every PostgreSQL
    /// process at once ([`crash_postmaster`]: none acknowledges a commit after it).
    pub fn crash(&mut self) {
        let pm = self.postmaster_pid();
        if let Some(pid) = self.agent_pid() {
            signal(pid, Signal::SIGKILL);
        }
        if let Some(pm) = pm {
            let _ = crash_postmaster(pm);
        }
        self.kill_agent();
    }

    pub(super) fn stop_postmaster(&self) {
        stop_postmaster(&self.data_dir());
    }

    /// The whole log (every run).
    pub fn whole_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Superuser key/value conninfo for this member.
    pub fn conninfo(&self) -> String {
        conninfo(&self.host.ip, PG_PORT)
    }

    /// Directories a re-clone moved aside (`data.old-*`).
    pub fn moved_aside(&self) -> Vec<String> {
        std::fs::read_dir(&self.dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .filter(|n| n.starts_with("data.old"))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl AgentApi for Member {
    fn name(&self) -> &str {
        &self.name
    }

    fn api_addr(&self) -> String {
        self.api()
    }
}
