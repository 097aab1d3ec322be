//! A 3-member `pgha up` driven through the CLI: waits that fail with its status and logs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Output;
use std::sync::MutexGuard;
use std::time::Duration;

use nix::sys::signal::Signal;
use pgha_testkit::{checksum, children_of, connect, parent_of, poll, poll_async, postmaster_pid};
use pgha_testkit::{postgres_user, serial, signal, LoopDisk, PidSquatters};
use pgha_testkit::{streaming_standbys, tail, tail_of, value_becomes, Writer, WriterOptions};
use serde_json::Value;

use super::status::{members, primary_of, sync_states};
use super::{free_base_port, pgha, stderr_of, test_dir, UpProcess};

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
        let disk = LoopDisk::mount(&tmp.path().join("disk.img"), &tmp.path().join("disk"), "2G");
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

    /// Freezes `member`'s agent loop for `frozen` through the API (an injected fault: PostgreSQL
    /// runs on, its supervisor fences it once the deadline the agent armed passes).
    pub async fn freeze_agent(&self, member: &str, frozen: Duration) {
        use pgha_host::api::control::{FreezeRequest, MemberChanged};
        let cluster = pgha_host::LocalCluster::open(std::path::Path::new(self.dir())).unwrap();
        let settings = &cluster.config.cluster;
        let api = format!("{}:{}", settings.api_host(), settings.base_port + 2);
        let client = pgha_host::client::Client::new([api], cluster.secrets.api_token.clone(), None);
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

    /// Fails the test with the status, the history, the `pgha up` log and each member's
    /// PostgreSQL log.
    pub fn fail(&self, what: &str) -> ! {
        let mut pg_logs = String::new();
        for k in 1..=self.up.members {
            let file = self.up.dir.join(format!("n{k}")).join("postgresql.log");
            let tail = tail(&file, 40);
            pg_logs.push_str(&format!("--- n{k} postgresql.log (tail) ---\n{tail}\n"));
        }
        panic!(
            "{what}\nstatus: {:#?}\nhistory: {}\nlog (tail):\n{}\n{pg_logs}",
            self.up.status(),
            String::from_utf8_lossy(&self.run("history", &[]).stdout),
            tail_of(&self.up.log(), 300)
        )
    }

    /// Waits until `check(status)` returns Some.
    pub fn wait_status<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&Value) -> Option<T>,
    ) -> T {
        poll(timeout, Duration::from_millis(100), || {
            self.up.status().as_ref().and_then(&mut check)
        })
        .unwrap_or_else(|| self.fail(&format!("timed out after {timeout:?} waiting for {what}")))
    }

    /// Waits until a member other than those in `not` leads and runs as primary.
    pub fn wait_new_primary(&self, not: &[&str]) -> String {
        self.wait_status("a new primary", self.converge, |s| {
            primary_of(s).filter(|p| !not.contains(&p.as_str()))
        })
    }

    /// Waits until `primary` leads, the members in `down` are stopped, and every other member
    /// streams from it, in `pgha status` and in the primary's pg_stat_replication (where no one
    /// else streams).
    pub async fn wait_converged(&self, primary: &str, down: &[&str]) {
        let standbys: BTreeSet<String> = MEMBERS
            .into_iter()
            .filter(|n| *n != primary && !down.contains(n))
            .map(String::from)
            .collect();
        let standbys = &standbys;
        let converged = poll_async(self.converge, Duration::from_millis(100), || async move {
            let in_status = self.up.status().is_some_and(|s| {
                primary_of(&s).as_deref() == Some(primary)
                    && members(&s).iter().all(|m| {
                        let name = m["name"].as_str().unwrap();
                        if down.contains(&name) {
                            m["state"] == "stopped"
                        } else {
                            name == primary || (m["role"] == "standby" && m["state"] == "streaming")
                        }
                    })
            });
            let streaming =
                in_status && streaming_standbys(&self.member_url(primary)).await == *standbys;
            streaming.then_some(())
        })
        .await;
        if converged.is_none() {
            self.fail(&format!(
                "not converged on {primary} (standbys {standbys:?}, down {down:?}) after {:?}",
                self.converge
            ));
        }
    }

    /// Waits until every member in `names` holds exactly the rows of the primary; returns the
    /// primary's (count, checksum).
    pub async fn wait_identical(&self, primary: &str, names: &[&str]) -> (i64, String) {
        let expected = checksum(&self.member_url(primary))
            .await
            .unwrap_or_else(|| self.fail("cannot read the primary's rows"));
        for name in names {
            let url = self.member_url(name);
            let (url, expected) = (&url, &expected);
            let same = poll_async(self.converge, Duration::from_millis(100), || async move {
                (checksum(url).await.as_ref() == Some(expected)).then_some(())
            })
            .await;
            if same.is_none() {
                let got = checksum(url).await;
                self.fail(&format!(
                    "{name} does not hold the primary's rows: {got:?} != {expected:?}"
                ));
            }
        }
        expected
    }

    /// Creates [`CREATE_TABLE`] on n1.
    pub async fn create_table(&self) {
        connect(&self.member_url("n1"))
            .await
            .batch_execute(CREATE_TABLE)
            .await
            .unwrap();
    }

    /// Inserts `ids` on `member`, which must acknowledge each.
    pub async fn write(&self, member: &str, stage: &str, ids: std::ops::Range<i64>) {
        let client = connect(&self.member_url(member)).await;
        for id in ids {
            client
                .execute("INSERT INTO t(id, stage) VALUES ($1, $2)", &[&id, &stage])
                .await
                .unwrap_or_else(|e| self.fail(&format!("write {id} on {member}: {e}")));
        }
    }

    /// `SHOW setting` on `member`.
    pub async fn show(&self, member: &str, setting: &str) -> String {
        connect(&self.member_url(member))
            .await
            .query_one(&format!("SHOW {setting}"), &[])
            .await
            .unwrap_or_else(|e| self.fail(&format!("SHOW {setting} on {member}: {e}")))
            .get(0)
    }

    /// How many of `ids` `member` holds.
    pub async fn count(&self, member: &str, ids: impl IntoIterator<Item = i64>) -> i64 {
        let ids: Vec<i64> = ids.into_iter().collect();
        connect(&self.member_url(member))
            .await
            .query_one("SELECT count(*) FROM t WHERE id = ANY($1)", &[&ids])
            .await
            .unwrap_or_else(|e| self.fail(&format!("count on {member}: {e}")))
            .get(0)
    }

    /// The ids of `acked` that `member` does not hold.
    pub async fn lost(&self, member: &str, acked: &[i64]) -> Vec<i64> {
        let present: BTreeSet<i64> = connect(&self.member_url(member))
            .await
            .query("SELECT id FROM t WHERE id = ANY($1)", &[&acked])
            .await
            .unwrap_or_else(|e| self.fail(&format!("read the acknowledged rows on {member}: {e}")))
            .iter()
            .map(|r| r.get(0))
            .collect();
        acked
            .iter()
            .filter(|id| !present.contains(id))
            .copied()
            .collect()
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

    /// A writer through the read-write entry point, inserting into `t` from `first_id` on,
    /// connecting within `connect` and each write within `write`.
    pub fn entry_writer(&self, first_id: i64, connect: Duration, write: Duration) -> Writer {
        let insert = "INSERT INTO t(id, stage) VALUES ($1, 'writer')";
        let opts = WriterOptions {
            connect_timeout: connect,
            write_timeout: write,
            ..WriterOptions::new(insert, first_id)
        };
        Writer::to_url(self.up.url(None), opts)
    }

    /// A writer straight to whichever member leads and runs as primary (found with `pgha
    /// status`, reached with `pgha url --member`), reading the WAL position after each commit.
    pub fn primary_writer(&self, first_id: i64, pause: Duration) -> Writer {
        let dir = self.dir().to_string();
        let insert = "INSERT INTO t(id, stage) VALUES ($1, 'writer')";
        let opts = WriterOptions {
            pause,
            read_lsn: true,
            ..WriterOptions::new(insert, first_id)
        };
        Writer::start(opts, move || {
            let out = pgha(&["status", "--dir", &dir, "--json"]);
            let name = primary_of(&serde_json::from_slice(&out.stdout).ok()?)?;
            let url = pgha(&["url", "--password", "--dir", &dir, "--member", &name]);
            Some((
                name,
                String::from_utf8_lossy(&url.stdout).trim().to_string(),
            ))
        })
    }

    /// Waits until `writer` had `n` more writes acknowledged.
    pub async fn wait_writes(&self, writer: &Writer, n: usize, timeout: Duration) {
        if let Err(e) = writer.wait_more(n, timeout).await {
            self.fail(&e);
        }
    }

    /// Waits until `states` is exactly the standbys' sync_state in `pgha status`; how long
    /// that took.
    pub fn wait_sync_states(&self, states: &[(&str, &str)], timeout: Duration) -> Duration {
        let t0 = std::time::Instant::now();
        let want: BTreeMap<String, String> = states
            .iter()
            .map(|(n, s)| (n.to_string(), s.to_string()))
            .collect();
        self.wait_status(&format!("sync states {want:?}"), timeout, |s| {
            (sync_states(s) == want).then_some(())
        });
        t0.elapsed()
    }

    /// The one member whose sync_state is `sync`, once there is exactly one and the published
    /// set holds every streaming standby.
    pub fn wait_settled_sync(&self, timeout: Duration) -> String {
        self.wait_status("a settled synchronous standby", timeout, |s| {
            let states = sync_states(s);
            let sync: Vec<&String> = states
                .iter()
                .filter(|(_, v)| *v == "sync")
                .map(|(k, _)| k)
                .collect();
            let streaming = members(s)
                .iter()
                .filter(|m| m["state"] == "streaming")
                .count();
            let set = s["synchronous"]["set"].as_array().map_or(0, |a| a.len());
            (primary_of(s).is_some() && sync.len() == 1 && streaming == 2 && set == 2)
                .then(|| sync[0].clone())
        })
    }
}
