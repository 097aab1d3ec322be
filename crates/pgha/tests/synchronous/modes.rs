//! Acceptance 1, 2, 3 and 5: `on` moves the role and degrades, `strict` waits, `remote_apply`.

use super::*;

use common::status::members;
use pgha_testkit::wait_until;

/// A write that takes longer than this "blocked".
const BLOCKED: Duration = Duration::from_secs(2);

/// Acceptance 1: `on`, count 1 — one standby sync (the first to stream), the other potential;
/// the sync one stops → the other sync within seconds and no write blocks; it comes back →
/// potential behind the other (equal priorities: a standby that rejoins does not take the role
/// back from one that holds it, see `sync::tests`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_moves_sync_role_without_blocking_writes() {
    let c = start(&["--synchronous-mode", "on", "--synchronous-count", "1"]);
    // Which standby holds the role first depends on which streamed first (one that joins
    // later comes after those already listed): n2 and n3 as they settle.
    let first = c.wait_settled_sync(CONVERGE);
    let second = if first == "n2" { "n3" } else { "n2" };
    let first = first.as_str();
    c.wait_sync_states(&[(first, "sync"), (second, "potential")], CONVERGE);
    // Issue 14: /sync answers 200 on the standbys of the published synchronous set (here
    // `FIRST 1 (first, second)`: first acknowledges, second takes over the moment first
    // cannot), /async on a
    // streaming standby outside it; the primary is neither.
    let api = format!("127.0.0.1:{}", c.up.base + 2);
    let check = |path: &str| {
        pgha_testkit::wait_until(path, Duration::from_secs(10), || {
            pgha_testkit::http("GET", &api, path, None, None).map(|(code, _)| code)
        })
    };
    assert_eq!(check(&format!("/sync?member={first}")), 200);
    assert_eq!(check(&format!("/sync?member={second}")), 200);
    assert_eq!(check(&format!("/async?member={second}")), 503);
    assert_eq!(check("/sync?member=n1"), 503);
    assert_eq!(check("/async?member=n1"), 503);
    c.create_table().await;
    let writer = writer(&c, 1);
    c.wait_writes(&writer, 50, Duration::from_secs(10)).await;

    c.ok("stop", &[first]);
    let moved = c.wait_sync_states(&[(second, "sync")], Duration::from_secs(10));
    c.wait_writes(&writer, 100, Duration::from_secs(10)).await;
    let slowest = writer.slowest();
    assert!(
        slowest < BLOCKED,
        "a write took {slowest:?} while the sync role moved"
    );
    // first leaves the published set once second has flushed what n1 had written when
    // PostgreSQL stopped counting first (about a loop later).
    wait_until(
        "the published set to become [second]",
        Duration::from_secs(10),
        || {
            let set = c.up.status()?["synchronous"]["set"].clone();
            (set == serde_json::json!([second])).then_some(())
        },
    );

    c.ok("start", &[first]);
    let back = c.wait_sync_states(&[(first, "potential"), (second, "sync")], CONVERGE);
    c.wait_writes(&writer, 50, Duration::from_secs(10)).await;
    let slowest = writer.slowest();
    let acked = writer.finish().await;
    assert!(slowest < BLOCKED, "a write took {slowest:?}");
    // PostgreSQL agrees with `pgha status`.
    let primary = connect(&c.member_url("n1")).await;
    let rows = primary
        .query(
            "SELECT application_name::text, sync_state::text FROM pg_stat_replication ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let pg: BTreeMap<String, String> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let expected: BTreeMap<String, String> = [(first, "potential"), (second, "sync")]
        .into_iter()
        .map(|(n, s)| (n.to_string(), s.to_string()))
        .collect();
    assert_eq!(pg, expected);
    eprintln!(
        "sync moved to {second} in {moved:?}, {first} potential again in {back:?}; {} writes, \
         slowest {slowest:?}",
        acked.len()
    );
}

