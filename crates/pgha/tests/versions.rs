//! Issue 12: every supported PostgreSQL major version (14 to 18) runs the core scenarios against
//! real servers: bootstrap, stop-primary failover and rejoin, the best standby promoted after a
//! crash, a divergent rejoin through pg_rewind, a switchover, and synchronous mode `on` losing no
//! acknowledged write when the primary is killed.
//!
//! 15 is Debian's (`/usr/lib/postgresql/15/bin`); 14, 16, 17 and 18 are the relocatable server
//! builds `scripts/install-deps.sh test` fetches into `$PGHA_CACHE` (default `/var/cache/pgha`).
//! A missing one fails its test, naming the command that fetches it: nothing is skipped.
//!
//! One test per version, one 3-member `pgha up --pg-bin-dir` each, one at a time.
// The serial() guard is held for a whole test on purpose: it orders tests that each run a
// cluster, it guards no data an await could race on.
#![allow(clippy::await_holding_lock)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

/// One cluster at a time in this file.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

const CONVERGE: Duration = Duration::from_secs(30);

/// The server builds `scripts/install-deps.sh test` fetches (keep the two lists equal).
const FETCHED: &[(u32, &str)] = &[
    (14, "14.23.0"),
    (16, "16.15.0"),
    (17, "17.11.0"),
    (18, "18.6.0"),
];

/// `bin/` of the PostgreSQL `major` server programs; panics, saying how to get them, when absent.
fn bin_dir(major: u32) -> PathBuf {
    if major == 15 {
        let dir = PathBuf::from("/usr/lib/postgresql/15/bin");
        assert!(
            dir.join("postgres").exists(),
            "PostgreSQL 15 not found in {}: apt-get install postgresql-15",
            dir.display()
        );
        return dir;
    }
    let (_, version) = FETCHED
        .iter()
        .find(|(m, _)| *m == major)
        .unwrap_or_else(|| panic!("no server build of PostgreSQL {major} is fetched"));
    let cache = std::env::var_os("PGHA_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/pgha"));
    let dir = cache.join(format!("pg-{version}")).join("bin");
    assert!(
        dir.join("postgres").exists(),
        "PostgreSQL {version} not found in {}: run scripts/install-deps.sh test",
        dir.display()
    );
    dir
}

struct Cluster {
    up: UpProcess,
    _tmp: tempfile::TempDir,
}

impl Cluster {
    fn start(bin: &Path) -> Self {
        let tmp = test_dir();
        let bin = bin.to_str().unwrap();
        let mut up = UpProcess::spawn(
            &tmp.path().join("ha"),
            3,
            free_base_port(3),
            &["--pg-bin-dir", bin],
        );
        up.wait_streaming(Duration::from_secs(90));
        Cluster { up, _tmp: tmp }
    }

    fn dir(&self) -> &str {
        self.up.dir.to_str().unwrap()
    }

    fn run(&self, cmd: &str, args: &[&str]) -> Output {
        let mut all = vec![cmd, "--dir", self.dir()];
        all.extend(args);
        pgha(&all)
    }

    fn ok(&self, cmd: &str, args: &[&str]) -> String {
        let out = self.run(cmd, args);
        if !out.status.success() {
            self.fail(&format!("pgha {cmd} {args:?} failed: {}", stderr_of(&out)));
        }
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    fn history(&self) -> Vec<Value> {
        serde_json::from_str::<Value>(&self.ok("history", &["--json"]))
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }

    fn member_url(&self, name: &str) -> String {
        self.up.url(Some(name))
    }

    fn data_dir(&self, name: &str) -> PathBuf {
        self.up.dir.join(name).join("data")
    }

    /// Fails the test with the status, the history, the `pgha up` log and each member's
    /// PostgreSQL log.
    fn fail(&self, what: &str) -> ! {
        let mut pg_logs = String::new();
        for k in 1..=self.up.members {
            let file = self.up.dir.join(format!("n{k}")).join("postgresql.log");
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(40)..].join("\n");
            pg_logs.push_str(&format!("--- n{k} postgresql.log (tail) ---\n{tail}\n"));
        }
        let log = self.up.log();
        let lines: Vec<&str> = log.lines().collect();
        let log_tail = lines[lines.len().saturating_sub(300)..].join("\n");
        panic!(
            "{what}\nstatus: {:#?}\nhistory: {}\nlog (tail):\n{log_tail}\n{pg_logs}",
            self.up.status(),
            String::from_utf8_lossy(&self.run("history", &[]).stdout),
        )
    }

