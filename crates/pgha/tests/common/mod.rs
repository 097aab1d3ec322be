//! Test harness: runs the real `pgha` binary against real PostgreSQL in a private directory on
//! free ports, and cleans every process up even when a test fails.
#![allow(dead_code)]

pub mod cluster;
pub mod status;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::Duration;

use nix::sys::signal::Signal;
use pgha_testkit::stop_postmaster;
use pgha_testkit::traversable_tempdir;
use pgha_testkit::{children_of, free_port_range, poll, signal, spawn_logged, stop_child};
use serde_json::Value;

pub fn pgha_bin() -> &'static str {
    env!("CARGO_BIN_EXE_pgha")
}

/// A temporary directory the `postgres` OS user can traverse (tests may run as root).
pub fn test_dir() -> tempfile::TempDir {
    traversable_tempdir("pgha-test-")
}

/// A base port such that base..=base+10+members are all free right now.
pub fn free_base_port(members: u16) -> u16 {
    free_port_range(11 + members)
}

/// Runs `pgha ARGS` to completion.
pub fn pgha(args: &[&str]) -> Output {
    Command::new(pgha_bin())
        .args(args)
        .env("PGHA_LOG", "info")
        .output()
        .expect("run pgha")
}

pub fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// A running `pgha up` in its own directory.
pub struct UpProcess {
    pub dir: PathBuf,
    pub base: u16,
    pub members: u16,
    child: Option<Child>,
    log: PathBuf,
    /// The test directory `dir` lives in, when this owns it (removed once everything stopped).
    tmp: Option<tempfile::TempDir>,
    /// What `pgha up` runs as.
    run_as: RunAs,
}

/// What `pgha up` runs as, for the tests of what a container's pid 1 must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunAs {
    /// A child of the test.
    Child,
    /// A child subreaper (`PR_SET_CHILD_SUBREAPER`): it adopts the orphans of its descendants
    /// as a pid 1 does, but it is not pid 1, so it does not reap them.
    Subreaper,
    /// Pid 1 of a pid namespace of its own (`unshare --pid --fork --mount-proc`), as the
    /// command of a container started without an init. Its processes' pids in
    /// `postmaster.pid` are the namespace's: find them with `postmaster_in`.
    Pid1,
}

/// Small, fast instances: fine for process-level tests.
pub const TEST_PARAMS: &[&str] = &[
    "--param",
    "fsync=off",
    "--param",
    "shared_buffers=16MB",
    "--param",
    "max_connections=40",
];

impl UpProcess {
    /// Starts `pgha up --dir DIR --members N --port BASE [extra]` and returns at once.
    pub fn spawn(dir: &Path, members: u16, base: u16, extra: &[&str]) -> Self {
        let mut up = UpProcess {
            dir: dir.to_path_buf(),
            base,
            members,
            child: None,
            log: PathBuf::new(),
            tmp: None,
            run_as: RunAs::Child,
        };
        up.restart(extra);
        up
    }

    /// Starts `pgha up` again on its directory (its log a new file), once the last one ended.
    pub fn restart(&mut self, extra: &[&str]) {
        static SPAWNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        assert!(self.child.is_none(), "pgha up still runs");
        let n = SPAWNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.log = self.dir.with_extension(format!("up-{n}.log"));
        let members_s = self.members.to_string();
        let base_s = self.base.to_string();
        let mut args: Vec<&str> = vec!["up", "--dir", self.dir.to_str().unwrap()];
        if !self.dir.join("pgha.toml").exists() {
            args.extend(["--members", &members_s, "--port", &base_s]);
            args.extend(TEST_PARAMS);
        }
        args.extend(extra);
        let mut cmd = match self.run_as {
            RunAs::Pid1 => {
                let mut cmd = Command::new("unshare");
                // --kill-child: the namespace ends with the test's process if it dies first.
                cmd.args(["--pid", "--fork", "--mount-proc", "--kill-child"]);
                cmd.arg(pgha_bin());
                cmd
            }
            RunAs::Child | RunAs::Subreaper => Command::new(pgha_bin()),
        };
        cmd.args(&args);
        if self.run_as == RunAs::Subreaper {
            use std::os::unix::process::CommandExt as _;
            // SAFETY: prctl is async-signal-safe; the attribute survives the exec of pgha.
            unsafe {
                cmd.pre_exec(|| {
                    nix::sys::prctl::set_child_subreaper(true).map_err(std::io::Error::from)
                });
            }
        }
        let (child, _) = spawn_logged(&mut cmd, &self.log).expect("spawn pgha up");
        self.child = Some(child);
    }

    /// Creates a cluster of `members` in `dir`, waits until every standby streams, and stops
    /// it cleanly: ready for settings `pgha up` does not create it with. Returns its base port.
    pub fn create_stopped(dir: &Path, members: u16) -> u16 {
        let base = free_base_port(members);
        let mut up = Self::spawn(dir, members, base, &[]);
        up.wait_streaming(Duration::from_secs(90));
        assert_eq!(up.terminate(), Some(0), "{}", up.log());
        base
    }

