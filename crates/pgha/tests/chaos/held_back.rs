//! Standbys held back (iptables) while a campaign hits the primary: what is lost, and said.

use super::*;

use std::collections::BTreeSet;

use pgha_testkit::{query_column, reap, value_becomes};

/// iptables rules dropping the replication connections of the standbys to the primary (both
/// directions, by the standbys' client ports): the primary goes on acknowledging, the
/// standbys receive nothing. Removed when dropped.
struct HoldReplication {
    rules: Vec<Vec<String>>,
}

impl HoldReplication {
    fn new(primary_port: u16, client_ports: &[i32]) -> HoldReplication {
        let mut rules = Vec::new();
        for cp in client_ports {
            for (from, to) in [
                (primary_port.to_string(), cp.to_string()),
                (cp.to_string(), primary_port.to_string()),
            ] {
                rules.push(
                    [
                        "OUTPUT",
                        "-p",
                        "tcp",
                        "-s",
                        "127.0.0.1",
                        "--sport",
                        &from,
                        "--dport",
                        &to,
                    ]
                    .iter()
                    .map(|s| s.to_string())
                    .chain(["-j".to_string(), "DROP".to_string()])
                    .collect(),
                );
            }
        }
        for rule in &rules {
            let out = Command::new("iptables")
                .arg("-I")
                .args(rule)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "iptables -I {rule:?}: {}",
                stderr_of(&out)
            );
        }
        HoldReplication { rules }
    }
}

