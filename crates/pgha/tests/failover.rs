//! End-to-end failover, switchover and rejoin: the seeds' scenarios of issue 5 against real
//! PostgreSQL, plus manual failover, pause/resume and refused requests.
//!
//! Each test runs its own 3-member `pgha up` on free ports; the tests of this file run one at a
//! time (a 2-core machine runs one 3-member cluster well, two of them badly).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::cluster::Cluster;
use common::status::{events, members, no_rewind, primaries, primary_of};
use pgha_testkit::{connect, fmt_lsn, lsn, postmaster_pid, refused, try_connect, wait_until};

const CONVERGE: Duration = Duration::from_secs(25);

fn start() -> Cluster {
    Cluster::start(&[], CONVERGE)
}

/// A cluster with the table `t` created on it.
async fn start_with_table() -> Cluster {
    let c = start();
    c.create_table().await;
    c
}

/// A cluster whose table holds ids 0..10 (`stage`) on every member.
async fn start_with_rows(stage: &str) -> Cluster {
    let c = start_with_table().await;
    c.write("n1", stage, 0..10).await;
    c.wait_identical("n1", &["n2", "n3"]).await;
    c
}

/// Stops n1, the primary; the member that takes over, once it acknowledged ids 10..20 (`stage`).
async fn stop_n1_and_write_on_its_successor(c: &Cluster, stage: &str) -> String {
    c.ok("stop", &["n1"]);
    let new = c.wait_new_primary(&["n1"]);
    c.write(&new, stage, 10..20).await;
    new
}

/// Where the member at `url` (a primary on timeline `tl`) left timeline `parent`: read from
/// its timeline history file.
async fn switch_point(url: &str, tl: u64, parent: u64) -> u64 {
    let client = connect(url).await;
    let file = format!("pg_wal/{tl:08X}.history");
    let text: String = client
        .query_one("SELECT pg_read_file($1)", &[&file])
        .await
        .unwrap()
        .get(0);
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?.parse::<u64>().ok()?, lsn(f.next()?)))
        })
        .find(|(t, _)| *t == parent)
        .map(|(_, at)| at)
        .unwrap_or_else(|| panic!("timeline {parent} not in {file}: {text}"))
}