/// Acceptance 2: `strict` with both standbys stopped: a commit waits and `pgha status` says so;
/// a standby started → the commit returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_commit_waits_for_a_standby() {
    let (c, _) = start_sync(&["--synchronous-mode", "strict"]).await;
    c.ok("stop", &["n2"]);
    c.ok("stop", &["n3"]);
    c.wait_status("n2 and n3 stopped", CONVERGE, |s| {
        members(s)
            .iter()
            .filter(|m| m["state"] == "stopped")
            .count()
            .eq(&2)
            .then_some(())
    });

    let url = c.up.url(None);
    let writer = tokio::spawn(async move {
        let client = connect(&url).await;
        let t0 = Instant::now();
        client
            .execute("INSERT INTO t(id, stage) VALUES (1, 'strict')", &[])
            .await
            .map(|_| t0.elapsed())
    });
    // The commit sits in PostgreSQL's synchronous-replication wait...
    let primary = connect(&c.member_url("n1")).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = primary
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if waiting == 1 {
            break;
        }
        assert!(!writer.is_finished(), "the commit returned in strict mode");
        if Instant::now() > deadline {
            c.fail("no commit waits in SyncRep");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // ...and `pgha status` says so, naming the standby it waits for.
    let warning = c.wait_status("a strict-mode warning", Duration::from_secs(10), |s| {
        s["synchronous"]["warning"].as_str().map(str::to_string)
    });
    assert!(warning.contains("wait"), "{warning}");
    assert!(
        warning.contains("n2") || warning.contains("n3"),
        "the warning names no missing standby: {warning}"
    );
    assert!(!writer.is_finished(), "the commit returned in strict mode");
    let table = c.ok("status", &[]);
    assert!(table.contains(&warning), "{table}");

    c.ok("start", &["n2"]);
    let t0 = Instant::now();
    let took = tokio::time::timeout(CONVERGE, writer)
        .await
        .unwrap_or_else(|_| c.fail("the commit still waits after n2 started"))
        .unwrap()
        .unwrap();
    eprintln!(
        "commit waited {took:?} in total, returned {:?} after `pgha start n2`",
        t0.elapsed()
    );
    assert_eq!(
        c.count("n2", [1]).await,
        1,
        "the released commit is not on n2"
    );
    c.wait_status("no warning", CONVERGE, |s| {
        s["synchronous"]["warning"].is_null().then_some(())
    });
}

/// Acceptance 3: `on` with every standby stopped degrades: writes continue, status and history
/// say so. The store's set keeps the stopped standbys (they may hold commits nobody else has:
/// only they may take over) until a standby that streams holds what they confirmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_degrades_when_every_standby_stops() {
    let (c, _) = start_sync(&["--synchronous-mode", "on"]).await;
    let writer = writer(&c, 1);
    c.wait_writes(&writer, 20, Duration::from_secs(10)).await;
    c.ok("stop", &["n2"]);
    c.ok("stop", &["n3"]);
    let warning = c.wait_status("degraded", CONVERGE, |s| {
        let sync = &s["synchronous"];
        sync["warning"]
            .as_str()
            .filter(|w| w.contains("degraded"))
            .map(|w| (w.to_string(), sync["set"].clone()))
    });
    // n3 stopped last: the set keeps it (and n2 too, if n2 had not left it before).
    let kept = warning.1.as_array().cloned().unwrap_or_default();
    assert!(kept.contains(&serde_json::json!("n3")), "{warning:?}");
    assert!(warning.0.contains("may take over"), "{warning:?}");
    c.wait_writes(&writer, 100, Duration::from_secs(10)).await;
    let slowest = writer.slowest();
    writer.finish().await;
    assert!(slowest < BLOCKED, "a write took {slowest:?}");
    let names = c.show("n1", "synchronous_standby_names").await;
    assert_eq!(names, "", "still synchronous");
    let history = c.history();
    let last = history
        .iter()
        .rev()
        .find(|e| e["kind"] == "sync_changed")
        .unwrap_or_else(|| c.fail("no sync_changed event"));
    let reason = last["reason"].as_str().unwrap();
    assert!(
        reason.contains("degraded to asynchronous") && reason.contains("keeps ["),
        "last sync_changed: {last}"
    );

    // Back to synchronous once a standby returns.
    c.ok("start", &["n3"]);
    c.wait_status("n3 sync again", CONVERGE, |s| {
        (sync_states(s).get("n3").map(String::as_str) == Some("sync")
            && s["synchronous"]["warning"].is_null())
        .then_some(())
    });
}