    fn wait_status<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&Value) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = self.up.status().as_ref().and_then(&mut check) {
                return v;
            }
            if Instant::now() > deadline {
                self.fail(&format!("timed out after {timeout:?} waiting for {what}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until a member other than those in `not` leads and runs as primary.
    fn wait_new_primary(&self, not: &[&str]) -> String {
        self.wait_status("a new primary", CONVERGE, |s| {
            primary_of(s).filter(|p| !not.contains(&p.as_str()))
        })
    }

    /// Waits until `primary` leads and both other members stream from it, in `pgha status`
    /// and in the primary's pg_stat_replication.
    async fn wait_converged(&self, primary: &str) {
        let standbys: BTreeSet<String> = ["n1", "n2", "n3"]
            .into_iter()
            .filter(|n| *n != primary)
            .map(String::from)
            .collect();
        let deadline = Instant::now() + CONVERGE;
        loop {
            let in_status = self.up.status().is_some_and(|s| {
                primary_of(&s).as_deref() == Some(primary)
                    && members(&s).iter().all(|m| {
                        m["name"] == primary
                            || (m["role"] == "standby" && m["state"] == "streaming")
                    })
            });
            if in_status && streaming_standbys(&self.member_url(primary)).await == standbys {
                return;
            }
            if Instant::now() > deadline {
                self.fail(&format!("not converged on {primary} after {CONVERGE:?}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until every member holds exactly the primary's rows; returns their count.
    async fn wait_identical(&self, primary: &str) -> i64 {
        let expected = checksum(&self.member_url(primary))
            .await
            .unwrap_or_else(|| self.fail("cannot read the primary's rows"));
        for name in ["n1", "n2", "n3"] {
            let deadline = Instant::now() + CONVERGE;
            loop {
                let got = checksum(&self.member_url(name)).await;
                if got.as_ref() == Some(&expected) {
                    break;
                }
                if Instant::now() > deadline {
                    self.fail(&format!(
                        "{name} does not hold the primary's rows: {got:?} != {expected:?}"
                    ));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        expected.0
    }

    /// Inserts `ids` on `member`, which must acknowledge each.
    async fn write(&self, member: &str, stage: &str, ids: std::ops::Range<i64>) {
        let client = connect(&self.member_url(member)).await;
        for id in ids {
            client
                .execute("INSERT INTO t(id, stage) VALUES ($1, $2)", &[&id, &stage])
                .await
                .unwrap_or_else(|e| self.fail(&format!("write {id} on {member}: {e}")));
        }
    }

    /// How many of `ids` `member` holds.
    async fn count(&self, member: &str, ids: std::ops::Range<i64>) -> i64 {
        let ids: Vec<i64> = ids.collect();
        connect(&self.member_url(member))
            .await
            .query_one("SELECT count(*) FROM t WHERE id = ANY($1)", &[&ids])
            .await
            .unwrap_or_else(|e| self.fail(&format!("count on {member}: {e}")))
            .get(0)
    }

    fn postmaster_pid(&self, member: &str) -> i32 {
        std::fs::read_to_string(self.data_dir(member).join("postmaster.pid"))
            .ok()
            .and_then(|t| t.lines().next()?.trim().parse().ok())
            .unwrap_or_else(|| self.fail(&format!("no postmaster.pid for {member}")))
    }
}

fn members(status: &Value) -> Vec<Value> {
    status["members"].as_array().cloned().unwrap_or_default()
}

/// The leader, if it runs as a primary.
fn primary_of(status: &Value) -> Option<String> {
    let leader = status["leader"].as_str()?;
    members(status)
        .iter()
        .any(|m| m["name"] == leader && m["role"] == "primary" && m["state"] == "running")
        .then(|| leader.to_string())
}

/// History entries of `kind` (e.g. "rejoin_rewind"), as (from, to).
fn events(history: &[Value], kind: &str) -> Vec<(String, String)> {
    history
        .iter()
        .filter(|e| e["kind"] == kind)
        .map(|e| {
            (
                e["from"].as_str().unwrap_or("-").to_string(),
                e["to"].as_str().unwrap_or("-").to_string(),
            )
        })
        .collect()
}

fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_string(), b.to_string())
}

/// The pids of `parent`'s children and their process titles.
fn children(parent: i32) -> Vec<(i32, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so split after its closing paren.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok());
        if ppid == Some(parent) {
            let title = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            out.push((pid, String::from_utf8_lossy(&title).replace('\0', " ")));
        }
    }
    out
}

/// Whether process `pid` is stopped (state T).
fn is_stopped(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let (_, rest) = s.rsplit_once(')')?;
            rest.split_whitespace().next().map(|st| st == "T")
        })
        .unwrap_or(false)
}

/// Inserts rows through the read-write entry point as fast as it can; never retries an id
/// whose outcome is unknown.
struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<i64>>>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

impl Writer {
    fn start(url: String, first_id: i64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let (stop2, acked2) = (stop.clone(), acked.clone());
        let handle = tokio::spawn(async move {
            let mut id = first_id;
            let mut client: Option<tokio_postgres::Client> = None;
            while !stop2.load(Ordering::SeqCst) {
                if client.is_none() {
                    client = try_connect(&url).await;
                    if client.is_none() {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                }
                let c = client.as_ref().unwrap();
                let r = tokio::time::timeout(
                    Duration::from_secs(30),
                    c.execute(
                        "INSERT INTO t(id, stage) VALUES ($1, 'sync-writer')",
                        &[&id],
                    ),
                )
                .await;
                match r {
                    Ok(Ok(_)) => acked2.lock().unwrap().push(id),
                    _ => client = None,
                }
                id += 1;
            }
        });
        Writer {
            stop,
            acked,
            handle: Some(handle),
        }
    }

    fn count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    async fn wait_more(&self, c: &Cluster, n: usize, timeout: Duration) {
        let target = self.count() + n;
        let deadline = Instant::now() + timeout;
        while self.count() < target {
            if Instant::now() > deadline {
                c.fail(&format!(
                    "writer: {} acknowledged, wanted {target} within {timeout:?}",
                    self.count()
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn finish(mut self) -> Vec<i64> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = tokio::time::timeout(Duration::from_secs(40), h).await;
        }
        self.acked.lock().unwrap().clone()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            h.abort();
        }
    }
}

/// The core scenarios on PostgreSQL `major`, in one cluster.
async fn core_scenarios(major: u32) {
    let t0 = Instant::now();
    let mut steps: Vec<String> = Vec::new();
    let mut lap = Instant::now();
    let mut step = |name: &str| {
        steps.push(format!("{name} {:.1}s", lap.elapsed().as_secs_f64()));
        lap = Instant::now();
    };
    let bin = bin_dir(major);

    // Bootstrap: a primary and two streaming standbys, all running the version asked for.
    let c = Cluster::start(&bin);
    c.wait_converged("n1").await;
    let mut versions = BTreeSet::new();
    for name in ["n1", "n2", "n3"] {
        let client = connect(&c.member_url(name)).await;
        let row = client
            .query_one(
                "SELECT current_setting('server_version'), current_setting('server_version_num')::int",
                &[],
            )
            .await
            .unwrap();
        let (version, num): (String, i32) = (row.get(0), row.get(1));
        if num / 10_000 != major as i32 || !version.starts_with(&format!("{major}.")) {
            c.fail(&format!(
                "{name} runs PostgreSQL {version} ({num}), not {major} from {}",
                bin.display()
            ));
        }
        versions.insert(version);
    }
    eprintln!(
        "PostgreSQL {major}: SHOW server_version = {versions:?} on n1, n2, n3 ({})",
        bin.display()
    );
    connect(&c.member_url("n1"))
        .await
        .batch_execute("CREATE TABLE t(id bigint PRIMARY KEY, stage text NOT NULL)")
        .await
        .unwrap();
    c.write("n1", "bootstrap", 0..10).await;
    c.wait_identical("n1").await;
    step("bootstrap");

    // Stop-primary failover: a clean stop, a caught-up standby takes over, the old primary
    // follows it without a rewind.
    c.ok("stop", &["n1"]);
    let first = c.wait_new_primary(&["n1"]);
    c.write(&first, "after-stop", 10..20).await;
    c.ok("start", &["n1"]);
    c.wait_converged(&first).await;
    assert_eq!(c.wait_identical(&first).await, 20);
    let history = c.history();
    assert_eq!(
        events(&history, "failover"),
        [pair("n1", &first)],
        "{history:#?}"
    );
    assert!(
        events(&history, "rejoin_rewind").is_empty()
            && events(&history, "rejoin_reclone").is_empty(),
        "a cleanly stopped primary needs no rewind: {history:#?}"
    );
    step("stop-failover");

    // Crash under writes, made deterministic: the primary's WAL sender to the standby the
    // tie-break favours (the smaller name) is frozen, rows go to the other standby only; then
    // both senders are frozen and rows go to the primary only (WAL no standby has). The
    // primary is killed: the standby that is ahead must win, the other follows it, and the old
    // primary, which diverged, rejoins through pg_rewind (not a re-clone).
    let old = first.clone();
    let mut standbys: Vec<&str> = ["n1", "n2", "n3"]
        .into_iter()
        .filter(|n| *n != old)
        .collect();
    standbys.sort();
    let (behind, ahead) = (standbys[0], standbys[1]);
    let senders: Vec<(i32, String)> = connect(&c.member_url(&old))
        .await
        .query(
            "SELECT pid, application_name FROM pg_stat_replication WHERE application_name <> ''",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let sender_to = |name: &str| {
        senders
            .iter()
            .find(|(_, app)| app == name)
            .map(|(pid, _)| *pid)
            .unwrap_or_else(|| c.fail(&format!("no WAL sender to {name}: {senders:?}")))
    };
    let freeze = |pid: i32| {
        kill(Pid::from_raw(pid), Signal::SIGSTOP).unwrap();
        wait_for("a frozen WAL sender", Duration::from_secs(5), || {
            is_stopped(pid).then_some(())
        });
    };
    let frozen = [sender_to(behind), sender_to(ahead)];
    freeze(frozen[0]);
    c.write(&old, "ahead-only", 100..120).await;
    let deadline = Instant::now() + CONVERGE;
    while c.count(ahead, 100..120).await != 20 {
        if Instant::now() > deadline {
            c.fail(&format!("{ahead} did not receive the rows {behind} lacks"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    freeze(frozen[1]);
    c.write(&old, "diverged", 200..220).await;
    assert_eq!(c.count(behind, 100..120).await, 0, "{behind} got rows");
    // An immediate stop: once the postmaster has sent SIGQUIT to its children (its
    // checkpointer is gone), the frozen senders are killed without ever running again.
    let postmaster = c.postmaster_pid(&old);
    let stop = {
        let (dir, old) = (c.dir().to_string(), old.clone());
        std::thread::spawn(move || pgha(&["stop", "--dir", &dir, &old, "--mode", "immediate"]))
    };
    wait_for(
        "the old primary's immediate shutdown",
        Duration::from_secs(30),
        || {
            let left = children(postmaster);
            if !left.iter().any(|(_, title)| title.contains("checkpointer")) {
                for pid in frozen {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
            stop.is_finished().then_some(())
        },
    );
    let out = stop.join().unwrap();
    if !out.status.success() {
        c.fail(&format!(
            "pgha stop {old} --mode immediate: {}",
            stderr_of(&out)
        ));
    }
    let promoted = c.wait_new_primary(&[&old]);
    if promoted != ahead {
        c.fail(&format!(
            "{promoted} was promoted, but {ahead} had received more WAL than {behind}"
        ));
    }
    assert_eq!(
        c.count(ahead, 200..220).await,
        0,
        "{ahead} got diverged rows"
    );
    c.write(ahead, "after-crash", 300..320).await;
    c.ok("start", &[&old]);
    c.wait_converged(ahead).await;
    assert_eq!(c.wait_identical(ahead).await, 60);
    for name in ["n1", "n2", "n3"] {
        assert_eq!(c.count(name, 200..220).await, 0, "diverged rows on {name}");
    }
    let history = c.history();
    assert_eq!(
        events(&history, "failover"),
        [pair("n1", &old), pair(&old, ahead)],
        "{history:#?}"
    );
    let rewinds = events(&history, "rejoin_rewind");
    assert!(
        rewinds.iter().any(|(from, _)| *from == old),
        "{old} diverged but did not rejoin through pg_rewind: {history:#?}"
    );
    assert!(
        !rewinds.iter().any(|(from, _)| from == behind),
        "{behind} was behind, not diverged: it must follow without a rewind: {history:#?}"
    );
    assert!(
        events(&history, "rejoin_reclone").is_empty(),
        "re-cloned instead of rewound: {history:#?}"
    );
    let kept_aside: Vec<String> = std::fs::read_dir(c.up.dir.join(&old))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("data.old"))
        .collect();
    assert!(kept_aside.is_empty(), "{old} was re-cloned: {kept_aside:?}");
    step("crash-best-standby-rewind");

    // Switchover to the member that followed: planned, nothing lost, no rewind.
    c.ok("switchover", &["--to", behind]);
    if primary_of(&c.up.status().unwrap()).as_deref() != Some(behind) {
        c.fail(&format!("{behind} does not lead after the switchover"));
    }
    c.write(behind, "after-switchover", 400..410).await;
    c.wait_converged(behind).await;
    assert_eq!(c.wait_identical(behind).await, 70);
    let history = c.history();
    assert_eq!(
        events(&history, "switchover"),
        [pair(ahead, behind)],
        "{history:#?}"
    );
    assert_eq!(events(&history, "rejoin_rewind").len(), 1, "{history:#?}");
    step("switchover");

    // Synchronous mode `on`, set live; the primary is killed under writes through the
    // read-write entry point: every acknowledged write is on the new primary.
    let out = pgha(&["config", "set", "--dir", c.dir(), "synchronous_mode=on"]);
    if !out.status.success() {
        c.fail(&format!(
            "config set synchronous_mode=on: {}",
            stderr_of(&out)
        ));
    }
    c.wait_status("a settled synchronous standby", CONVERGE, |s| {
        let sync = members(s)
            .iter()
            .filter(|m| m["sync_state"] == "sync")
            .count();
        let set = s["synchronous"]["set"].as_array().map_or(0, |a| a.len());
        (primary_of(s).as_deref() == Some(behind) && sync == 1 && set == 2).then_some(())
    });
    let names: String = connect(&c.member_url(behind))
        .await
        .query_one("SHOW synchronous_standby_names", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!names.is_empty(), "synchronous_standby_names is empty");
    let writer = Writer::start(c.up.url(None), 1_000_000);
    writer.wait_more(&c, 50, CONVERGE).await;
    let pid = c.postmaster_pid(behind);
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    c.ok("stop", &[behind, "--mode", "immediate"]);
    let last = c.wait_new_primary(&[behind]);
    writer.wait_more(&c, 50, CONVERGE).await;
    let acked = writer.finish().await;
    let present: BTreeSet<i64> = connect(&c.member_url(&last))
        .await
        .query("SELECT id FROM t WHERE id = ANY($1)", &[&acked])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let lost: Vec<i64> = acked
        .iter()
        .filter(|id| !present.contains(id))
        .copied()
        .collect();
    if !lost.is_empty() {
        c.fail(&format!(
            "synchronous mode on: {} of {} acknowledged writes lost after {behind} → {last}: {:?}",
            lost.len(),
            acked.len(),
            &lost[..lost.len().min(20)]
        ));
    }
    step("sync-on-kill");
    eprintln!(
        "PostgreSQL {major}: {} writes acknowledged through the kill, none lost; {} in {:.1}s",
        acked.len(),
        steps.join(", "),
        t0.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_14() {
    let _serial = serial();
    core_scenarios(14).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_15() {
    let _serial = serial();
    core_scenarios(15).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_16() {
    let _serial = serial();
    core_scenarios(16).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_17() {
    let _serial = serial();
    core_scenarios(17).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_18() {
    let _serial = serial();
    core_scenarios(18).await;
}

/// The versions tested here are the supported range pgha announces, and install-deps.sh
/// fetches exactly the builds this file expects.
#[test]
fn tested_versions_are_the_supported_range_and_fetched() {
    use pgha_pg::binaries::{MAX_TESTED_MAJOR, MIN_MAJOR};
    let mut majors: Vec<u32> = FETCHED.iter().map(|(m, _)| *m).collect();
    majors.push(15);
    majors.sort();
    assert_eq!(majors, (MIN_MAJOR..=MAX_TESTED_MAJOR).collect::<Vec<_>>());
    let script = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/install-deps.sh"
    ))
    .unwrap();
    let fetched: Vec<&str> = script
        .lines()
        .filter_map(|l| l.trim().strip_prefix("fetch_pg "))
        .collect();
    for (_, version) in FETCHED {
        assert!(
            fetched.contains(version),
            "scripts/install-deps.sh does not fetch PostgreSQL {version}: {fetched:?}"
        );
    }
}
