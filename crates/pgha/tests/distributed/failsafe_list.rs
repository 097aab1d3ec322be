//! The failsafe list at a new term: a successor that dies before it leads frees the members
//! its predecessor's list left out.

use super::*;

use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;

/// A `pre_promote` hook that holds the promotion of the members named in its `hold` file until
/// its `release` file exists (the promotion job, and with it the leader's first step, waits).
struct HoldingHook {
    script: PathBuf,
    calls: PathBuf,
    hold: PathBuf,
    release: PathBuf,
}

impl HoldingHook {
    fn write(dir: &std::path::Path) -> HoldingHook {
        // The script runs as the PostgreSQL OS user: it must reach and write these.
        let shared = dir.join("hook");
        std::fs::create_dir_all(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
        let hook = HoldingHook {
            script: shared.join("pre_promote.sh"),
            calls: shared.join("calls"),
            hold: shared.join("hold"),
            release: shared.join("release"),
        };
        std::fs::write(&hook.hold, "").unwrap();
        std::fs::set_permissions(&hook.hold, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(
            &hook.script,
            format!(
                "#!/bin/sh\necho \"$@\" >> {calls}\nif grep -qx \"$4\" {hold}; then\n  \
                 while [ ! -e {release} ]; do sleep 0.1; done\nfi\n",
                calls = hook.calls.display(),
                hold = hook.hold.display(),
                release = hook.release.display(),
            ),
        )
        .unwrap();
        std::fs::set_permissions(&hook.script, std::fs::Permissions::from_mode(0o755)).unwrap();
        hook
    }

    fn config(&self) -> String {
        format!(
            "\n[callbacks]\npre_promote = \"{}\"\ntimeout_s = 120\n",
            self.script.display()
        )
    }

    fn called_for(&self, member: &str) -> bool {
        std::fs::read_to_string(&self.calls)
            .unwrap_or_default()
            .lines()
            .any(|l| l.split_whitespace().nth(3) == Some(member))
    }
}

impl Drop for HoldingHook {
    /// Lets any hook still holding end (it outlives the agent that ran it).
    fn drop(&mut self) {
        let _ = std::fs::write(&self.release, "");
    }
}

/// Found by review (session 27): the leader L led with a failsafe list naming itself and S (O's
/// agent had left), L crashed, S took the key and died too before its own first step as the
/// leader could write its list. O, outside L's list, waited for good for a member of that list
/// to read the store: no new term could free it. Taking the key now rewrites the list, in the
/// same transaction, as one naming the new holder alone. Here S's promotion is held in its
/// `pre_promote` hook (its first step as the leader waits for it) while it is crashed; O, back,
/// must take over once S's lease ends, and nobody else may write.
#[test]
fn a_member_outside_the_list_takes_over_when_the_successor_dies_before_leading() {
    let _serial = serial();
    let rt = runtime();
    let mut c = DistCluster::prepare(&Options::default());
    let hook = HoldingHook::write(&c.root);
    for a in &c.agents {
        let text = std::fs::read_to_string(&a.config).unwrap() + &hook.config();
        std::fs::write(&a.config, text).unwrap();
    }
    c.launch();
    let leader = c.wait_converged(Duration::from_secs(60));
    c.wait_bootstrapped(Duration::from_secs(30));
    let li = c.index(&leader);
    let standbys: Vec<usize> = (0..c.agents.len()).filter(|i| *i != li).collect();
    let (si, oi) = (standbys[0], standbys[1]);
    let (successor, outsider) = (c.agents[si].name.clone(), c.agents[oi].name.clone());

    c.agents[oi].terminate(Duration::from_secs(30));
    let mut without_outsider = vec![leader.clone(), successor.clone()];
    without_outsider.sort();
    wait_until(
        &format!("{leader}'s failsafe list without {outsider}"),
        Duration::from_secs(20),
        || (failsafe_list(&rt, &c).map(|(_, members)| members)? == without_outsider).then_some(()),
    );
    std::fs::write(&hook.hold, format!("{successor}\n")).unwrap();
    c.agents[li].crash();
    wait_until(
        &format!("{successor} in its pre_promote hook, holding the key"),
        Duration::from_secs(30),
        || hook.called_for(&successor).then_some(()),
    );
    assert_eq!(
        failsafe_list(&rt, &c).map(|(_, members)| members),
        Some(vec![successor.clone()]),
        "taking the key did not rewrite the list as one naming {successor} alone"
    );
    c.agents[si].crash();
    let crashed_at = Instant::now();
    c.agents[oi].start();
    wait_until(
        &format!("{outsider} leading after {leader} and {successor} crashed"),
        Duration::from_secs(40),
        || (c.primaries() == [outsider.clone()]).then_some(()),
    );
    eprintln!(
        "{outsider} took over {:.1} s after {successor} crashed",
        crashed_at.elapsed().as_secs_f64()
    );
    let failovers = history_kinds(&c, "failover");
    assert_eq!(
        failovers.last().map(|e| e["to"].clone()),
        Some(Value::from(outsider.as_str())),
        "{:?}",
        c.history()
    );
    assert!(
        failovers.iter().all(|e| e["to"] != successor.as_str()),
        "{successor} recorded a promotion it never made: {:?}",
        c.history()
    );
}

/// The way out when the leader is killed and every member of its failsafe list is gone too:
/// nobody can end the wait of a member the list left out (no listed member will read the
/// store again, no new term can begin). `pgha failover --to O` says so at once and names the
/// flag; `pgha failover --to O --leader-down`, the operator knowing the leader is down,
/// withdraws the list (recorded in the history) and O is promoted.
#[test]
fn a_failover_with_leader_down_frees_a_member_the_lists_leader_left_out() {
    let _serial = serial();
    let rt = runtime();
    let mut c = DistCluster::start(&Options::default());
    let leader = c.wait_converged(Duration::from_secs(10));
    let li = c.index(&leader);
    let standbys: Vec<usize> = (0..c.agents.len()).filter(|i| *i != li).collect();
    let (si, oi) = (standbys[0], standbys[1]);
    let outsider = c.agents[oi].name.clone();
    c.agents[oi].terminate(Duration::from_secs(30));
    let mut without_outsider = vec![leader.clone(), c.agents[si].name.clone()];
    without_outsider.sort();
    wait_until(
        &format!("{leader}'s failsafe list without {outsider}"),
        Duration::from_secs(20),
        || (failsafe_list(&rt, &c).map(|(_, members)| members)? == without_outsider).then_some(()),
    );
    // the listed standby and the leader lost together (before the leader's next list)
    c.agents[si].crash();
    c.agents[li].crash();
    c.agents[oi].start();
    wait_until(
        &format!("{outsider} waiting, outside {leader}'s list"),
        Duration::from_secs(30),
        || {
            let log = c.agents[oi].log();
            log.contains(&format!("not in {leader}'s failsafe list"))
                .then_some(())
        },
    );
    // Longer than the switchover timeout (10 s): the way out comes after a long wait, and a
    // request read then is heeded (found by review: it was timed from the vacancy).
    std::thread::sleep(Duration::from_secs(11));
    let refused = c.cli_as(&outsider, &["failover", "--to", &outsider]);
    let said = String::from_utf8_lossy(&refused.stderr).to_string();
    assert!(
        !refused.status.success() && said.contains("add --leader-down"),
        "pgha failover --to {outsider} without --leader-down: {said}"
    );
    let out = c.cli_as(&outsider, &["failover", "--to", &outsider, "--leader-down"]);
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{printed}{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        c.logs(30)
    );
    assert!(
        printed.contains(&format!("{outsider} is the primary")),
        "{printed}"
    );
    assert_eq!(c.primaries(), vec![outsider.clone()]);
    let withdrawn = history_kinds(&c, "failsafe_list_withdrawn");
    assert_eq!(withdrawn.len(), 1, "{:?}", c.history());
    let promoted = history_kinds(&c, "manual_failover");
    assert_eq!(
        promoted.last().map(|e| e["to"].clone()),
        Some(Value::from(outsider.as_str()))
    );
    assert_eq!(
        (withdrawn[0]["from"].clone(), withdrawn[0]["to"].clone()),
        (Value::from(leader.as_str()), Value::from(outsider.as_str()))
    );
    assert_eq!(
        failsafe_list(&rt, &c).map(|(_, members)| members),
        Some(vec![outsider.clone()])
    );
}
