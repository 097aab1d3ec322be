//! A whole cluster stopped and started again: the last leader's writes stay, whoever starts first.

use super::*;

/// How long a clean stop of one agent may take.
const STOP_PATIENCE: Duration = Duration::from_secs(30);

/// Writes `value` into the table `kept` on `agent`'s PostgreSQL, the leader, retrying for 10 s.
fn write_kept(rt: &tokio::runtime::Runtime, agent: &Agent, value: &str) {
    let write = format!(
        "CREATE TABLE IF NOT EXISTS kept(v text); INSERT INTO kept VALUES ('{value}'); SELECT 'ok'"
    );
    wait_until(
        &format!("a write on {}", agent.name),
        Duration::from_secs(10),
        || sql(rt, agent, &write),
    );
}

/// Every agent stopped cleanly (`pgha agent` given SIGTERM: its member key goes with it), then
/// started again, the last leader's a moment after the others'. The first leader was stopped
/// as the primary (its data stays a primary's, on the old timeline), another led on after it
/// and took a write, a standby was stopped before that write. With no record of anyone in the
/// store, the first leader judged itself best before the last one had published anything, took
/// the key, and the write was rewound away (found by CI in `pgha up`, whose agents all start at
/// once). An agent that has seen no leader since it started waits, at most a ttl, for the last
/// leader the store's position key names: that one leads again, and the write stays.
#[test]
fn the_last_leaders_writes_stay_when_its_agent_starts_after_the_others() {
    let _serial = serial();
    let rt = runtime();
    let c = DistCluster::start(&Options::default());
    let mut c = c;
    let first = c.wait_converged(Duration::from_secs(10));
    // A ttl long enough that the wait for the last leader outlasts its agent's start on a
    // loaded machine (without the wait, the first agent runs within half a second).
    c.cli_ok(&["config", "set", "ttl_ms=10000"]);
    let fi = c.index(&first);
    let standbys: Vec<usize> = (0..c.agents.len()).filter(|i| *i != fi).collect();
    let (quiet, li) = (standbys[0], standbys[1]);
    let last = c.agents[li].name.clone();
    c.agents[quiet].terminate(STOP_PATIENCE);
    c.agents[fi].terminate(STOP_PATIENCE);
    wait_until(
        &format!("{last} leading after {first} stopped"),
        Duration::from_secs(30),
        || c.agents[li].is_primary().then_some(()),
    );
    write_kept(&rt, &c.agents[li], "after the stop");
    // a loop or two, so that the position key names the last leader's term
    std::thread::sleep(LOOP_WAIT * 3);
    c.agents[li].terminate(STOP_PATIENCE);

    c.agents[fi].start();
    c.agents[quiet].start();
    std::thread::sleep(Duration::from_millis(700));
    c.agents[li].start();
    let leader = c.wait_converged(Duration::from_secs(60));
    let kept = sql(&rt, c.agent(&leader), "SELECT v FROM kept");
    assert_eq!(
        (leader.as_str(), kept.as_deref()),
        (last.as_str(), Some("after the stop")),
        "{first} started first and {leader} leads: the write {last} acknowledged must stay\n{}",
        c.logs(40)
    );
    assert!(
        c.agents[fi]
            .log()
            .contains(&format!("waiting for {last}, which led last")),
        "{first} did not say it waited for {last}:\n{}",
        c.agents[fi].log()
    );
}

/// Every host lost power for less than a ttl: the leader key of the last leader, whose agent
/// and PostgreSQL were killed at once, is still in the store when the other agents start
/// again. Those two were stopped cleanly before the last leader took a write (asynchronous
/// mode: it acknowledged it alone), so they lack it. They never hear from that leader (nothing
/// runs there to stream from): a key seen is no leader heard, and when it expires they wait
/// for the last leader, which starts a moment after. Taking the key for a leader seen, one of
/// them ran as soon as the key expired, and the write was rewound away (found by the
/// simulation with whole-cluster stops, seed 29942).
#[test]
fn the_last_leaders_writes_stay_when_its_key_outlived_it_and_its_agent_starts_last() {
    let _serial = serial();
    let rt = runtime();
    let mut c = DistCluster::start(&Options::default());
    let last = c.wait_converged(Duration::from_secs(10));
    // Long enough for the key to outlive the restarts below, and for the wait after it expired
    // to outlast the last leader's start on a loaded machine.
    c.cli_ok(&["config", "set", "ttl_ms=25000"]);
    let li = c.index(&last);
    let others: Vec<usize> = (0..c.agents.len()).filter(|i| *i != li).collect();
    for &i in &others {
        c.agents[i].terminate(STOP_PATIENCE);
    }
    write_kept(&rt, &c.agents[li], "before the power loss");
    // a loop or two: the position key names the last leader's term, and the lease runs on
    // the new ttl
    std::thread::sleep(LOOP_WAIT * 4);
    c.agents[li].crash();
    let crashed = Instant::now();

    for &i in &others {
        c.agents[i].start();
    }
    let key = |c: &DistCluster| {
        c.cluster_json()
            .map(|v| v["leader"].as_str().map(String::from))
    };
    // each of them found the key still there, and followed the dead leader
    for &i in &others {
        let following = format!("configuring as standby of {last}");
        wait_until(
            &format!("{} following {last}", c.agents[i].name),
            Duration::from_secs(30),
            || c.agents[i].log().contains(&following).then_some(()),
        );
    }
    assert_eq!(
        key(&c).flatten().as_deref(),
        Some(last.as_str()),
        "the other agents started again after {last}'s key expired: the test needs it still there\n{}",
        c.logs(40)
    );
    // etcd ends the lease a ttl after the last keep-alive, before the crash; on a loaded
    // machine its revocation (a raft write) may come seconds later (once in CI: more than 5 s).
    wait_until(
        &format!("{last}'s leader key gone, 25 s after its last renewal"),
        Duration::from_secs(45),
        || (key(&c)?.as_deref() != Some(last.as_str())).then_some(()),
    );
    eprintln!(
        "{last}'s key gone {:.1?} after it crashed",
        crashed.elapsed()
    );
    // more than it took the others to run when they did not wait
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        (key(&c), c.primaries()),
        (Some(None), Vec::<String>::new()),
        "a member ran before {last}, which led last, reported\n{}",
        c.logs(40)
    );
    c.agents[li].start();
    let leader = c.wait_converged(Duration::from_secs(60));
    let kept = sql(&rt, c.agent(&leader), "SELECT v FROM kept");
    assert_eq!(
        (leader.as_str(), kept.as_deref()),
        (last.as_str(), Some("before the power loss")),
        "{leader} leads: the write {last} acknowledged must stay\n{}",
        c.logs(40)
    );
    // the better of the two waited (the other was behind it)
    let waited = format!("waiting for {last}, which led last");
    assert!(
        others.iter().any(|&i| c.agents[i].log().contains(&waited)),
        "neither of the others said it waited for {last}:\n{}",
        c.logs(40)
    );
}

