//! etcd's storage: out of space, its data lost, and every host (etcd's too) losing power.

use super::*;

use pgha_testkit::{poll, postgres_user, PidSquatters};

/// etcd runs out of space (its quota reached: the NOSPACE alarm, under which it refuses every
/// write but still serves reads, read-only transactions and lease keep-alives), synchronous
/// mode, writers writing. The leader renews its lease by a compare-and-read and a keep-alive,
/// which etcd still serves: it keeps leading and writes go on, and its agent says what is wrong
/// and what to do. Then the leader's host crashes: nobody can take the lease while etcd refuses
/// writes, so nobody is promoted; once the operator makes room (compaction, defragmentation,
/// the alarm disarmed) a standby takes over. Nothing acknowledged lost, one writer.
#[test]
fn etcd_out_of_space() {
    let (mut c, leader) = start_sync_with(Opts {
        etcd_quota_bytes: Some(64 << 20),
        ..Opts::default()
    });
    let ck = checker_writing(&c, &leader);
    let (revision, t0) = (c.etcd_revision(), Instant::now());
    std::thread::sleep(Duration::from_secs(10));
    let per_second = (c.etcd_revision() - revision) as f64 / t0.elapsed().as_secs_f64();
    ck.mark(&format!(
        "pgha makes {per_second:.1} etcd revisions a second (3 members, writes going on)"
    ));
    let log_at = c.log_len(&leader);
    let junk = c.fill_etcd();
    let full_at = Instant::now();
    ck.mark(&format!(
        "etcd out of space after {junk} junk writes of 1 MiB (NOSPACE alarm: {})",
        c.etcd_out_of_space()
    ));
    let mut unmet = Vec::new();
    let led_throughout = poll(TTL * 3, Duration::from_millis(250), || {
        let leads = c.cluster_json()?["leader"].as_str()? == leader;
        let writable = c
            .sql_one(&leader, "SELECT pg_is_in_recovery()::text")
            .as_deref()
            == Some("false");
        (!(leads && writable)).then_some(())
    })
    .is_none();
    if !led_throughout {
        unmet.push(format!(
            "{leader} stopped leading or writing while etcd was out of space"
        ));
    }
    if !ck.wait_acks(&leader, full_at + TTL * 2, 1, PATIENCE) {
        unmet.push(format!(
            "{leader} acknowledged no write two ttls after etcd ran out of space"
        ));
    }
    let said = c.log_lines_since(&leader, log_at, &["etcdctl alarm disarm"]);
    ck.mark(&format!(
        "node crash of {leader} (agent and postmaster kill -9)"
    ));
    c.member_mut(&leader).crash();
    let crashed_at = Instant::now();
    let mut promoted = Vec::new();
    while crashed_at.elapsed() < TTL * 3 {
        for s in standbys_of(&c, &leader) {
            let writable =
                c.sql_one(&s, "SELECT pg_is_in_recovery()::text").as_deref() == Some("false");
            if writable && !promoted.contains(&s) {
                ck.mark(&format!("{s} left recovery while etcd refused writes"));
                promoted.push(s);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    ck.mark("room made in etcd: junk deleted, history compacted, defragmented, alarm disarmed");
    c.make_room_in_etcd();
    let new = await_failover(&c, &ck, &leader, TTL + PATIENCE);
    let writes_on_new = ck.wait_acks(&new, Instant::now(), 1, PATIENCE);
    ck.mark(&format!("{leader}'s agent restarted"));
    c.start_agent(&leader);
    let report = ck.finish(&c, CONVERGE);
    eprintln!("{report}\n{leader} said: {said:#?}");
    assert_no_loss_one_writer(&report, &c);
    if !promoted.is_empty() {
        unmet.push(format!(
            "{promoted:?} left recovery while etcd refused writes"
        ));
    }
    if said.is_empty() {
        unmet.push(format!(
            "{leader}'s agent did not say that etcd refuses writes, nor what to do"
        ));
    }
    if said.len() > 2 {
        unmet.push(format!(
            "{leader}'s agent said it {} times, not once",
            said.len()
        ));
    }
    if !writes_on_new {
        unmet.push(format!("{new} acknowledged no write after it took over"));
    }
    assert_all_met_and_streaming(&c, &report, &unmet, "etcd out of space");
}

/// etcd loses every key while the cluster runs (killed, its data directory removed, a new
/// empty etcd started at the same address: a disk lost without a backup, or a restore from the
/// wrong one), synchronous mode, writers writing. The leader key, the cluster's system
/// identifier, its configuration, the synchronous set and the members' records are gone; one
/// member comes back without data meanwhile. pgha must not start another cluster (the member
/// without data must clone), must not promote a member behind the acknowledged writes,
/// and must come back over the same data with the configuration it ran (not the defaults:
/// asynchronous, a 10 s ttl; nor the node files' `[dynamic]`, which a setting changed live
/// makes differ: the member started after the wipe puts back the one it kept): one writer,
/// nothing acknowledged lost, every member streaming from the final primary.
#[test]
fn etcd_data_lost() {
    let (mut c, leader) = start_sync();
    // set live, so that the cluster's configuration is not the node files' `[dynamic]`
    let out = c.cli(&["config", "set", "maximum_lag_on_failover=2097152"]);
    assert!(
        out.status.success(),
        "pgha config set failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config_before = c.cluster_json().expect("/cluster")["config"].clone();
    let system_id = c.sql_one(&leader, "SELECT system_identifier FROM pg_control_system()");
    let ck = checker_writing(&c, &leader);
    // one member comes back without data (a replaced disk, a new host): with no cluster in
    // the store it could take it for a new one and initialise an empty primary
    let fresh = standbys_of(&c, &leader).remove(0);
    ck.mark(&format!(
        "{fresh}'s agent stopped and its data directory removed (a member without data)"
    ));
    c.member_mut(&fresh).terminate_agent();
    std::fs::remove_dir_all(c.member(&fresh).data_dir()).expect("remove the data directory");
    ck.mark("etcd killed, its data removed, an empty etcd started at the same address");
    c.wipe_etcd();
    let wiped_at = Instant::now();
    let fresh_log_at = c.log_len(&fresh);
    c.start_agent(&fresh);
    ck.mark(&format!("{fresh}'s agent started, without data"));
    // the members write their keys again; then let it settle with the writers writing
    let back = leader_with_every_member(&c, Duration::from_secs(60));
    ck.mark(&format!(
        "after the wipe: leader {back:?}, {:?} after it",
        wiped_at.elapsed()
    ));
    std::thread::sleep(WATCH);
    let report = ck.finish(&c, CONVERGE);
    eprintln!("{report}");
    let cluster = c.cluster_json().unwrap_or_default();
    let config_after = cluster["config"].clone();
    let final_id = c.sql_one(
        &report.final_primary,
        "SELECT system_identifier FROM pg_control_system()",
    );
    let fresh_lines = c.log_lines_since(
        &fresh,
        fresh_log_at,
        &["cluster", "initdb", "bootstrap", "clon"],
    );
    eprintln!("{fresh}'s agent, started without data: {fresh_lines:#?}");
    assert_no_loss_one_writer(&report, &c);
    let mut unmet = Vec::new();
    if back.is_none() {
        unmet.push("no leader with every member published within 60 s of the wipe".to_string());
    }
    if fresh_lines.iter().any(|l| l.contains("initdb")) {
        unmet.push(format!(
            "{fresh}, without data, initialised a new cluster: {fresh_lines:#?}"
        ));
    }
    if final_id != system_id {
        unmet.push(format!(
            "the final primary's system identifier is {final_id:?}, the cluster's was {system_id:?}"
        ));
    }
    for key in [
        "synchronous_mode",
        "ttl_ms",
        "safety_margin_ms",
        "loop_wait_ms",
        "maximum_lag_on_failover",
    ] {
        if config_after[key] != config_before[key] {
            unmet.push(format!(
                "the cluster's {key} is {} after the wipe, {} before",
                config_after[key], config_before[key]
            ));
        }
    }
    assert_all_met_and_streaming(&c, &report, &unmet, "etcd's data lost");
}

/// Every host loses power at once (a whole data centre, etcd's hosts with it), synchronous
/// mode, writers writing, PostgreSQL and etcd syncing to disks of their own (`fsync = on`):
/// every process is killed at the same instant and each disk keeps only what was synced to it.
/// The power comes back: etcd, then every agent, starts on what the disks kept; the pids two
/// members' `postmaster.pid` files name belong to other processes by then (of root, of the
/// PostgreSQL OS user), as a machine that came back hands out pids again. The same
/// cluster must come back (its system identifier), with one writer, nothing acknowledged
/// lost, every member streaming from the final primary, each failover recorded once, and no
/// process that took a postmaster's pid signalled.
#[test]
fn every_host_loses_power() {
    let (mut c, leader) = start_sync_with(Opts {
        member_disks: true,
        etcd_disks: true,
        parameters: vec![("fsync".into(), "\"on\"".into())],
        ..Opts::default()
    });
    let system_id = c.sql_one(&leader, "SELECT system_identifier FROM pg_control_system()");
    let ck = checker_writing(&c, &leader);
    ck.mark("every host but the client's loses power: each process killed, each disk keeps what was synced");
    c.lose_power();
    let mut squatters = PidSquatters::default();
    squatters.squat(&c.members[0].data_dir(), None);
    squatters.squat(&c.members[1].data_dir(), Some(postgres_user()));
    std::thread::sleep(Duration::from_secs(2));
    ck.mark("the power is back: etcd starts, then every agent");
    let log_at: Vec<usize> = c.members.iter().map(|m| c.log_len(&m.name)).collect();
    let back_at = Instant::now();
    c.power_back();
    let back = leader_with_every_member(&c, Duration::from_secs(90));
    ck.mark(&format!(
        "leader {back:?} with every member published, {:?} after the power came back",
        back_at.elapsed()
    ));
    std::thread::sleep(WATCH);
    let report = ck.finish(&c, CONVERGE);
    eprintln!("{report}");
    for (m, at) in c.members.iter().zip(log_at) {
        let needles = [
            "lease", "promot", "rewind", "recovery", "clone", "follow", "start",
        ];
        let lines = c.log_lines_since(&m.name, at, &needles);
        eprintln!("{} after the power came back: {lines:#?}", m.name);
    }
    assert_no_loss_one_writer(&report, &c);
    assert_history_recorded_once(&c);
    let mut unmet = Vec::new();
    if back.is_none() {
        unmet.push("no leader with every member published within 90 s of the power".to_string());
    }
    for m in &c.members {
        let id = c.sql_one(&m.name, "SELECT system_identifier FROM pg_control_system()");
        if id != system_id {
            unmet.push(format!(
                "{}'s system identifier is {id:?}, the cluster's was {system_id:?}",
                m.name
            ));
        }
    }
    let gone = squatters.gone();
    if !gone.is_empty() {
        unmet.push(format!(
            "processes holding the lost postmasters' pids were signalled: {gone:?}"
        ));
    }
    assert_all_met_and_streaming(&c, &report, &unmet, "every host lost power");
}

/// The leader once the store holds a leader key and every member's record, within `timeout`.
fn leader_with_every_member(c: &Cluster, timeout: Duration) -> Option<String> {
    poll(timeout, Duration::from_millis(200), || {
        let v = c.cluster_json()?;
        let leader = v["leader"].as_str()?.to_string();
        (v["members"].as_object()?.len() == c.members.len()).then_some(leader)
    })
}
