//! `pgha switchover` naming no member: the command waits for whoever the leader hands over to.

use super::*;

use nix::sys::signal::Signal;
use pgha_testkit::signal;

/// When it accepts a switchover naming no member, the API names the best standby as the
/// store's records show it; the leader picks the best standby again when it hands over, and
/// the two can differ (a record a loop behind, an agent that stalls). Here the two standbys'
/// records are equal, so the API names the one first by name; its agent is stopped (SIGSTOP)
/// just before, and the other standby takes over. Before, `pgha switchover` waited for the
/// member the API named until its patience ran out (120 s), and failed a switchover that had
/// happened (suspected in session 42's whole-suite run, where `pgha switchover` timed out
/// after an etcd restart while the agents' logs showed it done).
#[test]
fn a_switchover_naming_no_member_waits_for_whoever_takes_over() {
    let _serial = serial();
    let c = DistCluster::start(&Options::default());
    let leader = c.wait_converged(Duration::from_secs(10));
    let mut standbys: Vec<String> = c
        .agents
        .iter()
        .map(|a| a.name.clone())
        .filter(|n| *n != leader)
        .collect();
    standbys.sort();
    let (first, second) = (standbys[0].clone(), standbys[1].clone());
    let frozen = c
        .agent(&first)
        .pid()
        .expect("the first standby's agent runs");
    let lsn = |c: &DistCluster, name: &str| {
        c.cluster_json()
            .and_then(|v| v["members"][name]["lsn"].as_str().map(String::from))
    };
    // The two records equal (an idle cluster), the first standby's agent stopped: its record
    // stays in the store for a ttl, as it was.
    wait_until(
        "both standbys' records at one position",
        Duration::from_secs(10),
        || (lsn(&c, &first).is_some() && lsn(&c, &first) == lsn(&c, &second)).then_some(()),
    );
    assert!(signal(frozen, Signal::SIGSTOP));
    let started = Instant::now();
    let out = c.cli_as(&leader, &["switchover"]);
    signal(frozen, Signal::SIGCONT);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "pgha switchover ({:.1} s):\n{said}",
        started.elapsed().as_secs_f64()
    );
    assert!(
        said.contains(&format!("({first} is, now)")),
        "the test needs the API to name {first}, whose agent stands\n{said}"
    );
    assert!(
        out.status.success() && said.contains(&format!("{second} is the primary")),
        "the switchover to {second} was not reported\n{said}\n{}",
        c.logs(30)
    );
    let now = c.wait_converged(Duration::from_secs(30));
    assert_eq!(now, second, "{}", c.logs(30));
    let switched = history_kinds(&c, "switchover");
    assert!(
        switched
            .iter()
            .any(|e| e["from"] == leader.as_str() && e["to"] == second.as_str()),
        "{switched:?}"
    );
}