fn server_bin(name: &str) -> PathBuf {
    let out = std::process::Command::new("pg_config")
        .arg("--bindir")
        .output();
    if let Ok(out) = out {
        let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join(name);
        if p.exists() {
            return p;
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.flatten()
                .map(|e| e.path().join("bin").join(name))
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions
        .pop()
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Whether the stopped PostgreSQL in `data` holds WAL records on `timeline` at or past `at`,
/// i.e. WAL that a member which left `timeline` at `at` never had.
fn has_wal_past(data: &Path, timeline: u64, at: u64) -> bool {
    let out = std::process::Command::new(server_bin("pg_waldump"))
        .arg("--path")
        .arg(data.join("pg_wal"))
        .args(["--timeline", &timeline.to_string(), "--start", &fmt_lsn(at)])
        .output()
        .expect("run pg_waldump");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let records = stdout.lines().filter(|l| l.starts_with("rmgr:")).count();
    if records == 0 {
        // The only acceptable reason for no record: nothing is there.
        assert!(
            stderr.contains("could not find a valid record")
                || stderr.contains("invalid record length")
                || stderr.contains("record with incorrect prev-link"),
            "pg_waldump failed unexpectedly: {stderr}"
        );
    }
    records > 0
}

// ---------------------------------------------------------------------------------------------

/// Seed scenario 1: the primary is stopped; a standby takes over, takes writes, the third
/// member follows it; the old primary comes back as its standby with identical data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_primary_fails_over_and_rejoins() {
    let c = start_with_rows("before").await;

    let new = stop_n1_and_write_on_its_successor(&c, "after-failover").await;
    let third = if new == "n2" { "n3" } else { "n2" };
    c.wait_converged(&new, &["n1"]).await;
    let history = c.history();
    assert_eq!(
        events(&history, "failover"),
        [("n1".to_string(), new.clone())],
        "{history:#?}"
    );
    // Issue 14: the stopped old primary is not shown as a second primary.
    let status = c.up.status().unwrap();
    let n1 = &status["members"].as_array().unwrap()[0];
    assert_eq!(
        (&n1["name"], &n1["role"], &n1["state"]),
        (&"n1".into(), &"former_primary".into(), &"stopped".into()),
        "{status}"
    );
    let table = c.ok("status", &[]);
    let primaries = table
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some("primary"))
        .count();
    assert_eq!(primaries, 1, "{table}");

    c.ok("start", &["n1"]);
    c.wait_converged(&new, &[]).await;
    let (rows, _) = c.wait_identical(&new, &["n1", third]).await;
    assert_eq!(rows, 20);
    // n1 had nothing its successor lacked: it followed without a rewind.
    let history = c.history();
    assert!(no_rewind(&history), "{history:#?}");
}

/// Seed scenario 2: n1 → n2 → n1 by stopping the current primary twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_by_stopping_the_primary_twice() {
    let c = start_with_rows("stage-1").await;

    let first = stop_n1_and_write_on_its_successor(&c, "stage-2").await;
    c.ok("start", &["n1"]);
    c.wait_converged(&first, &[]).await;
    c.write(&first, "stage-3", 20..30).await;
    c.wait_identical(&first, &["n1", "n2", "n3"]).await;

    // Back to n1: the third member is stopped first, so n1 is the only candidate left.
    let third = if first == "n2" { "n3" } else { "n2" };
    c.ok("stop", &[third]);
    c.wait_converged(&first, &[third]).await;
    c.ok("stop", &[&first]);
    let second = c.wait_new_primary(&[&first, third]);
    assert_eq!(second, "n1");
    c.write("n1", "stage-4", 30..40).await;
    c.ok("start", &[&first]);
    c.ok("start", &[third]);
    c.wait_converged("n1", &[]).await;
    c.write("n1", "stage-5", 40..50).await;
    let (rows, _) = c.wait_identical("n1", &["n2", "n3"]).await;
    assert_eq!(rows, 50);
    for name in ["n1", "n2", "n3"] {
        assert_eq!(c.count(name, 0..50).await, 50, "{name}");
    }
    let history = c.history();
    assert_eq!(
        events(&history, "failover"),
        [
            ("n1".to_string(), first.clone()),
            (first.clone(), "n1".to_string())
        ],
        "{history:#?}"
    );
}

