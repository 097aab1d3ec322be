//! A 3-member `pgha up` driven through the CLI: waits that fail with its status and logs.

use std::path::PathBuf;
use std::process::Output;
use std::sync::MutexGuard;
use std::time::Duration;

use nix::sys::signal::Signal;
use pgha_testkit::{children_of, parent_of, postgres_user, postmaster_pid, serial, signal};
use pgha_testkit::{value_becomes, LoopDisk, PidSquatters};
use serde_json::Value;

use super::status::{members, primary_of, sync_states};
use super::{free_base_port, pgha, stderr_of, test_dir, UpProcess};

mod waits;
mod writes;

/// The members of every cluster started here.
pub const MEMBERS: [&str; 3] = ["n1", "n2", "n3"];

/// The table the tests write: `t(id, stage)`.
pub const CREATE_TABLE: &str = "CREATE TABLE t(id bigint PRIMARY KEY, stage text NOT NULL)";

/// One at a time in a test binary: it holds the binary's [`serial`] lock while it lives (a
/// 2-core machine runs one 3-member cluster well, two of them badly).
pub struct Cluster {
    pub up: UpProcess,
    /// How long the `wait_*` helpers wait for the cluster to settle.
    pub converge: Duration,
    /// The disk of its own the cluster's directory is on ([`Cluster::start_on_own_disk`]).
    disk: Option<LoopDisk>,
    _tmp: tempfile::TempDir,
    // last: released once the cluster is gone
    _serial: MutexGuard<'static, ()>,
}

impl Cluster {
    /// `pgha up --members 3 [extra]` in a fresh directory, once every standby streams.
    pub fn start(extra: &[&str], converge: Duration) -> Cluster {
        let serial = serial();
        let tmp = test_dir();
        let mut up = UpProcess::spawn(&tmp.path().join("ha"), 3, free_base_port(3), extra);
        up.wait_streaming(Duration::from_secs(90));
        Cluster {
            up,
            converge,
            disk: None,
            _tmp: tmp,
            _serial: serial,
        }
    }

    /// [`Cluster::start`] with the cluster's directory on a disk of its own (an ext4 image
    /// through a loop device), so that a test can cut the machine's power.
    pub fn start_on_own_disk(extra: &[&str], converge: Duration) -> Cluster {
        let serial = serial();
        let tmp = test_dir();
        let disk = LoopDisk::mount(
            &tmp.path().join("disk-image"),
            &tmp.path().join("disk"),
            2048,
        );
        let dir = disk.path().join("ha");
        let mut up = UpProcess::spawn(&dir, 3, free_base_port(3), extra);
        up.wait_streaming(Duration::from_secs(90));
        Cluster {
            up,
            converge,
            disk: Some(disk),
            _tmp: tmp,
            _serial: serial,
        }
    }

    /// The machine loses power: `pgha up` and every supervisor, postmaster and backend are
    /// stopped, then killed, in one instant, and the cluster's disk keeps only what was synced
    /// to it ([`LoopDisk::lose_power`]).
    pub fn lose_power(&mut self) {
        let mut pids: Vec<u32> = self.up.pid().into_iter().collect();
        for data in self.up.data_dirs() {
            if let Some(pm) = postmaster_pid(&data) {
                pids.extend(parent_of(pm));
                pids.push(pm);
                pids.extend(children_of(pm));
            }
        }
        // stopped first, so that none of them sees another one die
        for pid in &pids {
            signal(*pid, Signal::SIGSTOP);
        }
        for pid in &pids {
            signal(*pid, Signal::SIGKILL);
        }
        self.up.kill9();
        let disk = self.disk.as_mut().expect("a cluster on a disk of its own");
        disk.lose_power();
    }

    /// A machine back from a crash hands out pids again, and the pid a `postmaster.pid` left
    /// by the crash names may belong to another process now: the first member's to a process
    /// of root, the second's to one of the PostgreSQL OS user; the third's stays free.
    pub fn reuse_postmaster_pids(&self) -> PidSquatters {
        let dirs = self.up.data_dirs();
        let mut squatters = PidSquatters::default();
        squatters.squat(&dirs[0], None);
        squatters.squat(&dirs[1], Some(postgres_user()));
        squatters
    }

    /// The power is back: `pgha up` again on what the disk kept, once every standby streams.
    pub fn power_back(&mut self) {
        self.up.restart(&[]);
        self.up.wait_streaming(Duration::from_secs(120));
    }

    pub fn dir(&self) -> &str {
        self.up.dir.to_str().unwrap()
    }

