//! A leader kept by failsafe confirmations whose key the store no longer holds once it answers.

use super::*;

/// Found by the distributed campaign's `etcd-disk` fault: etcd, its disk frozen past the ttl,
/// revoked the leader's lease as it thawed. The leader, writing on its members' failsafe
/// confirmations, found no key and demoted at once; the members that had confirmed it then
/// waited out their promises (a ttl, 9.75 s) before one of them took the lease, 9.9 s without
/// writes, though nothing relied on those promises any more. Once PostgreSQL is no longer
/// writable, the leader gives back the promises of the term it lost, as it does when it lets
/// the key go itself.
#[test]
fn a_leader_that_lost_its_key_gives_back_its_promises_once_demoted() {
    let (mut n1, _view) = established_leader();
    let mut down = store_down(6_100, primary(1, 1200));
    down.outcomes = vec![Outcome::FailsafeConfirmed {
        requested_at: Millis(6_000),
        promised_ms: ClusterConfig::default().ttl_ms,
    }];
    let d = n1.step(&down);
    assert!(matches!(d.reason, Reason::StoreDownLeaseTrusted { .. }));
    // The store answers again, without the leader key: demoted at once.
    let revoked = View::new().with("n1", record(&primary(1, 1300), Some("n1")));
    let returns = |d: &Decision| has(d, |a| *a == Action::ReturnPromises { term: 7 });
    let d = n1.step(&obs(9_000, primary(1, 1300), &revoked, vec![]));
    assert_eq!(d.reason, Reason::LeaderKeyLost);
    assert!(has(&d, |a| matches!(a, Action::Demote { .. })));
    assert!(
        !returns(&d),
        "promises given back while still writable: {d:?}"
    );
    // Demoted: nothing writes on them now.
    let demoted = standby(1, 1300, None);
    let d = n1.step(&obs(
        9_200,
        demoted.clone(),
        &revoked,
        vec![job_done(JobKind::Demote)],
    ));
    assert!(returns(&d), "the lost term's promises kept: {d:?}");
    let d = n1.step(&obs(9_700, demoted, &revoked, vec![]));
    assert!(!returns(&d), "given back twice: {d:?}");
}