/// Mode `on`, commits waiting for the synchronous standby's replay.
const REMOTE_APPLY: [&str; 4] = [
    "--synchronous-mode",
    "on",
    "--synchronous-commit",
    "remote_apply",
];

/// Acceptance 5: with `remote_apply`, a row acknowledged by the primary is visible on the sync
/// standby immediately (queried right after the commit, no retry).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_apply_is_visible_on_the_sync_standby_at_once() {
    let (c, sync) = start_sync(&REMOTE_APPLY).await;
    let primary = connect(&c.up.url(None)).await;
    let level: String = query_value(&primary, "SHOW synchronous_commit").await;
    assert_eq!(level, "remote_apply");
    let standby = connect(&c.member_url(&sync)).await;
    for id in 1..=200i64 {
        primary
            .execute(
                "INSERT INTO t(id, stage) VALUES ($1, 'remote_apply')",
                &[&id],
            )
            .await
            .unwrap();
        let seen: i64 = standby
            .query_one("SELECT count(*) FROM t WHERE id = $1", &[&id])
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            seen, 1,
            "row {id} not yet visible on the sync standby {sync}"
        );
    }

    // ALTER SYSTEM writes postgresql.auto.conf, which PostgreSQL reads after pgha's own file:
    // `synchronous_commit = local` there would acknowledge commits no standby holds. pgha
    // resets what it owns (on the primary as on a standby) and leaves the rest alone (before:
    // the override stood for good).
    for (client, sql) in [
        (&primary, "ALTER SYSTEM SET synchronous_commit = 'local'"),
        (&primary, "ALTER SYSTEM SET work_mem = '8MB'"),
        (&primary, "SELECT pg_reload_conf()"),
        (
            &standby,
            "ALTER SYSTEM SET wal_receiver_status_interval = '9s'",
        ),
        // a recovery target would stop the standby's replay at its next start
        (&standby, "ALTER SYSTEM SET recovery_target_lsn = '0/1'"),
        (&standby, "SELECT pg_reload_conf()"),
    ] {
        client.batch_execute(sql).await.unwrap();
    }
    // A session takes a reload in when it gets to it: until this one shows work_mem at 8MB it
    // may still show every value from before the ALTER SYSTEMs, remote_apply included (a CI
    // run passed the wait on those, then found work_mem at 4MB). Once it shows 8MB it read a
    // postgresql.auto.conf that had `local` written before that, unless pgha had taken it out.
    let back = poll_async(CONVERGE, Duration::from_millis(100), || async {
        let level: String = query_value(&primary, "SHOW synchronous_commit").await;
        let work_mem: String = query_value(&primary, "SHOW work_mem").await;
        let interval: String = query_value(&standby, "SHOW wal_receiver_status_interval").await;
        let target: i64 = query_value(
            &standby,
            "SELECT count(*) FROM pg_file_settings WHERE name = 'recovery_target_lsn'",
        )
        .await;
        (level == "remote_apply" && work_mem == "8MB" && interval == "1s" && target == 0)
            .then_some(())
    })
    .await;
    if back.is_none() {
        let level: String = query_value(&primary, "SHOW synchronous_commit").await;
        let work_mem: String = query_value(&primary, "SHOW work_mem").await;
        c.fail(&format!(
            "synchronous_commit is {level} and work_mem {work_mem} after ALTER SYSTEM set them \
             to local and 8MB (and recovery_target_lsn on a standby): pgha resets only what it \
             owns or refuses"
        ));
    }
    let log = c.up.log();
    assert!(
        log.contains("set with ALTER SYSTEM, which overrides what pgha sets"),
        "no warning in the log"
    );
}

