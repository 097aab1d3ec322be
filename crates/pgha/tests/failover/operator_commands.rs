//! What an operator asks for: manual failover, pause/resume, refusals, `reinit`, `switchover --at`.

use super::*;

use pgha_testkit::refused;

/// `pgha failover --to` while the primary is healthy and the target caught up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_failover_to_a_caught_up_standby() {
    let c = start_with_rows("before").await;
    // The premise: n3's record in the store shows it caught up with the leader's, which the
    // request is checked against (on a loaded machine it was still 16 MB behind when the
    // request came, and was refused, rightly: maximum_lag_on_failover). `pgha status` showed
    // it caught up then: it probes each PostgreSQL live, and records are published at most
    // once a loop.
    let caught_up = pgha_testkit::poll_async(
        Duration::from_secs(60),
        Duration::from_millis(100),
        || async {
            let records = c.store_records().await;
            let lsn = |name: &str| records.members.get(name).map(|r| r.lsn);
            let leader = records.leader.as_deref()?;
            (lsn("n3").is_some() && lsn("n3") >= lsn(leader)).then_some(())
        },
    )
    .await;
    if caught_up.is_none() {
        c.fail("n3's record in the store never caught up with the leader's");
    }

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

/// Found in session 26's whole-suite run: a request the leader refused after the API had
/// accepted it was said in the leader's log alone, and `pgha failover --to` waited its whole
/// 120 s. The leader records the refusal in the history (what the CLI's wait looks for). Made
/// here by a scheduled switchover whose target stopped before its time came.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_leader_refuses_is_recorded_with_its_reason() {
    let c = start_with_rows("before").await;
    let out = c.ok("switchover", &["--to", "n3", "--at", "+5s"]);
    assert!(out.contains("scheduled for"), "{out}");
    c.ok("stop", &["n3"]);
    let history = wait_until("the refusal recorded", CONVERGE, || {
        let history = c.history();
        (!events(&history, "request_refused").is_empty()).then_some(history)
    });
    assert_eq!(
        events(&history, "request_refused"),
        [("n1".to_string(), "n3".to_string())],
        "{history:#?}"
    );
    let text = c.ok("history", &[]);
    assert!(
        text.contains("switchover refused by n1: n3 is not a live member"),
        "{text}"
    );
    let status = c.up.status().unwrap();
    assert_eq!(status["leader"], "n1", "{status}");
    assert!(status.get("switchover").is_none(), "{status}");
}

/// Issue 14: a scheduled switchover waits for its instant (shown in `pgha status` until then),
/// then hands over like any switchover; one scheduled for later can be withdrawn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_switchover_runs_at_its_time_and_can_be_withdrawn() {
    let c = start_with_rows("before").await;
    let out = c.ok("switchover", &["--to", "n2", "--at", "+8s"]);
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
    // n2 withdraws the request once it runs writable, after it took the lease
    c.wait_status("the request withdrawn", CONVERGE, |s| {
        s["switchover"].is_null().then_some(())
    });
    let table = c.ok("status", &[]);
    assert!(!table.contains("Switchover"), "{table}");

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

/// `pgha switchover` without `--to`: the leader hands over and the election's best standby
/// takes over, for that switchover. Before: history recorded a failover ("n2 took over: n1
/// stepped down: it handed over for a switchover"), then a `request_refused` by n2 of the
/// very request it had carried out, "made before the leader's term began".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switchover_without_a_target_goes_to_the_best_standby_and_is_recorded_as_one() {
    let c = start_with_rows("before").await;
    let out = c.ok("switchover", &[]);
    assert!(out.contains("is the primary"), "{out}");
    let history = wait_until("the switchover recorded", CONVERGE, || {
        let history = c.history();
        (!events(&history, "switchover").is_empty()).then_some(history)
    });
    let switchovers = events(&history, "switchover");
    assert!(
        switchovers.len() == 1 && switchovers[0].0 == "n1" && switchovers[0].1 != "n1",
        "{history:#?}"
    );
    c.wait_status("the request withdrawn", CONVERGE, |s| {
        s["switchover"].is_null().then_some(())
    });
    // a loop or two more: a refusal would follow the promotion at once
    tokio::time::sleep(Duration::from_secs(2)).await;
    let history = c.history();
    for kind in ["request_refused", "failover"] {
        assert!(events(&history, kind).is_empty(), "a {kind}: {history:#?}");
    }
}
