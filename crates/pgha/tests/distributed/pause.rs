//! Maintenance mode (`pgha pause`): agents restarted, killed or stopped while paused.

use super::*;

/// How the agent binary is upgraded without a failover (docs/design.md): in maintenance mode
/// a stopped agent leaves PostgreSQL running (its supervisor disarmed, nobody takes over), and
/// the agent started again within the ttl adopts the running primary and its leader key. In
/// strict synchronous mode, the restarted agent keeps PostgreSQL's synchronous standby list
/// (it once rewrote the configuration from its empty memory: asynchronous until resumed).
#[test]
fn paused_leader_agent_restarts_without_touching_postgresql() {
    let _serial = serial();
    let rt = runtime();
    let mut c = DistCluster::start(&Options::default());
    let leader = c.wait_converged(Duration::from_secs(60));
    c.cli_ok(&["config", "set", "synchronous_mode=strict"]);
    let sync_names = |c: &DistCluster| {
        sql(&rt, c.agent(&leader), "SHOW synchronous_standby_names").unwrap_or_default()
    };
    let applied = wait_until(
        "the leader to apply a synchronous standby list",
        Duration::from_secs(30),
        || {
            let names = sync_names(&c);
            (names.starts_with("FIRST") || names.starts_with("ANY")).then_some(names)
        },
    );
    let pm = c
        .agent(&leader)
        .postmaster_pid()
        .expect("leader postmaster");
    c.cli_ok(&["pause"]);
    std::thread::sleep(Duration::from_secs(1));
    c.agent_mut(&leader).terminate(Duration::from_secs(20));
    assert!(
        c.agent(&leader).log().contains("PostgreSQL keeps running"),
        "{}",
        c.agent(&leader).log()
    );
    // A binary swap: back within the ttl (3 s); nothing is fenced meanwhile.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        c.agent(&leader).postmaster_pid(),
        Some(pm),
        "PostgreSQL was stopped with its agent in maintenance mode"
    );
    assert!(
        c.primaries().is_empty(),
        "another member took over while paused"
    );
    c.agent_mut(&leader).start();
    wait_until(
        "the restarted agent to lead again",
        Duration::from_secs(30),
        || c.agent(&leader).is_primary().then_some(()),
    );
    assert_eq!(
        c.agent(&leader).postmaster_pid(),
        Some(pm),
        "PostgreSQL was restarted"
    );
    // A few loops of the adopted agent, still paused (nothing would set the list again).
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        sync_names(&c),
        applied,
        "the restarted agent changed synchronous_standby_names:\n{}",
        c.agent(&leader).log()
    );
    c.cli_ok(&["resume"]);
    assert_eq!(c.wait_converged(Duration::from_secs(30)), leader);
    assert!(
        history_kinds(&c, "failover").is_empty(),
        "no failover: {:?}",
        c.history()
    );
    assert_eq!(c.agent(&leader).postmaster_pid(), Some(pm));
}

/// `pgha pause`, then waits until the leader's supervisor is disarmed (its lease file empty).
fn pause_until_unfenced(c: &DistCluster, leader: &str) {
    let lease_file = c.agent(leader).dir.with_extension("lease");
    c.cli_ok(&["pause"]);
    wait_until(
        "the paused leader's fencing to go off",
        Duration::from_secs(10),
        || {
            let text = std::fs::read_to_string(&lease_file).unwrap_or_default();
            text.trim().is_empty().then_some(())
        },
    );
}

/// Every member's name but `leader`'s.
fn others_than(c: &DistCluster, leader: &str) -> Vec<String> {
    c.agents
        .iter()
        .map(|a| a.name.clone())
        .filter(|n| n != leader)
        .collect()
}

/// Found by review (2026-12-03): maintenance mode disarms the leader's supervisor, so a leader
/// whose agent died while paused (a new binary that does not start, in the upgrade recipe)
/// kept a writable PostgreSQL with nothing to fence it once its lease lapsed, and `pgha
/// resume` let another member take over beside it: two writers. The paused leader marks its
/// position unfenced before its fencing goes off; resumed, nobody takes over from it (each
/// says why) until its agent is back and has demoted it.
#[test]
fn a_leader_whose_agent_died_while_paused_is_not_replaced_until_its_agent_is_back() {
    let _serial = serial();
    let rt = runtime();
    let mut c = DistCluster::start(&Options::default());
    let leader = c.wait_converged(Duration::from_secs(60));
    let writable = |c: &DistCluster, name: &str| {
        sql(&rt, c.agent(name), "SELECT pg_is_in_recovery()").as_deref() == Some("f")
    };
    pause_until_unfenced(&c, &leader);
    c.agent_mut(&leader).kill();
    std::thread::sleep(TTL + LOOP_WAIT * 2);
    assert!(writable(&c, &leader), "the unfenced primary stopped");
    c.cli_ok(&["resume"]);
    let others = others_than(&c, &leader);
    let until = Instant::now() + TTL * 3;
    while Instant::now() < until {
        for other in &others {
            assert!(
                !writable(&c, other),
                "{other} took over beside the unfenced {leader}:\n{}",
                c.logs(40)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let said = others.iter().any(|o| {
        c.agent(o)
            .log()
            .contains("led while the cluster was paused")
    });
    assert!(said, "nobody said why it waits:\n{}", c.logs(40));
    // Its agent back: it finds its lease gone, demotes, and the cluster has one leader again.
    c.agent_mut(&leader).start();
    let now_leading = c.wait_converged(Duration::from_secs(60));
    let writers: Vec<&String> = c
        .agents
        .iter()
        .map(|a| &a.name)
        .filter(|n| writable(&c, n))
        .collect();
    assert_eq!(writers, [&now_leading], "{}", c.logs(40));
}

/// Review of the unfenced mark (2026-12-03): `pgha stop` of a paused leader whose PostgreSQL
/// takes longer to stop than its lease lasts (its checkpointer stalled: a slow shutdown
/// checkpoint) found its key expired and left the mark behind, with its record deleted: after
/// `pgha resume` nobody took over. It clears the mark whether or not it still holds the key.
#[test]
fn a_paused_leader_stopped_slower_than_its_lease_leaves_no_mark_behind() {
    use nix::sys::signal::Signal;
    use pgha_testkit::{children_of, cmdline, signal};
    let _serial = serial();
    let c = DistCluster::start(&Options::default());
    let leader = c.wait_converged(Duration::from_secs(60));
    pause_until_unfenced(&c, &leader);
    let pm = c
        .agent(&leader)
        .postmaster_pid()
        .expect("leader postmaster");
    let checkpointer = children_of(pm)
        .into_iter()
        .find(|p| cmdline(*p).contains("checkpointer"))
        .expect("the leader's checkpointer");
    assert!(signal(checkpointer, Signal::SIGSTOP));
    let stopped = std::thread::scope(|s| {
        let stop = s.spawn(|| c.cli_as(&leader, &["stop", &leader]));
        std::thread::sleep(TTL + LOOP_WAIT * 2);
        signal(checkpointer, Signal::SIGCONT);
        stop.join().expect("pgha stop")
    });
    assert!(
        stopped.status.success(),
        "pgha stop: {}",
        String::from_utf8_lossy(&stopped.stderr)
    );
    c.cli_ok(&["resume"]);
    let others = others_than(&c, &leader);
    wait_until(
        "another member to take over after the resume",
        Duration::from_secs(30),
        || others.iter().any(|o| c.agent(o).is_primary()).then_some(()),
    );
}
