//! Issue 12: logical replication slots survive a failover on PostgreSQL 17 and 18. A slot made
//! with `failover = true` on the primary is kept in sync on the standbys
//! (`sync_replication_slots`); after the primary stops, the promoted standby serves the same
//! slot and every change not yet consumed comes out of it, nothing skipped. The old primary
//! rejoins, drops its own stale copy of the slot and synchronizes the new primary's.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::cluster::Cluster;
use pgha_testkit::connect;
use pgha_testkit::servers::bin_dir;

const CONVERGE: Duration = Duration::from_secs(30);
const SYNC: Duration = Duration::from_secs(90);

/// The ids of the rows of table `t` a test_decoding change stream inserted.
fn inserted_ids(changes: &[String]) -> BTreeSet<i64> {
    changes
        .iter()
        .filter_map(|c| {
            // e.g. `table public.t: INSERT: id[bigint]:7 stage[text]:'pending'`
            let rest = c.strip_prefix("table public.t: INSERT: id[")?;
            let (_, value) = rest.split_once("]:")?;
            value.split_whitespace().next()?.parse().ok()
        })
        .collect()
}

/// Consumes the slot on `member`, in a session of its own: the changes' text.
async fn changes(c: &Cluster, member: &str) -> Vec<String> {
    consume(c, &connect(&c.member_url(member)).await, member).await
}

/// Consumes the slot with `client`, a session on `member`: the changes' text.
async fn consume(c: &Cluster, client: &tokio_postgres::Client, member: &str) -> Vec<String> {
    client
        .query(
            "SELECT data FROM pg_logical_slot_get_changes('cdc', NULL, NULL)",
            &[],
        )
        .await
        .unwrap_or_else(|e| c.fail(&format!("read the slot on {member}: {e}")))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Whether `member` holds the slot as a synchronized, persistent copy.
async fn synced(c: &Cluster, member: &str) -> bool {
    let client = connect(&c.member_url(member)).await;
    let row = client
        .query_opt(
            "SELECT synced AND NOT temporary FROM pg_replication_slots WHERE slot_name = 'cdc'",
            &[],
        )
        .await
        .ok()
        .flatten();
    row.is_some_and(|r| r.get::<_, bool>(0))
}

/// Consumes the slot on `primary` until every one of `standbys` holds a synchronized,
/// persistent copy; returns the ids consumed. PostgreSQL keeps a standby's new copy temporary
/// until the consumer has advanced the slot past what the standby already has (before that,
/// using it could lose changes), so a consumer that advances is what makes it ready.
async fn consume_until_synced(c: &Cluster, primary: &str, standbys: &[&str]) -> BTreeSet<i64> {
    let client = connect(&c.member_url(primary)).await;
    let mut consumed = BTreeSet::new();
    let deadline = std::time::Instant::now() + SYNC;
    loop {
        client
            .execute("SELECT pg_log_standby_snapshot()", &[])
            .await
            .unwrap_or_else(|e| c.fail(&format!("log a standby snapshot on {primary}: {e}")));
        let data = consume(c, &client, primary).await;
        consumed.extend(inserted_ids(&data));
        let mut all = true;
        for s in standbys {
            all &= synced(c, s).await;
        }
        if all {
            break;
        }
        if std::time::Instant::now() > deadline {
            c.fail(&format!(
                "{standbys:?} never held a synchronized copy of slot cdc"
            ));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    consumed
}

async fn slot_survives_failover(major: u32) {
    let bin = bin_dir(major);
    let c = Cluster::start(
        &[
            "--pg-bin-dir",
            bin.to_str().unwrap(),
            "--param",
            "wal_level=logical",
        ],
        CONVERGE,
    );
    c.wait_converged("n1", &[]).await;
    c.create_table().await;
    let n1 = connect(&c.member_url("n1")).await;
    n1.execute(
        "SELECT pg_create_logical_replication_slot('cdc', 'test_decoding', false, false, true)",
        &[],
    )
    .await
    .unwrap_or_else(|e| c.fail(&format!("create the failover slot: {e}")));
    c.write("n1", "consumed", 1..11).await;
    let consumed = consume_until_synced(&c, "n1", &["n2", "n3"]).await;
    assert_eq!(consumed, (1..11).collect(), "the first changes, consumed");
    c.write("n1", "pending", 11..21).await;
    c.wait_identical("n1", &["n1", "n2", "n3"]).await;

    // `pgha status` says which slots follow a failover, and where their copies are ready.
    let status: serde_json::Value = serde_json::from_str(&c.ok("status", &["--json"])).unwrap();
    let slot = |member: &str| {
        status["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == member)
            .map(|m| m["logical_slots"][0].clone())
            .unwrap()
    };
    assert_eq!(slot("n1")["failover"], true, "{status}");
    assert_eq!(slot("n1")["synced"], false, "{status}");
    for standby in ["n2", "n3"] {
        assert_eq!(slot(standby)["synced"], true, "{status}");
        assert_eq!(slot(standby)["ready"], true, "{status}");
    }
    let table = c.ok("status", &[]);
    assert!(
        table.contains("Logical slots on n2: cdc (synchronized, ready)"),
        "{table}"
    );

    c.ok("stop", &["n1"]);
    let new = c.wait_new_primary(&["n1"]);
    let after = inserted_ids(&changes(&c, &new).await);
    let pending: BTreeSet<i64> = (11..21).collect();
    assert!(
        pending.is_subset(&after),
        "changes skipped after the failover to {new}: missing {:?} (read {after:?})",
        pending.difference(&after).collect::<Vec<_>>()
    );

    // The old primary rejoins: its own copy of the slot goes, the new primary's is synced.
    c.ok("start", &["n1"]);
    c.wait_converged(&new, &[]).await;
    c.write(&new, "later", 21..31).await;
    let later = consume_until_synced(&c, &new, &["n1"]).await;
    assert!(later.contains(&30), "{later:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_17_logical_slot_survives_failover() {
    slot_survives_failover(17).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_18_logical_slot_survives_failover() {
    slot_survives_failover(18).await;
}
