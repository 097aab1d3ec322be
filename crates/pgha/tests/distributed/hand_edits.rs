//! Keys of etcd edited or deleted by hand mid-run: no member decides on a guess, the way out
//! an error names works, and a key the leader alone writes is put back by it.

use super::*;

use nix::sys::signal::Signal;
use pgha_store::{Guard, Key, Store};

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

    let store = etcd_store(&rt, &c);
    let snapshot = rt.block_on(store.snapshot()).expect("a snapshot");
    let stored = &snapshot.get(Key::Config).expect("a stored config").value;
    let mut edited: Value = serde_json::from_str(stored).expect("the stored config is JSON");
    edited["ttl_ms"] = Value::from("3s");
    rt.block_on(store.put(Key::Config, &edited.to_string(), Guard::Any))
        .expect("the hand edit");
    let edited_at = Instant::now();

    // Longer than the leader's lease (3 s) and its margin, and what a leader reading the
    // defaults would take to empty its standby list (a loop).
    let window = 2 * TTL;
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

/// The synchronous set deleted by hand (`etcdctl del`) while the leader L runs in mode `on`
/// with its set {S, O}. Agents that read the set before go on with the one they read, but a
/// member whose agent started since finds none: read as empty, which in mode `on` makes every
/// member eligible without comparing positions. Here O's agent restarts after the deletion, O's
/// WAL receiver stands (SIGSTOP) while L commits rows S confirms, then L and S crash together
/// and O's receiver is killed before it wrote them. O, behind those rows, must not promote on an empty set: the leader puts its set
/// back as soon as it sees the key gone (it alone writes it), so O finds {S, O} and waits for
/// S, which holds the rows; both started again, S is promoted, and nothing acknowledged is
/// lost.
#[test]
fn a_synchronous_set_deleted_by_hand_is_put_back_by_the_leader() {
    let _serial = serial();
    let rt = runtime();
    let mut c = DistCluster::start(&Options::default());
    let leader = c.wait_converged(Duration::from_secs(60));
    c.cli_ok(&["config", "set", "synchronous_mode=on"]);
    let sync_standby = || {
        sql(
            &rt,
            c.agent(&leader),
            "SELECT application_name FROM pg_stat_replication WHERE sync_state = 'sync'",
        )
    };
    let s = wait_until(
        "a synchronous standby on the leader",
        Duration::from_secs(30),
        sync_standby,
    );
    let o = c
        .agents
        .iter()
        .find(|a| a.name != leader && a.name != s)
        .unwrap()
        .name
        .clone();
    sql(
        &rt,
        c.agent(&leader),
        "CREATE TABLE set_rows(v int); SELECT 'ok'",
    )
    .expect("a table on the leader");
    let store = etcd_store(&rt, &c);
    let published = || {
        let snapshot = rt.block_on(store.snapshot()).ok()?;
        let value = snapshot.get(Key::Sync)?.value.clone();
        serde_json::from_str::<Value>(&value).ok()
    };
    let before = wait_until("the published set", Duration::from_secs(10), || {
        published().filter(|set| set["members"].as_array().is_some_and(|m| m.len() == 2))
    });

    rt.block_on(store.delete(Key::Sync, Guard::Any))
        .expect("the set deleted");
    let deleted_at = Instant::now();
    let put_back = pgha_testkit::poll(Duration::from_secs(5), Duration::from_millis(50), published);
    eprintln!(
        "the set before: {before}; after the deletion: {put_back:?} ({:?})",
        deleted_at.elapsed()
    );

    // O's agent starts again: it knows only what the store holds now.
    c.agent_mut(&o).kill();
    c.agent_mut(&o).start();
    wait_until("O's agent back, streaming", Duration::from_secs(20), || {
        c.agent(&o).is_streaming_replica().then_some(())
    });
    let receiver = wal_receiver_of(&c.agent(&o).data_dir()).expect("O's WAL receiver");
    pgha_testkit::signal(receiver, Signal::SIGSTOP);
    let rows = sql(
        &rt,
        c.agent(&leader),
        "INSERT INTO set_rows SELECT generate_series(1, 1000); SELECT count(*) FROM set_rows",
    );
    let acknowledged: usize = rows
        .as_deref()
        .and_then(|r| r.parse().ok())
        .expect("rows committed on the leader");
    let (li, si) = (c.index(&leader), c.index(&s));
    c.agents[li].crash();
    c.agents[si].crash();
    let crashed_at = Instant::now();
    // What it had not written yet is lost with it (its PostgreSQL restarts its processes).
    pgha_testkit::signal(receiver, Signal::SIGKILL);

    // Past the ttl (3 s) and the election's waits (O was promoted 3.3 s after the crash when
    // it read an empty set): O must still be a standby.
    let promoted = pgha_testkit::poll(Duration::from_secs(8), Duration::from_millis(200), || {
        (sql(&rt, c.agent(&o), "SELECT pg_is_in_recovery()").as_deref() == Some("f"))
            .then(|| crashed_at.elapsed())
    });
    let o_rows = sql(&rt, c.agent(&o), "SELECT count(*) FROM set_rows");
    c.agents[si].start();
    c.agents[li].start();
    let next = c.wait_converged(Duration::from_secs(60));
    let final_rows: Option<usize> =
        sql(&rt, c.agent(&next), "SELECT count(*) FROM set_rows").and_then(|r| r.parse().ok());
    let mut problems = Vec::new();
    if put_back.is_none() {
        problems.push("the leader did not put its set back within 5 s".to_string());
    }
    if let Some(after) = promoted {
        problems.push(format!(
            "{o} was promoted {after:?} after {leader} and {s} crashed, holding {o_rows:?} of the \
             {acknowledged} rows acknowledged"
        ));
    }
    if final_rows.is_none_or(|n| n < acknowledged) {
        problems.push(format!(
            "the final primary {next} holds {final_rows:?} rows; {acknowledged} were acknowledged"
        ));
    }
    assert!(
        problems.is_empty(),
        "{}\n{}",
        problems.join("\n"),
        c.logs(40)
    );
}

/// The pid of the WAL receiver of the PostgreSQL on `data_dir` (a child of its postmaster).
fn wal_receiver_of(data_dir: &std::path::Path) -> Option<u32> {
    let postmaster = pgha_testkit::postmaster_pid(data_dir)?;
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let parent: u32 = stat[stat.rfind(')')? + 1..]
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).ok()?;
            (parent == postmaster && cmdline.contains("walreceiver")).then_some(pid)
        })
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