/// `remote_apply`, mode `on`: replay paused by hand on the synchronous standby
/// (`pg_wal_replay_pause()`: it still receives and flushes, so its connection stays up and
/// PostgreSQL counts it). Every commit waits for its replay; after `stalled_standby_ms` (3 s)
/// the leader counts the other standby instead and says why in history. Before, a commit
/// waited until the replay was resumed. Resumed, it is counted again. Then the same with the
/// replay held as production holds it: a query on the synchronous standby holding a lock a
/// record from the primary needs (`LOCK TABLE ... IN ACCESS EXCLUSIVE MODE` on the primary).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_synchronous_standby_whose_replay_stands_is_not_waited_for_under_remote_apply() {
    let (c, sync) = start_sync(&REMOTE_APPLY).await;
    let standby = connect(&c.member_url(&sync)).await;
    standby
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .unwrap();
    let primary = connect(&c.up.url(None)).await;
    let started = Instant::now();
    let insert = primary.execute("INSERT INTO t(id, stage) VALUES (1, 'replay paused')", &[]);
    let done = tokio::time::timeout(Duration::from_secs(20), insert).await;
    let took = started.elapsed();
    if !matches!(done, Ok(Ok(1))) {
        c.fail(&format!(
            "a commit waited {took:?} for {sync}, whose replay is paused: {done:?}"
        ));
    }
    assert!(took < Duration::from_secs(8), "the commit took {took:?}");
    let history = c.history();
    let said = history.iter().any(|e| {
        e["kind"] == "sync_changed"
            && e["from"] == sync.as_str()
            && e["reason"]
                .as_str()
                .is_some_and(|r| r.contains("replayed nothing"))
    });
    assert!(said, "no history event says why: {history:#?}");
    standby
        .batch_execute("SELECT pg_wal_replay_resume()")
        .await
        .unwrap();
    c.wait_status("the standby counted again", CONVERGE, |s| {
        let state = sync_states(s).get(&sync).cloned();
        matches!(state.as_deref(), Some("sync" | "potential")).then_some(())
    });
    eprintln!("the commit took {took:?} with {sync}'s replay paused");

    // The same stand as production makes it: a query on the synchronous standby holds a lock
    // that a record from the primary needs, and replay waits for it (up to
    // `max_standby_streaming_delay`, 30 s by default, before the query is cancelled).
    let holder = c.wait_status("a synchronous standby", CONVERGE, |s| {
        sync_states(s)
            .into_iter()
            .find(|(_, state)| state == "sync")
            .map(|(name, _)| name)
    });
    let reader = connect(&c.member_url(&holder)).await;
    reader
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM t")
        .await
        .unwrap();
    let started = Instant::now();
    let lock = primary.batch_execute("BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE; COMMIT");
    let done = tokio::time::timeout(Duration::from_secs(20), lock).await;
    let took_on_conflict = started.elapsed();
    if !matches!(done, Ok(Ok(()))) {
        c.fail(&format!(
            "a commit waited {took_on_conflict:?} for {holder}, whose replay waits on a \
             standby query's lock: {done:?}"
        ));
    }
    assert!(
        took_on_conflict < Duration::from_secs(8),
        "the commit took {took_on_conflict:?}"
    );
    let history = c.history();
    let said = history.iter().any(|e| {
        e["kind"] == "sync_changed"
            && e["from"] == holder.as_str()
            && e["reason"]
                .as_str()
                .is_some_and(|r| r.contains("replayed nothing"))
    });
    assert!(
        said,
        "no history event says why {holder} was left: {history:#?}"
    );
    let _ = reader.batch_execute("ROLLBACK").await;
    c.wait_status("the standby counted again", CONVERGE, |s| {
        let state = sync_states(s).get(&holder).cloned();
        matches!(state.as_deref(), Some("sync" | "potential")).then_some(())
    });
    eprintln!(
        "the commit took {took_on_conflict:?} with {holder}'s replay held by a lock conflict"
    );
}
