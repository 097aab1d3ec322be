//! A key of etcd edited by hand into a value pgha cannot read, mid-run: no member decides on a
//! guess, and the way out the error names works.

use super::*;

use pgha_store::{EtcdStore, Guard, Key, Store};

/// design.md, "A key in the store unreadable": an operator puts the cluster configuration
/// back with etcdctl, `ttl_ms` as `"3s"` (a string), into a cluster in synchronous mode `on`.
/// Read as the defaults it would be asynchronous (the leader would empty
/// `synchronous_standby_names` and acknowledge commits no standby has) with a 10 s ttl. Every
/// agent must treat it as a store outage instead: the leader writes on under failsafe (every
/// member confirms it, the store being down for each), its synchronous standby list stands,
/// nobody else is promoted, each agent names the key in its log, and `pgha status` refuses,
/// naming it and the fix. Then the fix it names: the key deleted; the agents put back the
/// configuration they last read (synchronous mode `on`), and the cluster goes on.
#[test]
fn a_configuration_edited_by_hand_into_an_unreadable_value_is_never_read_as_the_defaults() {
    let _serial = serial();
    let rt = runtime();
    let c = DistCluster::start(&Options::default());
    let leader = c.wait_converged(Duration::from_secs(60));
    c.cli_ok(&["config", "set", "synchronous_mode=on"]);
    let sync_names = || sql(&rt, c.agent(&leader), "SHOW synchronous_standby_names");
    let applied = wait_until(
        "the leader to apply a synchronous standby list",
        Duration::from_secs(30),
        || sync_names().filter(|n| !n.is_empty()),
    );
    sql(
        &rt,
        c.agent(&leader),
        "CREATE TABLE hand_edit(at timestamptz DEFAULT now()); SELECT 'ok'",
    )
    .expect("a table on the leader");

    let store = rt
        .block_on(EtcdStore::connect(
            &[c.etcd.endpoint()],
            "demo",
            Duration::from_secs(2),
        ))
        .expect("etcd");
    let snapshot = rt.block_on(store.snapshot()).expect("a snapshot");
    let stored = &snapshot.get(Key::Config).expect("a stored config").value;
    let mut edited: Value = serde_json::from_str(stored).expect("the stored config is JSON");
    edited["ttl_ms"] = Value::from("3s");
    rt.block_on(store.put(Key::Config, &edited.to_string(), Guard::Any))
        .expect("the hand edit");
    let edited_at = Instant::now();

    // Longer than the leader's lease (3 s), the trust of its confirmations, and what a leader
    // reading the defaults would take to empty its standby list (a loop).
    let window = 3 * TTL;
    let mut problems: Vec<String> = Vec::new();
    let (mut writes, mut late_writes) = (0, 0);
    while edited_at.elapsed() < window {
        let emptied = "ran with an empty synchronous_standby_names";
        if sync_names().is_some_and(|n| n.is_empty())
            && !problems.iter().any(|p| p.contains(emptied))
        {
            problems.push(format!(
                "{leader} {emptied} {:?} after the edit",
                edited_at.elapsed()
            ));
        }
        if write(&rt, c.agent(&leader)) {
            writes += 1;
            if edited_at.elapsed() > TTL + SAFETY_MARGIN {
                late_writes += 1;
            }
        }
        for other in c.agents.iter().filter(|a| a.name != leader) {
            if sql(&rt, other, "SELECT pg_is_in_recovery()").as_deref() == Some("f") {
                problems.push(format!(
                    "{} was promoted {:?} after the edit, while {leader} led",
                    other.name,
                    edited_at.elapsed()
                ));
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "during the {window:?} with the unreadable configuration: {writes} writes on {leader}, \
         {late_writes} of them past its lease's end"
    );
    if late_writes == 0 {
        problems.push(format!(
            "{leader} took no write past its lease's end: failsafe did not keep it (it should, \
             every member seeing the store down alike)"
        ));
    }
    for a in &c.agents {
        if !a
            .log()
            .contains("the store's config key holds an unreadable cluster configuration")
        {
            problems.push(format!("{}'s log does not name the config key", a.name));
        }
    }
    let status = c.cli(&["status"]);
    let said = String::from_utf8_lossy(&status.stderr);
    if status.status.success() || !said.contains("config key") || !said.contains("etcdctl") {
        problems.push(format!(
            "`pgha status` ({}) did not refuse naming the key and the fix: {said}",
            status.status
        ));
    }

    // What follows cannot be judged after a member decided on a guess.
    assert!(
        problems.is_empty(),
        "with the unreadable configuration (before it, {leader} ran with \
         synchronous_standby_names {applied:?}):\n{}\n{}",
        problems.join("\n"),
        c.logs(40)
    );

    // The way out the error names: the key deleted, the configuration last read is put back.
    rt.block_on(store.delete(Key::Config, Guard::Any))
        .expect("the key deleted");
    let restored = wait_until(
        "the configuration put back by an agent",
        Duration::from_secs(20),
        || {
            let snapshot = rt.block_on(store.snapshot()).ok()?;
            let value = snapshot.get(Key::Config)?.value.clone();
            serde_json::from_str::<Value>(&value).ok()
        },
    );
    if restored["synchronous_mode"] != "on" || restored["ttl_ms"] != 3000 {
        problems.push(format!(
            "the configuration put back is not the one last read: {restored}"
        ));
    }
    let now_leader = c.wait_converged(Duration::from_secs(30));
    let names_after =
        pgha_testkit::poll(Duration::from_secs(30), Duration::from_millis(100), || {
            sql(&rt, c.agent(&now_leader), "SHOW synchronous_standby_names")
                .filter(|n| !n.is_empty())
        });
    if names_after.is_none() {
        problems.push(format!(
            "{now_leader} ran with no synchronous standby list 30 s after the fix"
        ));
    }
    if !write(&rt, c.agent(&now_leader)) {
        problems.push(format!("{now_leader} took no write after the fix"));
    }
    let acknowledged = writes + 1;
    let count =
        sql(&rt, c.agent(&now_leader), "SELECT count(*) FROM hand_edit").expect("the count");
    if count.parse::<usize>().map_or(true, |n| n < acknowledged) {
        problems.push(format!(
            "{now_leader} holds {count} rows; {acknowledged} were acknowledged"
        ));
    }
    assert!(
        problems.is_empty(),
        "after the fix ({now_leader} leading):\n{}\n{}",
        problems.join("\n"),
        c.logs(40)
    );
}

/// One row into `hand_edit` on `agent`'s PostgreSQL: whether its commit was acknowledged within
/// 2 s (a commit waiting on a synchronous standby is not, and may land later).
fn write(rt: &tokio::runtime::Runtime, agent: &Agent) -> bool {
    rt.block_on(async {
        let Some(client) = connect(&agent.conninfo()).await else {
            return false;
        };
        let insert = client.simple_query("INSERT INTO hand_edit DEFAULT VALUES");
        matches!(
            tokio::time::timeout(Duration::from_secs(2), insert).await,
            Ok(Ok(_))
        )
    })
}
