//! Stalls and crashes around a promotion: lost upstream, frozen agent, stalled or killed winner.

use super::*;

use pgha_testkit::try_connect;

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
    assert_rejoined_by_rewind(&c, "n2");
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

/// Found by review: a member that never received a timeline's history (stopped while another
/// member was promoted) wins the lease later, when that member is gone: PostgreSQL would start
/// the same timeline number a second time, and the member that had it first, started again,
/// would follow a history pg_rewind cannot tell from its own. It starts a newer timeline, and
/// the other rewinds to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_never_saw_a_timeline_promotes_to_a_newer_one() {
    let c = start_with_rows("before").await;
    c.ok("stop", &["n3"]);
    c.ok("stop", &["n1"]);
    let second = c.wait_new_primary(&["n1", "n3"]);
    c.write(&second, "on timeline 2", 10..20).await;
    c.ok("stop", &[&second, "--mode", "immediate"]);
    c.ok("start", &["n3"]);
    let third = c.wait_new_primary(&["n1", &second]);
    let timeline_of = |s: &serde_json::Value, name: &str| {
        members(s)
            .iter()
            .find(|m| m["name"] == name)
            .and_then(|m| m["timeline"].as_u64())
    };
    let promoted_to = c.wait_status("the new primary's timeline", CONVERGE, |s| {
        timeline_of(s, &third)
    });
    assert_eq!(
        promoted_to, 3,
        "{third}, which never received timeline 2's history, promoted to timeline {promoted_to}"
    );
    c.ok("start", &[&second]);
    c.ok("start", &["n1"]);
    c.wait_converged(&third, &[]).await;
    let others: Vec<&str> = common::cluster::MEMBERS
        .into_iter()
        .filter(|m| *m != third)
        .collect();
    c.wait_identical(&third, &others).await;
}

/// A standby stopped as by a crash (its data directory "in archive recovery"), holding WAL the
/// next primary never had, comes back diverged: it rejoins by pg_rewind (crash recovery first,
/// in single-user mode), not by a re-clone. Before session 23, single-user crash recovery
/// refused standby mode ("standby mode is not supported by single-user servers"), every such
/// rewind failed, and the member was re-cloned, its data moved aside.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_standby_that_diverged_rejoins_by_rewind() {
    let c = start_with_rows("before").await;
    c.ok("stop", &["n3"]);
    c.write("n1", "n1 and n2 only", 10..20).await;
    c.wait_identical("n1", &["n2"]).await;
    // A restartpoint past n3's end of WAL: stopped, n2 reports a position the next primary's
    // timeline forked before, and is rewound while stopped (from an earlier restartpoint it
    // would be started to follow, fail to stream, and be stopped cleanly for its rewind).
    let n1 = connect(&c, "n1").await;
    n1.batch_execute("CHECKPOINT").await.unwrap();
    let after: String = n1
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    let n2 = connect(&c, "n2").await;
    let replayed = format!("SELECT pg_last_wal_replay_lsn() >= '{after}'::pg_lsn");
    let deadline = Instant::now() + CONVERGE;
    while !n2
        .query_one(replayed.as_str(), &[])
        .await
        .unwrap()
        .get::<_, bool>(0)
    {
        assert!(
            Instant::now() < deadline,
            "n2 never replayed n1's checkpoint"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Its restartpoint at n1's checkpoint, checked: the stopped n2's position is its latest
    // checkpoint location (a whole-suite run once found it still at an earlier one, and n2
    // followed, failed to stream and was rewound from a clean stop, which shows nothing of
    // the crashed state).
    let n1_checkpoint: String = n1
        .query_one(
            "SELECT checkpoint_lsn::text FROM pg_control_checkpoint()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let restarted_at =
        format!("SELECT checkpoint_lsn >= '{n1_checkpoint}'::pg_lsn FROM pg_control_checkpoint()");
    loop {
        n2.batch_execute("CHECKPOINT").await.unwrap();
        let past: bool = n2
            .query_one(restarted_at.as_str(), &[])
            .await
            .unwrap()
            .get(0);
        if past {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "n2's restartpoint never reached n1's checkpoint {n1_checkpoint}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.ok("stop", &["n2", "--mode", "immediate"]);
    c.ok("stop", &["n1"]);
    c.ok("start", &["n3"]);
    let new = c.wait_new_primary(&["n1", "n2"]);
    assert_eq!(new, "n3");
    c.write("n3", "on timeline 2", 20..30).await;
    let log_at = c.up.log().len();
    c.ok("start", &["n2"]);
    c.ok("start", &["n1"]);
    c.wait_converged("n3", &[]).await;
    let (rows, _) = c.wait_identical("n3", &["n1", "n2"]).await;
    assert_eq!(rows, 20, "ids 0..10 and 20..30 (10..20 never reached n3)");
    let log = c.up.log();
    assert!(
        log[log_at..]
            .contains("n2: data directory is `in archive recovery`; finishing crash recovery"),
        "n2 was not rewound from a crashed state:\n{}",
        pgha_testkit::tail_of(&log, 60)
    );
    assert_rejoined_by_rewind(&c, "n2");
}

/// A client of `member`'s PostgreSQL; fails the test when it does not answer.
async fn connect(c: &Cluster, member: &str) -> tokio_postgres::Client {
    try_connect(&c.member_url(member), Duration::from_secs(5))
        .await
        .unwrap_or_else(|| c.fail(&format!("{member} does not answer")))
}

/// `member` rejoined by pg_rewind: nothing moved aside, the rejoin recorded as a rewind.
fn assert_rejoined_by_rewind(c: &Cluster, member: &str) {
    let member_dir = c.data_dir(member).parent().unwrap().to_path_buf();
    assert!(
        old_data_dirs(&member_dir).is_empty(),
        "{member} was re-cloned (its data moved aside): {:#?}",
        c.history()
    );
    wait_until(&format!("{member}'s rewind recorded"), CONVERGE, || {
        let history = c.history();
        events(&history, "rejoin_rewind")
            .iter()
            .any(|(from, _)| from == member)
            .then_some(())
    });
}