/// The whole cluster stopped, and only a member that was stopped earlier, and lacks the last
/// leader's last 5 MB of WAL, comes back (the others' hosts are gone for good, or not yet
/// back). It waits for the last leader, then does not run: it is behind the last primary
/// position by more than `maximum_lag_on_failover`, and says so. `pgha failover --to` it is
/// refused for the same reason, naming `--force`; with `--force` it takes over, and the
/// members that come back later follow it. Before, the manual failover was checked against no
/// position at all without a leader, and went ahead without `--force`.
#[test]
fn only_a_lagging_member_back_runs_by_a_forced_failover_alone() {
    let _serial = serial();
    let rt = runtime();
    let mut c = DistCluster::start(&Options::default());
    let last = c.wait_converged(Duration::from_secs(10));
    let li = c.index(&last);
    let others: Vec<usize> = (0..c.agents.len()).filter(|i| *i != li).collect();
    let (lagging, other) = (others[0], others[1]);
    let name = c.agents[lagging].name.clone();
    c.agents[lagging].terminate(STOP_PATIENCE);
    wait_until(
        "5 MB written on the leader",
        Duration::from_secs(20),
        || {
            sql(
                &rt,
                &c.agents[li],
                "CREATE TABLE IF NOT EXISTS filler AS \
             SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 20000) g; SELECT 'ok'",
            )
        },
    );
    // a loop or two: the position key follows the leader's WAL
    std::thread::sleep(LOOP_WAIT * 4);
    c.agents[other].terminate(STOP_PATIENCE);
    c.agents[li].terminate(STOP_PATIENCE);

    c.agents[lagging].start();
    let refusal = "behind the last primary position";
    wait_until(
        &format!("{name} saying it may not run"),
        TTL * 4 + Duration::from_secs(10),
        || c.agents[lagging].log().contains(refusal).then_some(()),
    );
    assert!(
        c.agents[lagging]
            .log()
            .contains("(`pgha failover --to NAME --force` promotes it by hand"),
        "{name} did not say how to promote it anyway:\n{}",
        c.agents[lagging].log()
    );
    std::thread::sleep(LOOP_WAIT * 2);
    assert_eq!(
        c.primaries(),
        Vec::<String>::new(),
        "{name}, 5 MB behind the last leader, ran on its own\n{}",
        c.logs(40)
    );
    let refused = c.cli_as(&name, &["failover", "--to", &name]);
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && said.contains(refusal) && said.contains("--force"),
        "pgha failover --to {name}, 5 MB behind the last leader, without --force: {said}\n{}",
        c.logs(40)
    );
    assert_eq!(c.primaries(), Vec::<String>::new(), "{}", c.logs(40));

    let forced = c.cli_as(&name, &["failover", "--to", &name, "--force"]);
    assert!(
        forced.status.success(),
        "pgha failover --to {name} --force: {}\n{}",
        String::from_utf8_lossy(&forced.stderr),
        c.logs(40)
    );
    wait_until(&format!("{name} primary"), Duration::from_secs(30), || {
        c.agents[lagging].is_primary().then_some(())
    });
    c.agents[li].start();
    c.agents[other].start();
    let leader = c.wait_converged(Duration::from_secs(90));
    assert_eq!(leader, name, "{}", c.logs(40));
    assert_eq!(
        sql(
            &rt,
            &c.agents[lagging],
            "SELECT to_regclass('filler') IS NULL"
        ),
        Some("t".into()),
        "what {name} lacked is lost, as --force said"
    );
    let failovers = history_kinds(&c, "manual_failover");
    assert!(
        failovers.iter().any(|e| e["to"] == name.as_str()),
        "no manual failover to {name} in the history: {failovers:?}"
    );
}
