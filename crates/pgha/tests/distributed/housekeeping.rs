//! What running agents take in their stride: a SIGHUP, etcd's history compacted.

use super::*;

/// SIGHUP to every agent (a logrotate script, a reload habit, the terminal an agent was
/// started from closing): each logs that it reads its configuration file only at start and
/// goes on. Before, the default disposition killed them where they stood: the leader's
/// PostgreSQL was fenced and another member took over.
#[test]
fn a_sighup_is_logged_and_changes_nothing() {
    let _serial = serial();
    let c = DistCluster::start(&Options::default());
    let leader = c.wait_converged(Duration::from_secs(60));
    let pm = c
        .agent(&leader)
        .postmaster_pid()
        .expect("leader postmaster");
    for a in &c.agents {
        let pid = a.pid().expect("agent running");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGHUP,
        )
        .expect("SIGHUP");
    }
    // Two ttls (3 s each): a dead leader's agent would have been replaced by then.
    std::thread::sleep(Duration::from_secs(7));
    let mut c = c;
    for i in 0..c.agents.len() {
        let a = &mut c.agents[i];
        assert_eq!(
            a.exited(),
            None,
            "{} exited on SIGHUP:\n{}",
            a.name,
            a.log()
        );
        assert!(
            a.log().contains("SIGHUP received and ignored"),
            "{}:\n{}",
            a.name,
            a.log()
        );
    }
    assert_eq!(c.wait_converged(Duration::from_secs(10)), leader);
    assert_eq!(
        c.agent(&leader).postmaster_pid(),
        Some(pm),
        "PostgreSQL restarted"
    );
    assert!(
        history_kinds(&c, "failover").is_empty(),
        "no failover: {:?}",
        c.history()
    );
}

/// etcd keeps every revision of every key until it is compacted, and refuses every write once they
/// fill its quota (`faults::etcd_storage::etcd_out_of_space`); pgha's members make several
/// revisions a second. With `[etcd] history_retention_ms`, the agents compact what is older:
/// revisions older than it are gone within a few seconds, and the log says so.
#[test]
fn the_agents_compact_etcds_history_older_than_the_retention() {
    let _serial = serial();
    let mut c = DistCluster::prepare(&Options::default());
    for a in &c.agents {
        let config = std::fs::read_to_string(&a.config).unwrap();
        let config = config.replacen("[etcd]\n", "[etcd]\nhistory_retention_ms = 2000\n", 1);
        std::fs::write(&a.config, config).unwrap();
    }
    c.launch();
    c.wait_converged(Duration::from_secs(60));
    let etcd = format!("127.0.0.1:{}", c.etcd.client_port());
    // A range at revision 2 (the first pgha write) once the history before it is compacted.
    let compacted = |revision: u64| {
        let body = format!("{{\"key\":\"L3BnaGE=\",\"revision\":\"{revision}\"}}");
        pgha_testkit::http("POST", &etcd, "/v3/kv/range", None, Some(&body))
            .is_some_and(|(_, answer)| answer.contains("compacted"))
    };
    let gone = pgha_testkit::poll(Duration::from_secs(20), Duration::from_millis(250), || {
        compacted(2).then_some(())
    });
    assert!(
        gone.is_some(),
        "etcd's first revisions are still there\n{}",
        c.logs(20)
    );
    let said = c.whole_logs();
    assert!(
        said.contains("etcd's history older than 2 s compacted"),
        "{}",
        c.logs(20)
    );
    // What was written within the retention is kept.
    let body = "{\"key\":\"L3BnaGE=\"}";
    let (_, now) = pgha_testkit::http("POST", &etcd, "/v3/kv/range", None, Some(body)).unwrap();
    let now: Value = serde_json::from_str(&now).unwrap();
    let now: u64 = now["header"]["revision"].as_str().unwrap().parse().unwrap();
    assert!(!compacted(now), "the current revision was compacted");
}
