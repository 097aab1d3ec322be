//! A new primary in mode `on`: its commits wait for the published set's other standby while it
//! connects, a replication timeout at most, then go on asynchronous, saying so.

use super::*;

use common::status::primary_of;
use nix::sys::signal::Signal;
use pgha_testkit::signal;

/// Found by `faults::hosts::etcd_host_lossy` (a whole-suite run lost 16 acknowledged commits):
/// a winner whose configuration listed nobody (a standby that never led) promoted asynchronous
/// while the set it published still said each commit was on the set's other standby; its lease
/// lapsed a moment later and that standby, lacking them, was elected.
///
/// Here the synchronous standby S takes over from the killed primary while the set's other
/// standby P cannot connect to it (P's WAL receiver stopped with SIGSTOP just before the kill,
/// behind S). S's PostgreSQL must count P from its first commit, and a commit on it must wait
/// while P does not connect: for a replication timeout (8 s with an 8 s ttl: room for the
/// failover to be seen and the commit sent well within it), after which mode
/// `on` goes asynchronous and history says so. Red before: S counted nobody, the commit
/// returned at once. Then P's receiver resumes, P streams from S and is counted again, and
/// no acknowledged write is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_primary_in_mode_on_waits_for_the_sets_other_standby_while_it_connects() {
    let (c, sync) = start_sync(&["--synchronous-mode", "on"]).await;
    let ttl = Duration::from_secs(8);
    c.config_ok("set", &[&format!("ttl_ms={}", ttl.as_millis())]);
    let status = c.up.status().unwrap();
    let old = primary_of(&status).unwrap_or_else(|| c.fail("no primary"));
    let other = common::cluster::MEMBERS
        .into_iter()
        .find(|m| *m != old && *m != sync)
        .unwrap()
        .to_string();
    let writer = writer(&c, 1);
    c.wait_writes(&writer, 20, Duration::from_secs(20)).await;
    // Within stalled_standby_ms (3 s) of the freeze, while P is still in the set.
    let receiver: i32 = query_value(
        &connect(&c.member_url(&other)).await,
        "SELECT pid FROM pg_stat_wal_receiver",
    )
    .await;
    let receiver = receiver as u32;
    assert!(
        signal(receiver, Signal::SIGSTOP),
        "SIGSTOP {other}'s WAL receiver"
    );
    c.wait_writes(&writer, 5, Duration::from_secs(5)).await;
    c.kill_postmaster(&old);
    c.ok("stop", &[&old, "--mode", "immediate"]);
    let new = c.wait_new_primary(&[&old]);
    let promoted = Instant::now();
    if new != sync {
        signal(receiver, Signal::SIGCONT);
        c.fail(&format!(
            "{new} took over, not the synchronous standby {sync} ({other}'s receiver stopped)"
        ));
    }
    let counted = c.show(&new, "synchronous_standby_names").await;
    let url = c.member_url(&new);
    let commit = tokio::spawn(async move {
        let client = connect(&url).await;
        let t0 = Instant::now();
        client
            .execute("INSERT INTO t(id, stage) VALUES (-1, 'promoted')", &[])
            .await
            .map(|_| t0.elapsed())
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let waited_two_seconds = !commit.is_finished();
    // `pgha status` says why, naming the standby (not "degraded to asynchronous").
    let said =
        c.up.status()
            .and_then(|s| s["synchronous"]["warning"].as_str().map(String::from));
    let took = tokio::time::timeout(Duration::from_secs(30), commit).await;
    // The history entry is written as PostgreSQL is told: poll for it.
    let degraded = pgha_testkit::poll(Duration::from_secs(10), Duration::from_millis(200), || {
        c.history()
            .iter()
            .any(|e| {
                e["to"] == new.as_str()
                    && e["reason"]
                        .as_str()
                        .is_some_and(|r| r.starts_with("degraded to asynchronous"))
            })
            .then_some(())
    });
    signal(receiver, Signal::SIGCONT);
    let took = match took {
        Ok(Ok(Ok(took))) => took,
        other => c.fail(&format!("the commit on {new}: {other:?}")),
    };
    eprintln!(
        "{new} promoted counting {counted:?}; a commit issued then waited {took:?}, returned \
         {:?} after the promotion was seen",
        promoted.elapsed()
    );
    if !counted.contains(&format!("\"{other}\"")) || !waited_two_seconds {
        c.fail(&format!(
            "{new} did not wait for {other} after its promotion: synchronous_standby_names \
             {counted:?}, the commit returned after {took:?}"
        ));
    }
    let expected =
        format!("commits wait: no synchronous standby is streaming (waiting for {other})");
    assert_eq!(
        said.as_deref(),
        Some(expected.as_str()),
        "pgha status while the commit waited"
    );
    // A replication timeout from the promotion, a loop or two of slack.
    assert!(
        took < ttl + Duration::from_secs(4),
        "the commit waited {took:?}: longer than the replication timeout and a loop or two"
    );
    if degraded.is_none() {
        c.fail(&format!("no history entry says {new} went asynchronous"));
    }

    // P resumes, streams from S and is counted again; the old primary rejoins.
    c.ok("start", &[&old]);
    c.wait_settled_sync(Duration::from_secs(60));
    let acked: Vec<i64> = writer.finish().await.iter().map(|a| a.id).collect();
    let lost = c.lost(&new, &acked).await;
    if !lost.is_empty() {
        c.fail(&format!(
            "{} acknowledged rows lost: {:?}",
            lost.len(),
            &lost[..lost.len().min(20)]
        ));
    }
}
