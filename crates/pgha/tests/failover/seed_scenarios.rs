//! The seeds' scenarios of issue 5: failover, round trips, rewind, switchover, killed postmaster.

use super::*;

use common::status::{no_rewind, primaries};
use pgha_testkit::{connect, fmt_lsn, lsn, postmaster_pid};

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
