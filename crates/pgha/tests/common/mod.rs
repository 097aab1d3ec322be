//! Test harness: runs the real `pgha` binary against real PostgreSQL in a private directory on
//! free ports, and cleans every process up even when a test fails.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn pgha_bin() -> &'static str {
    env!("CARGO_BIN_EXE_pgha")
}

/// A temporary directory the `postgres` OS user can traverse (tests may run as root).
pub fn test_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("pgha-test-")
        .tempdir()
        .expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// A base port such that base..=base+10+members are all free right now.
pub fn free_base_port(members: u16) -> u16 {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    for _ in 0..200 {
        let base: u16 = rng.gen_range(16_000..32_000);
        if (0..=10 + members).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
    }
    panic!("no free port range found");
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

/// Waits until `check` returns Some, or panics after `timeout` with `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A running `pgha up` in its own directory.
pub struct UpProcess {
    pub dir: PathBuf,
    pub base: u16,
    pub members: u16,
    child: Option<Child>,
    log: PathBuf,
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
        static SPAWNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = SPAWNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = dir.with_extension(format!("up-{n}.log"));
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let members_s = members.to_string();
        let base_s = base.to_string();
        let mut args: Vec<&str> = vec!["up", "--dir", dir.to_str().unwrap()];
        if !dir.join("pgha.toml").exists() {
            args.extend(["--members", &members_s, "--port", &base_s]);
            args.extend(TEST_PARAMS);
        }
        args.extend(extra);
        let child = Command::new(pgha_bin())
            .args(&args)
            .stdout(Stdio::from(log_file.try_clone().unwrap()))
            .stderr(Stdio::from(log_file))
            .spawn()
            .expect("spawn pgha up");
        UpProcess {
            dir: dir.to_path_buf(),
            base,
            members,
            child: Some(child),
            log,
        }
    }

    /// Starts a cluster and waits until every standby streams.
    pub fn start(dir: &Path, members: u16) -> Self {
        let mut up = Self::spawn(dir, members, free_base_port(members), &[]);
        up.wait_streaming(Duration::from_secs(90));
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

    /// Waits until one primary runs and every other member streams.
    pub fn wait_streaming(&mut self, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.status() {
                let members = status["members"].as_array().unwrap();
                let primaries = members
                    .iter()
                    .filter(|m| m["role"] == "primary" && m["state"] == "running")
                    .count();
                let streaming = members.iter().filter(|m| m["state"] == "streaming").count();
                if primaries == 1 && streaming == members.len() - 1 {
                    return status;
                }
            }
            if let Some(code) = self.exited() {
                panic!(
                    "pgha up exited ({code}) before the cluster streamed; log:\n{}",
                    self.log()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "cluster not streaming after {timeout:?}; status: {:?}\nlog:\n{}",
                    self.status(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The pid of the `pgha up` process while it runs.
    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
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
        let mut args = vec!["url", "--dir", self.dir.to_str().unwrap()];
        if let Some(m) = member {
            args.extend(["--member", m]);
        }
        let out = pgha(&args);
        assert!(out.status.success(), "pgha url failed: {}", stderr_of(&out));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// Sends SIGTERM and waits for a clean exit; returns the exit status code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
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
        for data in self.data_dirs() {
            stop_postgres_immediately(&data);
        }
    }
}

/// Stops whatever postmaster runs on `data` (used in cleanup; ignores errors).
pub fn stop_postgres_immediately(data: &Path) {
    let Ok(text) = std::fs::read_to_string(data.join("postmaster.pid")) else {
        return;
    };
    if let Some(pid) = text
        .lines()
        .next()
        .and_then(|l| l.trim().parse::<i32>().ok())
    {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGQUIT,
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Connects with tokio-postgres to a libpq URI.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// A superuser connection to `url`, or `None` when it cannot be had within 3 s.
pub async fn try_connect(url: &str) -> Option<tokio_postgres::Client> {
    let (client, conn) = tokio::time::timeout(
        Duration::from_secs(3),
        tokio_postgres::connect(url, tokio_postgres::NoTls),
    )
    .await
    .ok()?
    .ok()?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Some(client)
}

/// Application names streaming from the PostgreSQL at `url`.
pub async fn streaming_standbys(url: &str) -> BTreeSet<String> {
    let Some(client) = try_connect(url).await else {
        return BTreeSet::new();
    };
    client
        .query(
            "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'",
            &[],
        )
        .await
        .map(|rows| rows.iter().map(|r| r.get(0)).collect())
        .unwrap_or_default()
}

/// Row count and an md5 over every row of `t`, in id order.
pub async fn checksum(url: &str) -> Option<(i64, String)> {
    let client = try_connect(url).await?;
    let row = client
        .query_one(
            "SELECT count(*), coalesce(md5(string_agg(id::text || ':' || stage, ',' ORDER BY id)), '') FROM t",
            &[],
        )
        .await
        .ok()?;
    Some((row.get(0), row.get(1)))
}
