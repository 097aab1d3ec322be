//! End-to-end synchronous replication (issue 4) against real PostgreSQL: `on` moves the
//! synchronous role and degrades instead of blocking, `strict` waits and says why,
//! `remote_apply` makes a commit visible on the sync standby at once, the mode changes live,
//! and no acknowledged write is lost when the primary is killed (I4).
//!
//! Each test runs its own 3-member `pgha up` on free ports, one at a time. The durability loop
//! runs `PGHA_DURABILITY_ROUNDS` kills per mode (default 5; the figure is 20).

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::cluster::{Cluster, MEMBERS};
use common::status::{members, primary_of, sync_states};
use common::stderr_of;
use pgha_testkit::{connect, poll_async, query_value, wait_until, Writer};

const CONVERGE: Duration = Duration::from_secs(30);
/// A write that takes longer than this "blocked".
const BLOCKED: Duration = Duration::from_secs(2);

/// A 3-member cluster started with `extra` arguments, every standby streaming.
fn start(extra: &[&str]) -> Cluster {
    Cluster::start(extra, CONVERGE)
}

/// A cluster started with `extra` arguments, its synchronous standby settled, the table `t`
/// created; the synchronous standby.
async fn start_sync(extra: &[&str]) -> (Cluster, String) {
    let c = start(extra);
    let sync = c.wait_settled_sync(CONVERGE);
    c.create_table().await;
    (c, sync)
}

/// Inserts rows through the read-write entry point as fast as it can, timing each commit
/// (connecting within 10 s, each write within 60 s: longer than any wait for a standby here).
fn writer(c: &Cluster, first_id: i64) -> Writer {
    c.entry_writer(first_id, Duration::from_secs(10), Duration::from_secs(60))
}

async fn postmaster_start(url: &str) -> String {
    let client = connect(url).await;
    query_value(&client, "SELECT pg_postmaster_start_time()::text").await
}

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

/// Acceptance 5: with `remote_apply`, a row acknowledged by the primary is visible on the sync
/// standby immediately (queried right after the commit, no retry).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_apply_is_visible_on_the_sync_standby_at_once() {
    let extra = [
        "--synchronous-mode",
        "on",
        "--synchronous-commit",
        "remote_apply",
    ];
    let (c, sync) = start_sync(&extra).await;
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
        (&standby, "SELECT pg_reload_conf()"),
    ] {
        client.batch_execute(sql).await.unwrap();
    }
    let back = poll_async(CONVERGE, Duration::from_millis(100), || async {
        let level: String = query_value(&primary, "SHOW synchronous_commit").await;
        let interval: String = query_value(&standby, "SHOW wal_receiver_status_interval").await;
        (level == "remote_apply" && interval == "1s").then_some(())
    })
    .await;
    if back.is_none() {
        let level: String = query_value(&primary, "SHOW synchronous_commit").await;
        c.fail(&format!(
            "synchronous_commit is still {level} after ALTER SYSTEM set it to local"
        ));
    }
    let work_mem: String = query_value(&primary, "SHOW work_mem").await;
    assert_eq!(work_mem, "8MB", "a setting pgha does not own was reset");
    let log = c.up.log();
    assert!(
        log.contains("set with ALTER SYSTEM, which overrides what pgha sets"),
        "no warning in the log"
    );
}

