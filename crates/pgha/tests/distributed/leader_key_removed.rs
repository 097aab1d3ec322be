//! The leader key removed while its holder still writes (etcd revoking a lease early as its
//! stalled leader resumes, etcd-io/etcd#15247, or `etcdctl del` by hand): no acknowledged write
//! is lost in synchronous mode.

use super::*;

use nix::sys::signal::Signal;
use std::sync::atomic::AtomicU64;

/// Synchronous mode `on`, `FIRST 1 (S, O)`, a client writing to the leader L. L's agent is
/// paused (SIGSTOP: as between two of its steps, the moment etcd revokes its lease) and its
/// key deleted by hand: L's PostgreSQL writes on until its supervisor fences it (up to T − M/2
/// after the last renewal), while S and O elect. Before, the winner stopped its receiver to
/// promote and L's PostgreSQL moved the synchronous role to the other standby, which went on
/// acknowledging commits the winner never had (found by `faults::etcd_stalls::etcd_member_disk_stalled`
/// in CI: 1 acknowledged write lost). Now each standby stops streaming before its position
/// counts: nothing L acknowledges after that is missing from the new primary, because L can
/// have nothing more acknowledged.
#[test]
fn a_leader_key_removed_while_its_holder_writes_loses_no_acknowledged_write() {
    let _serial = serial();
    let rt = runtime();
    let c = DistCluster::start(&Options::default());
    let leader = c.wait_converged(Duration::from_secs(60));
    c.cli_ok(&["config", "set", "synchronous_mode=on"]);
    wait_until(
        "two standbys in the leader's list",
        Duration::from_secs(30),
        || {
            sql(
            &rt,
            c.agent(&leader),
            "SELECT count(*) FROM pg_stat_replication WHERE sync_state IN ('sync', 'potential')",
        )
        .filter(|n| n == "2")
        },
    );
    sql(
        &rt,
        c.agent(&leader),
        "CREATE TABLE removed_key(id bigint PRIMARY KEY); SELECT 'ok'",
    )
    .expect("a table on the leader");

    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<(u64, Instant)>>> = Arc::default();
    let next = Arc::new(AtomicU64::new(1));
    let writer = {
        let (conninfo, stop, acked, next) = (
            c.agent(&leader).conninfo(),
            stop.clone(),
            acked.clone(),
            next.clone(),
        );
        std::thread::spawn(move || write_until(&conninfo, &stop, &acked, &next))
    };
    std::thread::sleep(Duration::from_secs(1));
    let agent_pid = c.agent(&leader).pid().expect("the leader's agent runs");
    pgha_testkit::signal(agent_pid, Signal::SIGSTOP);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        pgha_testkit::etcd::etcd_delete(&c.etcd.endpoint(), "/pgha/demo/leader"),
        "no leader key to delete"
    );
    let deleted_at = Instant::now();
    let others: Vec<String> = c
        .agents
        .iter()
        .map(|a| a.name.clone())
        .filter(|n| *n != leader)
        .collect();
    let promoted = pgha_testkit::poll(Duration::from_secs(15), Duration::from_millis(20), || {
        others.iter().find_map(|n| {
            (sql(&rt, c.agent(n), "SELECT pg_is_in_recovery()").as_deref() == Some("f"))
                .then(|| (n.clone(), Instant::now()))
        })
    });
    // The old primary writes on (or waits on its standbys) until its supervisor fences it.
    std::thread::sleep(Duration::from_secs(4).saturating_sub(deleted_at.elapsed()));
    stop.store(true, Ordering::SeqCst);
    writer.join().expect("the writer");
    pgha_testkit::signal(agent_pid, Signal::SIGCONT);
    let final_primary = c.wait_converged(Duration::from_secs(60));

    let acked = acked.lock().unwrap().clone();
    let present: std::collections::BTreeSet<u64> = rt.block_on(async {
        let client = connect(&c.agent(&final_primary).conninfo())
            .await
            .expect("the final primary answers");
        client
            .query("SELECT id FROM removed_key", &[])
            .await
            .expect("the rows")
            .iter()
            .map(|r| r.get::<_, i64>(0) as u64)
            .collect()
    });
    let lost: Vec<u64> = acked
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| !present.contains(id))
        .collect();
    let after_deletion = acked.iter().filter(|(_, at)| *at > deleted_at).count();
    let after_promotion = promoted.as_ref().map_or(0, |(_, when)| {
        acked.iter().filter(|(_, at)| at > when).count()
    });
    eprintln!(
        "{} writes acknowledged by {leader}, {after_deletion} after its key was deleted, \
         {after_promotion} after {:?} was promoted {:?} after the deletion; final primary \
         {final_primary}",
        acked.len(),
        promoted.as_ref().map(|(n, _)| n),
        promoted
            .as_ref()
            .map(|(_, at)| at.duration_since(deleted_at)),
    );
    let mut problems = Vec::new();
    if promoted.is_none() {
        problems.push("no other member was promoted within 15 s of the deletion".to_string());
    }
    if !lost.is_empty() {
        problems.push(format!(
            "{} acknowledged writes missing from the final primary {final_primary} (ids {} to {})",
            lost.len(),
            lost[0],
            lost[lost.len() - 1]
        ));
    }
    if after_promotion > 0 {
        problems.push(format!(
            "{leader} acknowledged {after_promotion} writes after another member was promoted"
        ));
    }
    assert!(
        problems.is_empty(),
        "{}\n{}",
        problems.join("\n"),
        c.logs(40)
    );
}

/// Inserts ids from `next` through `conninfo` until `stop`, noting each acknowledged one and
/// when; a commit not acknowledged within 1 s is given up on (its connection dropped).
fn write_until(
    conninfo: &str,
    stop: &AtomicBool,
    acked: &Mutex<Vec<(u64, Instant)>>,
    next: &AtomicU64,
) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let mut client = None;
        while !stop.load(Ordering::SeqCst) {
            if client.is_none() {
                client = connect(conninfo).await;
                if client.is_none() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
            let id = next.fetch_add(1, Ordering::SeqCst);
            let insert = format!("INSERT INTO removed_key VALUES ({id})");
            let c = client.as_ref().expect("connected");
            match tokio::time::timeout(Duration::from_secs(1), c.simple_query(&insert)).await {
                Ok(Ok(_)) => acked.lock().unwrap().push((id, Instant::now())),
                _ => client = None,
            }
        }
    });
}