/// Seed scenario 3: the primary crashes (`stop --mode immediate`) under a write load, so it may
/// hold WAL its standbys never got; after failover and more writes it rejoins — by pg_rewind
/// when its WAL went past the switch point — and ends identical to the new primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_primary_under_load_rejoins_by_rewind_when_diverged() {
    let c = start_with_table().await;
    let writer = c.primary_writer(1_000_000, Duration::ZERO);
    c.wait_writes(&writer, 200, Duration::from_secs(15)).await;

    c.ok("stop", &["n1", "--mode", "immediate"]);
    let new = c.wait_new_primary(&["n1"]);
    c.wait_writes(&writer, 100, Duration::from_secs(15)).await;
    let acked = writer.finish().await;
    c.write(&new, "after-failover", 0..10).await;

    // Did n1 write WAL past the point where its successor left timeline 1?
    let status = c.up.status().unwrap();
    let new_tl = members(&status)
        .iter()
        .find(|m| m["name"] == new.as_str())
        .and_then(|m| m["timeline"].as_u64())
        .unwrap();
    assert_eq!(new_tl, 2, "{status:#?}");
    let switch = switch_point(&c.member_url(&new), new_tl, 1).await;
    let diverged = has_wal_past(&c.data_dir("n1"), 1, switch);
    // Cross-check with what the writer saw: an acknowledged commit on n1 whose WAL ended past
    // the switch point proves divergence (and, in asynchronous mode, a lost write).
    let n1_max = acked
        .iter()
        .filter(|a| a.member == "n1")
        .filter_map(|a| a.lsn_after)
        .max()
        .unwrap_or(0);
    if n1_max > switch {
        assert!(
            diverged,
            "n1 acknowledged up to {} past the switch point {}",
            fmt_lsn(n1_max),
            fmt_lsn(switch)
        );
    }
    eprintln!(
        "switch point {}, n1 acknowledged up to {}, n1 WAL past the switch point: {diverged}",
        fmt_lsn(switch),
        fmt_lsn(n1_max)
    );

    c.ok("start", &["n1"]);
    c.wait_converged(&new, &[]).await;
    c.wait_identical(&new, &["n1", "n2", "n3"]).await;
    let history = c.history();
    let rewound = events(&history, "rejoin_rewind")
        .into_iter()
        .chain(events(&history, "rejoin_reclone"))
        .any(|(from, _)| from == "n1");
    // Diverged: only a rewind (or re-clone) can bring n1 back. Not diverged: following
    // directly is right, and a rewind is acceptable too, since finishing n1's crash recovery
    // (single-user mode) writes a shutdown checkpoint past the switch point.
    if diverged {
        assert!(
            rewound,
            "n1 diverged but did not rejoin by rewind/re-clone: {history:#?}"
        );
    }
    assert!(
        history
            .iter()
            .any(|e| e["from"] == "n1" && e["kind"].as_str().unwrap_or("").starts_with("rejoin_")),
        "n1's rejoin is not in the history: {history:#?}"
    );
    // Every write acknowledged by the new primary is everywhere.
    let after: Vec<i64> = acked
        .iter()
        .filter(|a| a.member == new)
        .map(|a| a.id)
        .collect();
    assert!(!after.is_empty());
    for name in ["n1", "n2", "n3"] {
        assert_eq!(
            c.count(name, after.iter().copied()).await,
            after.len() as i64,
            "{name}"
        );
    }
}

/// Seed scenario 4: switchover n1 → n2 → n1 with a writer running; no acknowledged write
/// missing anywhere, and no rewind (a planned switchover loses nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchover_round_trip_under_writes_loses_nothing() {
    let c = start_with_table().await;
    let writer = c.primary_writer(0, Duration::from_millis(10));
    c.wait_writes(&writer, 20, Duration::from_secs(10)).await;

    c.ok("switchover", &["--to", "n2"]);
    assert_eq!(primary_of(&c.up.status().unwrap()).as_deref(), Some("n2"));
    c.wait_writes(&writer, 20, Duration::from_secs(15)).await;
    c.wait_converged("n2", &[]).await;

    c.ok("switchover", &["--to", "n1"]);
    assert_eq!(primary_of(&c.up.status().unwrap()).as_deref(), Some("n1"));
    c.wait_writes(&writer, 20, Duration::from_secs(15)).await;
    let acked = writer.finish().await;
    c.wait_converged("n1", &[]).await;
    c.wait_identical("n1", &["n2", "n3"]).await;

    let ids: Vec<i64> = acked.iter().map(|a| a.id).collect();
    let by: BTreeSet<&str> = acked.iter().map(|a| a.member.as_str()).collect();
    assert_eq!(
        by,
        BTreeSet::from(["n1", "n2"]),
        "writes went to both primaries"
    );
    for name in ["n1", "n2", "n3"] {
        assert_eq!(
            c.count(name, ids.iter().copied()).await,
            ids.len() as i64,
            "acknowledged writes missing on {name}"
        );
    }
    let history = c.history();
    assert_eq!(
        events(&history, "switchover"),
        [
            ("n1".to_string(), "n2".to_string()),
            ("n2".to_string(), "n1".to_string())
        ],
        "{history:#?}"
    );
    assert!(
        no_rewind(&history),
        "a switchover must not need a rewind: {history:#?}"
    );
}