/// `pgha config set` changes the mode live (no restart), and bad values name the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_set_changes_mode_live_and_names_bad_keys() {
    let c = start(&[]);
    let status = c.up.status().unwrap();
    assert_eq!(status["synchronous"]["mode"], "off");
    assert!(
        sync_states(&status).values().all(|s| s == "async"),
        "{status:#?}"
    );
    let mut started = BTreeMap::new();
    for n in MEMBERS {
        started.insert(n, postmaster_start(&c.member_url(n)).await);
    }

    c.config_ok("set", &["synchronous_mode=on"]);
    let t0 = Instant::now();
    c.wait_sync_states(&[("n2", "sync"), ("n3", "potential")], CONVERGE);
    eprintln!("off → on: n2 sync after {:?}", t0.elapsed());
    c.config_ok(
        "set",
        &[
            "synchronous_method=quorum",
            "synchronous_commit=remote_write",
        ],
    );
    c.wait_sync_states(&[("n2", "quorum"), ("n3", "quorum")], CONVERGE);
    let cr = &c;
    let applied = poll_async(CONVERGE, Duration::from_millis(100), || async move {
        (cr.show("n1", "synchronous_commit").await == "remote_write").then_some(())
    })
    .await;
    if applied.is_none() {
        let level = c.show("n1", "synchronous_commit").await;
        c.fail(&format!("synchronous_commit is {level}, not remote_write"));
    }
    for (n, at) in &started {
        assert_eq!(
            &postmaster_start(&c.member_url(n)).await,
            at,
            "{n} restarted for a live change"
        );
    }
    let shown = c.config_ok("show", &[]);
    assert!(
        shown.contains("synchronous_mode") && shown.contains("on"),
        "{shown}"
    );

    for (bad, key) in [
        ("synchronous_mode=sometimes", "synchronous_mode"),
        ("synchronous_count=abc", "synchronous_count"),
        ("synchronous_method=random", "synchronous_method"),
        ("synchronous_commit=maybe", "synchronous_commit"),
        ("no_such_key=1", "no_such_key"),
        ("synchronous_mode", "synchronous_mode"),
    ] {
        let out = c.config("set", &[bad]);
        let err = stderr_of(&out);
        assert!(!out.status.success(), "`config set {bad}` accepted");
        assert!(
            err.contains(key),
            "`config set {bad}`: error names no key: {err}"
        );
    }
    // Nothing changed by the refused values.
    let sync = &c.up.status().unwrap()["synchronous"];
    assert_eq!(sync["mode"], "on");
    assert_eq!(sync["method"], "quorum");
}

/// `pgha config set synchronous_mode=on` returns once the leader has the mode in force, not as
/// soon as the store holds it: commits acknowledged after it returned waited for a standby.
/// The leader's agent loop is frozen for a few seconds as the change is made (a loaded host,
/// a slow loop): the command waits for it, and once it returns the primary counts a standby.
/// Before, it returned at once, with the primary still asynchronous for as long as its agent
/// took to apply the change: a write acknowledged then could be lost by a failover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_set_of_a_synchronous_setting_returns_once_the_leader_has_it_in_force() {
    let c = start(&[]);
    // Well inside the lease (10 s): n1 stays the leader.
    let frozen = Duration::from_secs(3);
    let t0 = Instant::now();
    c.freeze_agent("n1", frozen).await;
    let said = c.config_ok("set", &["synchronous_mode=on"]);
    let took = t0.elapsed();
    let names = c.show("n1", "synchronous_standby_names").await;
    eprintln!(
        "config set returned after {took:?}: {said}\nn1: synchronous_standby_names = {names}"
    );
    assert!(
        took >= frozen - Duration::from_millis(500),
        "config set returned after {took:?}, while n1's agent was frozen for {frozen:?}: {said}"
    );
    assert!(
        !names.is_empty(),
        "config set returned, n1 still asynchronous: {said}"
    );
    assert!(said.contains("in force on the leader n1"), "{said}");
    let status = c.up.status().unwrap();
    let set = status["synchronous"]["set"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(!set.is_empty(), "no synchronous set published: {status:#}");
    // A commit level changes the same way: in force on the primary once the command returns.
    let said = c.config_ok("set", &["synchronous_commit=remote_apply"]);
    let level = c.show("n1", "synchronous_commit").await;
    assert_eq!(level, "remote_apply", "{said}");
    // Maintenance mode: the leader keeps its standbys as they are until `pgha resume`; the
    // command says so rather than wait.
    c.ok("pause", &[]);
    let t1 = Instant::now();
    let said = c.config_ok("set", &["synchronous_mode=off"]);
    assert!(said.contains("maintenance mode"), "{said}");
    assert!(
        t1.elapsed() < Duration::from_secs(5),
        "waited {:?}",
        t1.elapsed()
    );
    c.ok("resume", &[]);
    let said = c.config_ok("set", &["synchronous_mode=off"]);
    assert!(said.contains("asynchronous"), "{said}");
    assert_eq!(c.show("n1", "synchronous_standby_names").await, "");
}

// ---------------------------------------------------------------------------------------------
// Acceptance 4: durability under a killed primary.