impl Drop for HoldReplication {
    fn drop(&mut self) {
        for rule in &self.rules {
            let _ = Command::new("iptables").arg("-D").args(rule).output();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_asynchronous_crash_with_standbys_held_back_loses_writes_and_says_so() {
    held_back_primary_loses_writes("crash-primary", "1", "60s").await;
}

/// Found by `pgha chaos` (bench/chaos.sh, asynchronous mode): a leader whose agent stood still
/// was fenced by its supervisor (PostgreSQL killed) after WAL its standbys never received;
/// once thawed, it reported its last checkpoint, before the switch point, followed, and failed
/// to stream until stream_timeout_ms (30 s) made it rewind. It must rewind at once: recovered
/// within 45 s of the pause's start (the pause itself takes 20 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_primary_with_unreplicated_wal_rejoins_by_rewind_without_the_stream_timeout() {
    // Seed 4 makes n1, the leader, the member whose agent is paused.
    held_back_primary_loses_writes("pause-agent", "4", "45s").await;
}

/// An asynchronous cluster whose standbys stop receiving once the campaign's rows reached
/// them; `fault` (drawn with `seed`) then hits the primary, n1: the writes it acknowledged
/// since are lost, `pgha chaos` must say so and exit 4, and n1 must be back as a standby
/// within `bound`.
async fn held_back_primary_loses_writes(fault: &str, seed: &str, bound: &str) {
    let c = Cluster::start(&[], CONVERGE);
    // The standbys will be a few hundred kB behind: still promotable.
    c.config_ok("set", &["maximum_lag_on_failover=1073741824"]);
    let (status, j, context, held) = held_back_campaign(&c, fault, seed, bound).await;
    assert_eq!(status, Some(4), "{context}");
    assert_eq!(j["verdict"], "lost_without_promise", "{context}");
    assert_eq!(j["settings"]["no_loss_promised"], false);
    assert!(j["broken"].as_array().unwrap().is_empty(), "{context}");
    assert!(j["two_writers"].as_array().unwrap().is_empty(), "{context}");
    let lost = j["lost"].as_u64().unwrap();
    assert!(lost > 0, "{context}");
    let f = &j["faults"][0];
    assert_eq!(
        (f["kind"].as_str(), f["victim"].as_str()),
        (Some(fault), Some("n1")),
        "{context}"
    );
    assert_eq!(f["lost"].as_u64(), Some(lost), "{context}");
    assert!(f["recovered"].is_i64(), "{context}");
    // What was lost is what n1 acknowledged after its standbys stopped receiving: none of
    // it was on n2 then. (Not "every id above n2's highest": two writers' ids need not
    // commit in their order, so a lower id may commit after a higher one reached n2.)
    let range = &j["lost_ranges"][0];
    assert_eq!(range["era"]["member"], "n1", "{context}");
    assert_eq!(range["count"].as_u64(), Some(lost));
    let held_then = |id: &Value| held.contains(&id.as_i64().unwrap());
    assert!(!held_then(&range["first_id"]), "{context}");
    for id in j["lost_ids"].as_array().unwrap() {
        assert!(
            !held_then(id),
            "{id} was on n2 when replication was held\n{context}"
        );
    }
    assert_put_back(&c).await;
}

/// Synchronous mode on, the primary killed with WAL its standbys never received (commits
/// waiting for them): it hands the lease to a synchronous standby, starts as a standby to take
/// part in the election, and must come back streaming within 45 s (well before
/// stream_timeout_ms), nothing acknowledged lost. Where a campaign found it following instead
/// (a probe during its replay looked behind the switch point) depends on timing: the core
/// scenario `a_crashed_primary_started_to_elect_rewinds_once_a_leader_exists` is the one red
/// without that fix; this checks the path end to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_synchronous_primary_with_unreplicated_wal_rewinds_back_in() {
    let c = Cluster::start(&["--synchronous-mode", "on"], CONVERGE);
    let (status, j, context, _) = held_back_campaign(&c, "kill-primary", "1", "45s").await;
    assert_eq!(status, Some(0), "{context}");
    assert_passed(&j, 1, &context);
    let f = &j["faults"][0];
    assert_eq!(f["victim"], "n1", "{context}");
    assert_ne!(f["leader_after"], "n1", "{context}");
    assert_put_back(&c).await;
}

/// `pgha chaos --rounds 1 --faults FAULT` on `c`, whose standbys stop receiving from n1 (the
/// primary) once the campaign's rows reached them, until the campaign ends: its exit status,
/// summary, output, and the ids n2 held once replication was held back.
async fn held_back_campaign(
    c: &Cluster,
    fault: &str,
    seed: &str,
    bound: &str,
) -> (Option<i32>, Value, String, BTreeSet<i64>) {
    // The hold drops the replication connections by their ports: with pgha's replication
    // timeouts (5 s here) the standbys would give up on them and reconnect on new ports.
    c.replication_timeouts_of_a_minute().await;
    let tmp = tempfile::tempdir().unwrap();
    let mut child = spawn_chaos(
        c,
        tmp.path(),
        &[
            "--rounds",
            "1",
            "--faults",
            fault,
            "--min-gap",
            "8s",
            "--max-gap",
            "8s",
            "--seed",
            seed,
            "--recovery-bound",
            bound,
            "--json",
        ],
    );
    // Once the campaign's rows reach both standbys, hold their replication back.
    for standby in ["n2", "n3"] {
        let replicated = value_becomes(
            &c.member_url(standby),
            "SELECT CASE WHEN to_regclass('pgha_chaos_writes') IS NULL THEN 0 \
             ELSE (SELECT count(*) FROM pgha_chaos_writes) END",
            Duration::from_secs(30),
            |rows: &i64| *rows > 50,
        )
        .await;
        assert!(replicated, "{standby}: {}", read(tmp.path(), "chaos.err"));
    }
    let n1 = connect(&c.member_url("n1")).await;
    let ports: Vec<i32> = query_column(&n1, "SELECT client_port FROM pg_stat_replication").await;
    assert_eq!(ports.len(), 2);
    let hold = HoldReplication::new(c.up.base + 11, &ports);
    let n2 = connect(&c.member_url("n2")).await;
    let held: BTreeSet<i64> = query_column(&n2, "SELECT id FROM pgha_chaos_writes")
        .await
        .into_iter()
        .collect();
    let status = reap(&mut child, Duration::from_secs(180)).expect("pgha chaos ends");
    drop(hold);
    let (stdout, stderr) = (read(tmp.path(), "chaos.out"), read(tmp.path(), "chaos.err"));
    let context = format!("stdout:\n{stdout}\nstderr:\n{stderr}");
    let j = summary_of(&stdout, &stderr);
    (status.code(), j, context, held)
}
