//! A whole cluster stopped and started again: the last leader's writes stay, whoever starts first.

use super::*;

/// How long a clean stop of one agent may take.
const STOP_PATIENCE: Duration = Duration::from_secs(30);

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
    wait_until(
        "a write on the last leader",
        Duration::from_secs(10),
        || {
            sql(
            &rt,
            &c.agents[li],
            "CREATE TABLE IF NOT EXISTS kept(v text); INSERT INTO kept VALUES ('after the stop'); SELECT 'ok'",
        )
        },
    );
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