    /// Starts a cluster and waits until every standby streams.
    pub fn start(dir: &Path, members: u16) -> Self {
        let mut up = Self::spawn(dir, members, free_base_port(members), &[]);
        up.wait_streaming(Duration::from_secs(90));
        up
    }

    /// [`UpProcess::start`] in a directory of a fresh test directory it owns.
    pub fn start_in_temp(members: u16) -> Self {
        let tmp = test_dir();
        let mut up = Self::start(&tmp.path().join("ha"), members);
        up.tmp = Some(tmp);
        up
    }

    /// [`UpProcess::start_in_temp`], `pgha up` adopting the processes its descendants leave
    /// behind when they die (`PR_SET_CHILD_SUBREAPER`), as it does when it is a container's
    /// pid 1: the postmaster of a killed supervisor becomes its child, and a zombie until it
    /// reaps it.
    pub fn start_in_temp_as_subreaper(members: u16) -> Self {
        Self::start_in_temp_as(members, RunAs::Subreaper)
    }

    /// [`UpProcess::start_in_temp`], `pgha up` run as `run_as`.
    pub fn start_in_temp_as(members: u16, run_as: RunAs) -> Self {
        let tmp = test_dir();
        let mut up = UpProcess {
            dir: tmp.path().join("ha"),
            base: free_base_port(members),
            members,
            child: None,
            log: PathBuf::new(),
            tmp: None,
            run_as,
        };
        up.restart(&[]);
        up.wait_streaming(Duration::from_secs(90));
        up.tmp = Some(tmp);
        up
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn status(&self) -> Option<Value> {
        let out = pgha(&["status", "--dir", self.dir.to_str().unwrap(), "--json"]);
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// Waits until one primary runs, every other member streams, and `pgha up` has said the
    /// cluster is up (before that, a SIGTERM ends its start-up: exit 1, not a clean stop).
    pub fn wait_streaming(&mut self, timeout: Duration) -> Value {
        let streaming = poll(timeout, Duration::from_millis(100), || {
            if let Some(code) = self.exited() {
                panic!(
                    "pgha up exited ({code}) before the cluster streamed; log:\n{}",
                    self.log()
                );
            }
            if !self.log().contains("cluster up in") {
                return None;
            }
            self.status().filter(|s| {
                let members = s["members"].as_array().unwrap();
                let primaries = members
                    .iter()
                    .filter(|m| m["role"] == "primary" && m["state"] == "running")
                    .count();
                let streaming = members.iter().filter(|m| m["state"] == "streaming").count();
                primaries == 1 && streaming == members.len() - 1
            })
        });
        streaming.unwrap_or_else(|| {
            panic!(
                "cluster not streaming after {timeout:?}; status: {:?}\nlog:\n{}",
                self.status(),
                self.log()
            )
        })
    }

    /// The pid of the `pgha up` process while it runs (as pid 1 of its namespace: that
    /// process, the child of `unshare`).
    pub fn pid(&self) -> Option<u32> {
        let pid = self.child.as_ref().map(|c| c.id())?;
        match self.run_as {
            RunAs::Pid1 => poll(Duration::from_secs(5), Duration::from_millis(10), || {
                children_of(pid).first().copied()
            }),
            RunAs::Child | RunAs::Subreaper => Some(pid),
        }
    }

    /// SIGKILL to `pgha up` alone (its agents die with it; PostgreSQL and its supervisors do
    /// not), as after an OOM kill.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The exit code if `pgha up` has exited.
    pub fn exited(&mut self) -> Option<String> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        Some(status.to_string())
    }

    pub fn url(&self, member: Option<&str>) -> String {
        let mut args = vec!["url", "--password", "--dir", self.dir.to_str().unwrap()];
        if let Some(m) = member {
            args.extend(["--member", m]);
        }
        let out = pgha(&args);
        assert!(out.status.success(), "pgha url failed: {}", stderr_of(&out));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// Sends SIGTERM and waits for a clean exit; returns the exit status code (`None` when it
    /// had to be killed after 60 s).
    pub fn terminate(&mut self) -> Option<i32> {
        self.stop_with(Signal::SIGTERM)
    }

    /// Sends `sig` and waits (60 s at most) for `pgha up` to exit; its exit code.
    pub fn stop_with(&mut self, sig: Signal) -> Option<i32> {
        if self.run_as == RunAs::Pid1 {
            // `unshare` waits for its child and ignores SIGTERM: the signal goes to pid 1.
            if let Some(pid) = self.pid() {
                signal(pid, sig);
            }
        }
        let mut child = self.child.take()?;
        stop_child(&mut child, sig, Duration::from_secs(60))?.code()
    }

    /// Data directories of every member.
    pub fn data_dirs(&self) -> Vec<PathBuf> {
        (1..=self.members)
            .map(|k| self.dir.join(format!("n{k}")).join("data"))
            .collect()
    }
}

impl Drop for UpProcess {
    fn drop(&mut self) {
        self.terminate();
        if self.run_as == RunAs::Pid1 {
            // The namespace's processes died with its pid 1; the pids in `postmaster.pid`
            // are the namespace's, not to be signalled from here.
            return;
        }
        for data in self.data_dirs() {
            stop_postmaster(&data);
        }
    }
}