/// Seed scenario 5: kill -9 of the primary's postmaster; the cluster converges to one primary
/// (restarted or failed over) with every other member streaming, and takes writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_postmaster_converges() {
    let c = start_with_rows("before").await;

    let pid = c.kill_postmaster("n1");
    // Converged after the crash: a primary that is not the killed process.
    let primary = c.wait_status("a primary after the kill", CONVERGE, |s| {
        let p = primary_of(s)?;
        let restarted = postmaster_pid(&c.data_dir(&p)).is_some_and(|new| new != pid);
        (restarted && primaries(s) == 1).then_some(p)
    });
    c.wait_converged(&primary, &[]).await;
    c.write(&primary, "after", 10..20).await;
    let (rows, _) = c.wait_identical(&primary, &["n1", "n2", "n3"]).await;
    assert_eq!(rows, 20);
}

/// `pgha failover --to` while the primary is healthy and the target caught up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_failover_to_a_caught_up_standby() {
    let c = start_with_rows("before").await;

    c.ok("failover", &["--to", "n3"]);
    assert_eq!(primary_of(&c.up.status().unwrap()).as_deref(), Some("n3"));
    c.wait_converged("n3", &[]).await;
    c.write("n3", "after", 10..20).await;
    let (rows, _) = c.wait_identical("n3", &["n1", "n2"]).await;
    assert_eq!(rows, 20);
    let history = c.history();
    assert_eq!(
        events(&history, "manual_failover"),
        [("n1".to_string(), "n3".to_string())],
        "{history:#?}"
    );
}

