//! Agents: one `pgha agent --config FILE` process and its member.

use super::*;

use std::process::{Child, Command};

use nix::sys::signal::Signal;
use pgha_testkit::RunLog;
use pgha_testkit::{crash_postmaster, postmaster_pid, reap, signal, stop_child, stop_postmaster};

/// One `pgha agent --config FILE` process and its member.
pub struct Agent {
    pub name: String,
    pub config: PathBuf,
    pub dir: PathBuf,
    pub api: String,
    pub port: u16,
    pub(super) log: RunLog,
    pub(super) child: Option<Child>,
}

impl Agent {
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} already running", self.name);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgha"));
        cmd.args(["agent", "--config"])
            .arg(&self.config)
            .env("PGHA_LOG", "info")
            .env_remove("RUST_LOG");
        self.child = Some(self.log.spawn(&mut cmd).expect("spawn pgha agent"));
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The exit status once the agent has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut()?.try_wait().ok()?
    }

    /// Waits for the agent to exit on its own (e.g. a refusal); `None` after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let status = poll(timeout, Duration::from_millis(50), || self.exited())?;
        self.child = None;
        Some(status)
    }

    /// SIGTERM (the agent stops PostgreSQL and leaves), SIGKILL after `patience`.
    pub fn terminate(&mut self, patience: Duration) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, Signal::SIGTERM, patience);
        }
    }

    pub(super) fn reap(&mut self, patience: Duration) {
        if let Some(mut child) = self.child.take() {
            reap(&mut child, patience);
        }
    }

    /// SIGKILL to the agent alone (its supervisor and PostgreSQL go on).
    pub fn kill(&mut self) {
        if let Some(pid) = self.pid() {
            signal(pid, Signal::SIGKILL);
        }
        self.reap(Duration::from_secs(5));
    }

    /// The postmaster's pid from `postmaster.pid`, if the file exists and the process lives.
    pub fn postmaster_pid(&self) -> Option<u32> {
        postmaster_pid(&self.data_dir())
    }

    /// A node crash: SIGKILL to the agent, and to its postmaster with every PostgreSQL
    /// process at once ([`crash_postmaster`]: none acknowledges a commit after it).
    pub fn crash(&mut self) {
        let pm = self.postmaster_pid();
        if let Some(pid) = self.pid() {
            signal(pid, Signal::SIGKILL);
        }
        if let Some(pm) = pm {
            let _ = crash_postmaster(pm);
        }
        self.reap(Duration::from_secs(5));
    }

    /// Stops whatever postmaster runs on the data directory (SIGQUIT: immediate shutdown).
    pub fn stop_postmaster(&self) {
        stop_postmaster(&self.data_dir());
    }

    /// The agent's log of its current (or last) run.
    pub fn log(&self) -> String {
        self.log.this_run()
    }

    pub fn whole_log(&self) -> String {
        self.log.whole()
    }

    /// libpq key/value connection string for the superuser on this member.
    pub fn conninfo(&self) -> String {
        conninfo("127.0.0.1", self.port)
    }
}

impl AgentApi for Agent {
    fn name(&self) -> &str {
        &self.name
    }

    fn api_addr(&self) -> String {
        self.api.clone()
    }
}