    /// `pgha CMD --dir DIR ARGS...`
    pub fn run(&self, cmd: &str, args: &[&str]) -> Output {
        let mut all = vec![cmd, "--dir", self.dir()];
        all.extend(args);
        pgha(&all)
    }

    /// Like [`Cluster::run`], but the command must succeed; its stdout.
    pub fn ok(&self, cmd: &str, args: &[&str]) -> String {
        self.succeeded(&format!("pgha {cmd} {args:?}"), self.run(cmd, args))
    }

    /// `pgha config SUB --dir DIR ARGS...`
    pub fn config(&self, sub: &str, args: &[&str]) -> Output {
        let mut all = vec!["config", sub, "--dir", self.dir()];
        all.extend(args);
        pgha(&all)
    }

    /// Like [`Cluster::config`], but the command must succeed; its stdout.
    pub fn config_ok(&self, sub: &str, args: &[&str]) -> String {
        self.succeeded(
            &format!("pgha config {sub} {args:?}"),
            self.config(sub, args),
        )
    }

    fn succeeded(&self, what: &str, out: Output) -> String {
        if !out.status.success() {
            self.fail(&format!("{what} failed: {}", stderr_of(&out)));
        }
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// The API's client, as `pgha` itself reaches this cluster.
    fn api_client(&self) -> pgha_host::client::Client {
        let cluster = pgha_host::LocalCluster::open(std::path::Path::new(self.dir())).unwrap();
        let settings = &cluster.config.cluster;
        let api = format!("{}:{}", settings.api_host(), settings.base_port + 2);
        pgha_host::client::Client::new([api], cluster.secrets.api_token.clone(), None)
    }

    /// The members' records in the store (`/cluster`): what a request is checked against,
    /// published at most once a loop, where `pgha status` shows each PostgreSQL live.
    pub async fn store_records(&self) -> pgha_host::api::read::ClusterRecord {
        self.api_client().get("/cluster").await.unwrap()
    }

    /// Freezes `member`'s agent loop for `frozen` through the API (an injected fault: PostgreSQL
    /// runs on, its supervisor fences it once the deadline the agent armed passes).
    pub async fn freeze_agent(&self, member: &str, frozen: Duration) {
        use pgha_host::api::control::{FreezeRequest, MemberChanged};
        let client = self.api_client();
        let request = FreezeRequest {
            for_ms: frozen.as_millis() as u64,
        };
        let path = format!("/members/{member}/agent/freeze");
        let answer: MemberChanged = client.post(&path, &request).await.unwrap();
        assert!(answer.changed, "{member}'s agent was not frozen");
    }

    pub fn history(&self) -> Vec<Value> {
        serde_json::from_str::<Value>(&self.ok("history", &["--json"]))
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }

    pub fn member_url(&self, name: &str) -> String {
        self.up.url(Some(name))
    }

    /// `wal_sender_timeout` and `wal_receiver_timeout` set to PostgreSQL's 60 s (the user's
    /// values win over pgha's ttl-based ones), once every member applies them: for a test
    /// that holds a replication connection back (a frozen WAL sender, its packets dropped)
    /// longer than pgha's timeouts would let it stand, and must not see it replaced.
    pub async fn replication_timeouts_of_a_minute(&self) {
        self.config_ok(
            "set",
            &[
                "postgresql.wal_receiver_timeout=60s",
                "postgresql.wal_sender_timeout=60s",
            ],
        );
        for member in MEMBERS {
            let applied = value_becomes(
                &self.member_url(member),
                "SHOW wal_receiver_timeout",
                Duration::from_secs(30),
                |value: &String| value == "1min",
            )
            .await;
            if !applied {
                self.fail(&format!(
                    "{member}: wal_receiver_timeout not 60 s within 30 s"
                ));
            }
        }
    }

    pub fn data_dir(&self, name: &str) -> PathBuf {
        self.up.dir.join(name).join("data")
    }

    /// The pid of `member`'s running postmaster.
    pub fn postmaster_pid(&self, member: &str) -> u32 {
        postmaster_pid(&self.data_dir(member))
            .unwrap_or_else(|| self.fail(&format!("no running postmaster for {member}")))
    }

    /// SIGKILL of `member`'s postmaster (a crash of PostgreSQL alone); its pid.
    pub fn kill_postmaster(&self, member: &str) -> u32 {
        let pid = self.postmaster_pid(member);
        assert!(
            signal(pid, Signal::SIGKILL),
            "SIGKILL to {member}'s postmaster"
        );
        pid
    }
}