/// Paused: stopping the primary does not fail over (past the lease TTL); resumed: it does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_cluster_does_not_fail_over_until_resumed() {
    let c = start_with_table().await;
    c.write("n1", "before", 0..10).await;

    c.ok("pause", &[]);
    c.wait_status("paused", Duration::from_secs(5), |s| {
        (s["paused"] == true).then_some(())
    });
    c.ok("stop", &["n1"]);
    // Watch for longer than the lease TTL (10 s) plus a tick: no member may be promoted.
    let window = Duration::from_secs(12);
    let until = Instant::now() + window;
    while Instant::now() < until {
        if let Some(s) = c.up.status() {
            let promoted: Vec<String> = members(&s)
                .iter()
                .filter(|m| m["name"] != "n1" && m["role"] == "primary")
                .map(|m| m["name"].to_string())
                .collect();
            if !promoted.is_empty() {
                c.fail(&format!("{promoted:?} promoted while paused"));
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(events(&c.history(), "failover").is_empty());

    c.ok("resume", &[]);
    let new = c.wait_new_primary(&["n1"]);
    c.wait_converged(&new, &["n1"]).await;
    c.write(&new, "after", 10..20).await;
    assert_eq!(
        events(&c.history(), "failover"),
        [("n1".to_string(), new.clone())]
    );
}

/// Switchover to an unknown member or to the current leader is refused clearly, changing
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchover_refusals() {
    let c = start();

    let err = refused("a switchover to n9", &c.run("switchover", &["--to", "n9"]));
    assert!(err.contains("n9") && err.contains("not"), "{err}");

    let err = refused("a switchover to n1", &c.run("switchover", &["--to", "n1"]));
    assert!(
        err.contains("n1") && err.contains("already the leader"),
        "{err}"
    );

    let why = refused("a failover to n9", &c.run("failover", &["--to", "n9"]));
    assert!(why.contains("n9"), "{why}");

    c.wait_converged("n1", &[]).await;
    let history = c.history();
    assert_eq!(
        history.iter().filter(|e| e["kind"] != "bootstrap").count(),
        0,
        "{history:?}"
    );
}

/// Issue 9, item 5: once its upstream is gone (the walreceiver stops), a standby that followed
/// a failover still reports the new timeline, not its last restartpoint's: ranked by timeline
/// first, a stale one could lose to a less advanced standby.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_keeps_reporting_its_new_timeline_when_its_upstream_dies() {
    let c = start_with_table().await;
    c.write("n1", "before", 0..10).await;
    c.ok("stop", &["n1"]);
    let primary = c.wait_new_primary(&["n1"]);
    c.wait_converged(&primary, &["n1"]).await;
    let other = if primary == "n2" { "n3" } else { "n2" };
    c.write(&primary, "after", 10..20).await;
    c.wait_identical(&primary, &[other]).await;
    c.ok("pause", &[]);
    c.kill_postmaster(&primary);
    let timeline = c.wait_status(
        "the standby's timeline without its upstream",
        CONVERGE,
        |s| {
            let m = members(s).into_iter().find(|m| m["name"] == other)?;
            (m["state"] != "streaming").then(|| m["timeline"].as_u64())?
        },
    );
    assert_eq!(
        timeline, 2,
        "{other} lost its upstream on timeline 2 and must say so"
    );
    c.ok("resume", &[]);
}

/// Issue 14: `pgha reinit` re-clones a standby from the leader, keeping its old data directory
/// aside; it is refused for the leader, and asks before acting unless given --force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reinit_reclones_a_standby_and_keeps_its_old_data() {
    let c = start_with_rows("before").await;
    let err = refused(
        "a reinit of the leader",
        &c.run("reinit", &["n1", "--force"]),
    );
    assert!(err.contains("n1 is the leader"), "{err}");
    let err = refused("a reinit without --force", &c.run("reinit", &["n3"]));
    assert!(err.contains("--force"), "{err}");

    let marker = c.data_dir("n3").join("reinit-marker");
    std::fs::write(&marker, "from before the re-clone").unwrap();
    let out = c.ok("reinit", &["n3", "--force"]);
    assert!(out.contains("old data kept in"), "{out}");
    let kept = old_data_dirs(c.data_dir("n3").parent().unwrap());
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(
        kept[0].join("reinit-marker").exists(),
        "the old data was not kept"
    );

    c.wait_converged("n1", &[]).await;
    c.write("n1", "after", 10..20).await;
    let (rows, _) = c.wait_identical("n1", &["n2", "n3"]).await;
    assert_eq!(rows, 20);
    assert!(!marker.exists(), "n3 was not re-cloned");

    // A data directory that lost its PG_VERSION reads as no data: the member clones again,
    // and the files that were there are kept aside, not deleted (before: removed as "an
    // empty, uninitialised data directory").
    c.ok("stop", &["n2"]);
    std::fs::remove_file(c.data_dir("n2").join("PG_VERSION")).unwrap();
    let member_dir = c.data_dir("n2").parent().unwrap().to_path_buf();
    c.ok("start", &["n2"]);
    c.wait_converged("n1", &[]).await;
    let kept = old_data_dirs(&member_dir);
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(
        kept[0].join("global/pg_control").exists() && kept[0].join("base").is_dir(),
        "n2's old files were not kept in {}",
        kept[0].display()
    );
    c.write("n1", "again", 20..30).await;
    let (rows, _) = c.wait_identical("n1", &["n2", "n3"]).await;
    assert_eq!(rows, 30);
}

/// The `data.old-*` directories in `member_dir`.
fn old_data_dirs(member_dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(member_dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("data.old-")
        })
        .collect()
}