/// The machine under `pgha up` loses power, synchronous mode on, PostgreSQL with `fsync=on`:
/// `pgha up` and every supervisor, postmaster and backend killed in one instant, a writer
/// writing, the disk keeping only what was synced. `pgha up` again brings the same cluster
/// back: every row whose commit was acknowledged, the settings its store held (one changed just
/// before), the history it had recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_loss_under_pgha_up_loses_no_acknowledged_commit() {
    let extra = ["--synchronous-mode", "on", "--param", "fsync=on"];
    let mut c = Cluster::start_on_own_disk(&extra, CONVERGE);
    c.wait_settled_sync(CONVERGE);
    c.create_table().await;
    c.config_ok("set", &["maximum_lag_on_failover=2097152"]);
    let history = c.history();
    let writer = writer(&c, 1);
    c.wait_writes(&writer, 50, Duration::from_secs(20)).await;
    let lost_power = Instant::now();
    c.lose_power();
    let acked: Vec<i64> = writer.finish().await.iter().map(|a| a.id).collect();
    let mut squatters = c.reuse_postmaster_pids();
    c.power_back();
    let status = c.up.status().unwrap();
    let primary = primary_of(&status).unwrap_or_else(|| c.fail("no primary"));
    eprintln!(
        "power back: {primary} primary, every standby streaming {:?} after the loss; {} writes \
         acknowledged before it",
        lost_power.elapsed(),
        acked.len()
    );
    let lost = c.lost(&primary, &acked).await;
    if !lost.is_empty() {
        c.fail(&format!(
            "{} acknowledged rows lost: {:?}",
            lost.len(),
            &lost[..lost.len().min(20)]
        ));
    }
    assert_eq!(c.show(&primary, "fsync").await, "on");
    let shown = c.config_ok("show", &[]);
    assert!(
        shown.contains("synchronous_mode") && shown.contains("2097152"),
        "the settings after the power loss:\n{shown}"
    );
    let after = c.history();
    assert_eq!(
        after.get(..history.len()),
        Some(&history[..]),
        "the history before the power loss is not the start of the one after"
    );
    assert_eq!(
        squatters.gone(),
        Vec::<u32>::new(),
        "processes holding the pids of the lost postmasters were signalled"
    );
    let log = c.up.log();
    assert!(
        log.contains("which is not a postmaster of this data directory"),
        "pgha up's log does not say why it disregarded a postmaster.pid:\n{}",
        pgha_testkit::tail_of(&log, 40)
    );
}

fn durability_rounds() -> usize {
    std::env::var("PGHA_DURABILITY_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
}

/// Kills the primary (postmaster SIGKILL, then `pgha stop --mode immediate`) at a random moment
/// under a writer going through the read-write entry point, `rounds` times; after each
/// failover every acknowledged row must be on the new primary.
async fn durability(mode: &str) {
    use rand::Rng;
    let rounds = durability_rounds();
    let (c, _) = start_sync(&["--synchronous-mode", mode]).await;
    let mut all_acked: Vec<i64> = Vec::new();
    let mut next_id = 1i64;
    let mut failover_times = Vec::new();
    for round in 1..=rounds {
        let status = c.up.status().unwrap();
        let old = primary_of(&status).unwrap_or_else(|| c.fail("no primary"));
        let writer = writer(&c, next_id);
        c.wait_writes(&writer, 20, Duration::from_secs(20)).await;
        let delay = rand::thread_rng().gen_range(0..2000);
        tokio::time::sleep(Duration::from_millis(delay)).await;

        c.kill_postmaster(&old);
        let killed = Instant::now();
        c.ok("stop", &[&old, "--mode", "immediate"]);
        let new = c.wait_new_primary(&[&old]);
        // The writer goes on through the entry point, on the new primary.
        c.wait_writes(&writer, 20, CONVERGE).await;
        failover_times.push(killed.elapsed());
        let acked: Vec<i64> = writer.finish().await.iter().map(|a| a.id).collect();
        next_id = acked.last().copied().unwrap_or(next_id) + 1_000;
        all_acked.extend(&acked);

        let lost = c.lost(&new, &all_acked).await;
        eprintln!(
            "{mode} round {round}/{rounds}: killed {old} after {delay} ms, {new} took over, \
             {} acknowledged this round ({} in all), {} lost",
            acked.len(),
            all_acked.len(),
            lost.len()
        );
        if !lost.is_empty() {
            c.fail(&format!(
                "{mode} round {round}: {} acknowledged rows lost after {old} → {new}: {:?}",
                lost.len(),
                &lost[..lost.len().min(20)]
            ));
        }

        // Heal: the old primary rejoins, and the synchronous set holds both standbys again.
        c.ok("start", &[&old]);
        c.wait_settled_sync(Duration::from_secs(60));
    }
    failover_times.sort();
    eprintln!(
        "{mode}: {rounds} kills, {} acknowledged rows, 0 lost; kill → writes resumed: median {:?}, max {:?}",
        all_acked.len(),
        failover_times[failover_times.len() / 2],
        failover_times.last().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durability_on() {
    durability("on").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durability_strict() {
    durability("strict").await;
}
