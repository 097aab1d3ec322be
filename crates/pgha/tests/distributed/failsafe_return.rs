//! A switchover right after a store outage: the leader, demoted, gives back the failsafe
//! promises the members gave it while etcd was away, and the target takes over without
//! waiting them out.

use super::*;

/// Found by the 2026-12-05 distributed campaign (fault #23): five seconds after an etcd
/// restart, a switchover waited 6.2 s more than it had to, because its target had confirmed
/// the leader during the outage and kept its promise not to take the lease for a ttl, though
/// the leader had demoted and handed over. Here etcd is paused for 2 s (ttl 12 s): every
/// member confirms the leader, then a switchover to a named standby is asked as soon as etcd
/// answers again. Before: it took the rest of the 12 s promise (about 9 s); now about a second,
/// and the target says the promises were given back.
#[test]
fn a_switchover_after_a_store_outage_does_not_wait_out_the_failsafe_promises() {
    let _serial = serial();
    let mut c = DistCluster::prepare(&Options::default());
    for a in &c.agents {
        let text = std::fs::read_to_string(&a.config)
            .unwrap()
            .replace("ttl_ms = 3000", "ttl_ms = 12000");
        std::fs::write(&a.config, text).unwrap();
    }
    c.launch();
    let leader = c.wait_converged(Duration::from_secs(60));
    c.wait_bootstrapped(Duration::from_secs(30));
    let li = c.index(&leader);
    let target = c
        .agents
        .iter()
        .find(|a| a.name != leader)
        .unwrap()
        .name
        .clone();
    let confirmed = |c: &DistCluster| {
        c.agents[li]
            .log()
            .matches("every member confirmed this leader")
            .count()
    };
    let before = confirmed(&c);

    c.etcd.pause();
    wait_until(
        "the members to confirm the leader",
        Duration::from_secs(10),
        || (confirmed(&c) > before).then_some(()),
    );
    std::thread::sleep(Duration::from_millis(500));
    c.etcd.resume();
    let asked = Instant::now();
    wait_until(
        "the switchover to be taken",
        Duration::from_secs(30),
        || {
            c.cli(&["switchover", "--to", &target])
                .status
                .success()
                .then_some(())
        },
    );
    wait_until("the target to lead", Duration::from_secs(30), || {
        (c.primaries() == [target.clone()]).then_some(())
    });
    let took = asked.elapsed();
    let target_log = c.agent(&target).log();
    assert!(
        took < Duration::from_secs(5),
        "the switchover took {took:?} after etcd came back (the promises last 12 s)\n{target_log}"
    );
    assert!(
        target_log.contains(&format!("failsafe: {leader} gave back")),
        "the target says the promises were given back:\n{target_log}"
    );
    assert!(
        !target_log.contains("not taking the lease for"),
        "the target waited for a promise:\n{target_log}"
    );
    c.wait_converged(Duration::from_secs(30));
}