/// Issue 14: a scheduled switchover waits for its instant (shown in `pgha status` until then),
/// then hands over like any switchover; one scheduled for later can be withdrawn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_switchover_runs_at_its_time_and_can_be_withdrawn() {
    let c = start_with_rows("before").await;
    let out = c.ok("switchover", &["--to", "n2", "--at", "+4s"]);
    assert!(out.contains("scheduled for"), "{out}");
    let table = c.ok("status", &[]);
    assert!(table.contains("Switchover to n2 scheduled for"), "{table}");
    let status = c.up.status().unwrap();
    assert_eq!(status["leader"], "n1", "it ran before its time: {status}");
    c.wait_status("n2 leading", CONVERGE, |s| {
        (s["leader"] == "n2").then_some(())
    });
    // n2 holds the key before it has promoted and recorded the switchover
    let history = wait_until("the switchover recorded", CONVERGE, || {
        let history = c.history();
        (!events(&history, "switchover").is_empty()).then_some(history)
    });
    assert_eq!(
        events(&history, "switchover"),
        [("n1".to_string(), "n2".to_string())],
        "{history:#?}"
    );
    let table = c.ok("status", &[]);
    assert!(!table.contains("scheduled"), "{table}");

    let out = c.ok("switchover", &["--to", "n1", "--at", "+1h"]);
    assert!(out.contains("scheduled for"), "{out}");
    let out = c.ok("switchover", &["--cancel"]);
    assert!(out.contains("withdrew the switchover to n1"), "{out}");
    let status = c.up.status().unwrap();
    assert!(status.get("switchover").is_none(), "{status}");
    let why = refused(
        "a switchover at next tuesday",
        &c.run("switchover", &["--at", "next tuesday"]),
    );
    assert!(why.contains("--at"), "{why}");
}

/// A leader whose agent stands still (its loop frozen through the API: how `pgha chaos`
/// pauses an agent of `pgha up`, whose agents share one process) is fenced by its supervisor
/// once its lease deadline passes, another member takes over while it is still frozen, and
/// after the thaw it rejoins as a standby: one writer throughout, nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_leader_agent_is_fenced_replaced_and_rejoins() {
    let c = start_with_rows("before").await;
    // The lease ttl is 10 s: frozen for longer than the takeover needs.
    let frozen = Duration::from_secs(20);
    let t0 = Instant::now();
    c.freeze_agent("n1", frozen).await;

    let new = c.wait_new_primary(&["n1"]);
    assert!(
        t0.elapsed() < frozen,
        "the takeover waited for the thaw ({:?})",
        t0.elapsed()
    );
    // Fenced before anyone else could lead: n1 takes no writes (stopped, or read-only).
    let n1_writable = match try_connect(&c.member_url("n1"), Duration::from_secs(2)).await {
        Some(n1) => n1
            .query_one("SELECT NOT pg_is_in_recovery()", &[])
            .await
            .map(|row| row.get::<_, bool>(0))
            .unwrap_or(false),
        None => false,
    };
    assert!(!n1_writable, "n1 still takes writes while {new} leads");
    c.write(&new, "after", 10..20).await;

    // Thawed: it finds its lease gone and rejoins the new leader.
    tokio::time::sleep(frozen.saturating_sub(t0.elapsed())).await;
    c.wait_converged(&new, &[]).await;
    let (rows, _) = c.wait_identical(&new, &["n1", "n2", "n3"]).await;
    assert_eq!(rows, 20);
    let log = c.up.log();
    assert!(
        log.contains("agent frozen for 20000 ms"),
        "{}",
        pgha_testkit::tail_of(&log, 50)
    );
}

/// Found by `pgha chaos` (seed 1111, synchronous mode on): a switchover to n2, then kill -9 of
/// n2's postmaster seconds later. n2 hands the lease to a synchronous standby and, started
/// from a crash, must rewind; but until its first checkpoint on its new timeline its control
/// file still named the old one (PostgreSQL only asks for a spread checkpoint after a
/// promotion, minutes long), and pg_rewind (PostgreSQL 15 and older) then failed ("could not
/// find previous WAL record"): n2 was re-cloned, its whole data directory moved aside and
/// copied again. It must rejoin by pg_rewind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_killed_right_after_its_promotion_rejoins_by_rewind() {
    let c = Cluster::start(&["--synchronous-mode", "on"], CONVERGE);
    c.create_table().await;
    c.write("n1", "before", 0..10).await;
    c.ok("switchover", &["--to", "n2"]);
    c.wait_status("n2 leading", CONVERGE, |s| {
        (primary_of(s).as_deref() == Some("n2")).then_some(())
    });
    c.write("n2", "on-n2", 10..20).await;
    c.kill_postmaster("n2");
    let new = c.wait_new_primary(&["n2"]);
    c.write(&new, "after", 20..30).await;
    c.wait_converged(&new, &[]).await;
    let (rows, _) = c.wait_identical(&new, &["n1", "n2", "n3"]).await;
    assert_eq!(rows, 30);
    let member_dir = c.data_dir("n2").parent().unwrap().to_path_buf();
    assert!(
        old_data_dirs(&member_dir).is_empty(),
        "n2 was re-cloned (its data moved aside): {:#?}",
        c.history()
    );
    wait_until("n2's rewind recorded", CONVERGE, || {
        let history = c.history();
        events(&history, "rejoin_rewind")
            .iter()
            .any(|(from, _)| from == "n2")
            .then_some(())
    });
}

