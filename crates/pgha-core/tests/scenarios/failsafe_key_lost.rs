//! A leader kept by failsafe confirmations whose key the store no longer holds once it answers.

use super::*;

/// n1, the established leader of term 7, kept by its members' failsafe confirmation (asked at
/// 6 s, for the default ttl) while the store does not answer.
fn confirmed_through_an_outage() -> Member {
    let (mut n1, _view) = established_leader();
    let d = n1.step(&confirmed_at(store_down(6_100, primary(1, 1200)), 6_000));
    assert!(matches!(d.reason, Reason::StoreDownLeaseTrusted { .. }));
    n1
}

/// `observation` with the members' failsafe confirmation of a round asked at `asked_ms`.
fn confirmed_at(mut observation: Observation, asked_ms: u64) -> Observation {
    observation.outcomes = vec![Outcome::FailsafeConfirmed {
        requested_at: Millis(asked_ms),
        promised_ms: ClusterConfig::default().ttl_ms,
    }];
    observation
}

/// Found by the distributed campaign's `etcd-disk` fault: etcd, its disk frozen past the ttl,
/// revoked the leader's lease as it thawed. The leader, writing on its members' failsafe
/// confirmations, found no key and demoted at once; the members that had confirmed it then
/// waited out their promises (a ttl, 9.75 s) before one of them took the lease, 9.9 s without
/// writes, though nothing relied on those promises any more. Once PostgreSQL is no longer
/// writable, the leader gives back the promises of the term it lost, as it does when it lets
/// the key go itself.
#[test]
fn a_leader_that_lost_its_key_gives_back_its_promises_once_demoted() {
    let mut n1 = confirmed_through_an_outage();
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

/// Found by `distributed::failsafe_return::a_leader_whose_key_etcd_revoked_as_it_came_back_gives_its_promises_back_once_demoted`
/// (1 run in 2): as etcd came back, the renewal sent during the outage was refused (its lease
/// revoked) before the step that read the store without the key. The refusal dropped the
/// lease without noting the term it lost, the step found no lease to lose, and the promises
/// were never given back: the better candidate waited its promise out (6.5 s).
#[test]
fn a_leader_whose_renewal_is_refused_as_the_store_comes_back_still_gives_back_its_promises() {
    let mut n1 = confirmed_through_an_outage();
    // The store answers again: the renewal sent meanwhile refused, and no leader key.
    let revoked = View::new().with("n1", record(&primary(1, 1300), Some("n1")));
    let returns = |d: &Decision| has(d, |a| *a == Action::ReturnPromises { term: 7 });
    let d = n1.step(&obs(
        9_000,
        primary(1, 1300),
        &revoked,
        vec![Outcome::LeaderRefused],
    ));
    assert_eq!(d.reason, Reason::LeaderKeyLost);
    assert!(!returns(&d), "given back while still writable: {d:?}");
    let d = n1.step(&obs(
        9_200,
        standby(1, 1300, None),
        &revoked,
        vec![job_done(JobKind::Demote)],
    ));
    assert!(returns(&d), "the refused term's promises kept: {d:?}");
}

/// A leader whose failsafe trust ran out while the store stayed away (the members stopped
/// confirming it) demotes; its members' promises run a margin longer than that trust. Once
/// PostgreSQL no longer writes they go back, whether the store, seen again, still shows the
/// lapsed term's key (released as read) or no key (etcd revoked it), as they do when the key
/// is let go unseen. Before, only the unseen release gave them back.
#[test]
fn a_lapsed_terms_promises_go_back_once_demoted_whatever_the_store_shows_then() {
    for key_kept in [true, false] {
        let (_, view) = established_leader();
        let mut n1 = confirmed_through_an_outage();
        let d = n1.step(&store_down(14_000, primary(1, 1300)));
        assert_eq!(
            d.reason,
            Reason::LeaseExpiredDemoting,
            "key kept: {key_kept}"
        );
        let returns = |d: &Decision| has(d, |a| *a == Action::ReturnPromises { term: 7 });
        assert!(!returns(&d), "given back while still writable: {d:?}");
        let seen = if key_kept {
            view.clone()
        } else {
            View::new().with("n1", record(&primary(1, 1300), Some("n1")))
        };
        let d = n1.step(&obs(
            14_300,
            standby(1, 1300, None),
            &seen,
            vec![job_done(JobKind::Demote)],
        ));
        assert!(
            returns(&d),
            "key kept: {key_kept}: the lapsed term's promises kept: {d:?}"
        );
        let d = n1.step(&obs(14_800, standby(1, 1300, None), &seen, vec![]));
        assert!(!returns(&d), "given back twice: {d:?}");
    }
}

/// Found by review: a winner whose promotion stalled (`pg_ctl promote` gave up with
/// PostgreSQL still in recovery, so it may yet complete) while the store was away and its
/// members confirmed it, then found its key gone as the store came back. Not writable, no job
/// in flight, it gave its promises back at once, and the next leader could lead while the
/// promotion completed here (holding the key, it stops PostgreSQL before it lets go). It now
/// stops that PostgreSQL first and gives the promises back once it is stopped.
#[test]
fn a_winner_whose_promotion_stalled_stops_postgresql_before_it_gives_back_its_promises() {
    let (mut n2, a, _) = winner_promoting();
    n2.step(&confirmed_at(store_down(1_100, a.clone()), 1_000));
    // The store answers again without the key; the promotion gave up meanwhile.
    let stalled = Outcome::Job {
        kind: JobKind::Promote,
        result: Err(JobFailure::Failed(
            "pg_ctl promote failed: server did not promote in time".into(),
        )),
    };
    let revoked = View::new().with("n2", record(&a, Some("n2")));
    let returns = |d: &Decision| has(d, |x| *x == Action::ReturnPromises { term: 11 });
    let d = n2.step(&obs(8_000, a.clone(), &revoked, vec![stalled]));
    assert!(
        !returns(&d),
        "given back while the promotion may still complete: {d:?}"
    );
    assert!(has(&d, |x| matches!(x, Action::Demote { .. })), "{d:?}");
    // Stopped and started again as a standby: nothing can complete that promotion now.
    let d = n2.step(&obs(8_500, a, &revoked, vec![job_done(JobKind::Demote)]));
    assert!(returns(&d), "the promises kept: {d:?}");
}