/// The startup process (the one that replays WAL and carries out a promotion) of `member`.
fn startup_process(c: &Cluster, member: &str) -> u32 {
    let postmaster = c.postmaster_pid(member);
    pgha_testkit::children_of(postmaster)
        .into_iter()
        .find(|pid| pgha_testkit::cmdline(*pid).contains("startup"))
        .unwrap_or_else(|| c.fail(&format!("no startup process under {member}'s postmaster")))
}

/// Whether `member`'s PostgreSQL answers and takes writes.
async fn writable(c: &Cluster, member: &str) -> bool {
    let Some(client) = try_connect(&c.member_url(member), Duration::from_millis(500)).await else {
        return false;
    };
    matches!(
        client.query_one("SELECT NOT pg_is_in_recovery()", &[]).await,
        Ok(row) if row.get::<_, bool>(0)
    )
}

/// The winner's `pg_ctl promote` gives up (its wait ends while the startup process, paused
/// as on a stalled disk, has not promoted), and the promotion would go on once the process
/// runs again. The winner stops its PostgreSQL before it lets go of the lease, so the other
/// member gets its turn, and when both startup processes run again only that next leader
/// becomes writable. Before, the first winner let go of the lease with its promotion in flight
/// and, still the best candidate, took it again at once and promoted into the same stall, for
/// as long as the stall lasted (red here: the lease never left it); had another member won
/// meanwhile, the first would have become writable beside it once the stall ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_winner_whose_promotion_timed_out_is_stopped_before_another_leads() {
    let c = start();
    let paused: Vec<(String, u32)> = ["n2", "n3"]
        .into_iter()
        .map(|m| (m.to_string(), startup_process(&c, m)))
        .collect();
    for (_, pid) in &paused {
        assert!(pgha_testkit::signal(
            *pid,
            nix::sys::signal::Signal::SIGSTOP
        ));
    }
    c.ok("stop", &["n1"]);
    // Its replay does not move on: the promotion counts as failed after a minute.
    let first = wait_until("a promotion that failed", Duration::from_secs(120), || {
        let log = c.up.log();
        ["n2", "n3"]
            .into_iter()
            .find(|m| log.contains(&format!("{m}: promote failed (")))
            .map(String::from)
    });
    wait_until(
        "the lease to leave the first winner",
        Duration::from_secs(30),
        || {
            let s = c.up.status()?;
            (s["leader"].as_str() != Some(first.as_str())).then_some(())
        },
    );
    for (_, pid) in &paused {
        pgha_testkit::signal(*pid, nix::sys::signal::Signal::SIGCONT);
    }
    let started = Instant::now();
    let mut seen_writable = BTreeSet::new();
    while started.elapsed() < Duration::from_secs(10) {
        for m in ["n2", "n3"] {
            if writable(&c, m).await {
                seen_writable.insert(m.to_string());
            }
        }
        assert!(
            !seen_writable.contains(&first),
            "{first}, whose promotion had failed and which no longer held the lease, took \
             writes:\n{}",
            c.up.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second = c.wait_new_primary(&["n1", first.as_str()]);
    assert!(seen_writable.contains(&second) || writable(&c, &second).await);
    c.ok("start", &["n1"]);
    c.wait_converged(&second, &[]).await;
}
