//! The leader's lease: renewals, the trust they bring, ttl changes, stepping down once it lapses.

use super::*;

#[test]
fn leader_renews_then_demotes_before_the_lease_can_expire_when_the_store_is_down() {
    let (mut n1, view) = established_leader();
    let d = n1.step(&obs(1000, primary(1, 1100), &view, vec![]));
    assert!(has(&d, |a| matches!(
        a,
        Action::RenewLeader { revision: 7, .. }
    )));
    assert_eq!(d.reason, Reason::Leading { standbys: 0 });

    let d = n1.step(&store_down(2000, primary(1, 1200)));
    assert_eq!(
        d.reason,
        Reason::StoreDownLeaseTrusted { remaining_ms: 5500 }
    );
    assert!(d.wake_at <= Millis(7500), "must wake by ttl - margin");

    let d = n1.step(&store_down(7500, primary(1, 1300)));
    assert_eq!(d.reason, Reason::LeaseExpiredDemoting);
    // fast: nobody else may lead yet, and the standbys still connected receive every commit
    // acknowledged before the demotion (the supervisor kills at the fencing deadline)
    assert_eq!(
        d.actions,
        vec![Action::Demote {
            mode: StopMode::Fast,
            fencing: true
        }]
    );
    assert!(!n1.holds_lease(Millis(7500)));
}

/// The fencing deadline a confirmation answered between steps moves the supervisor's to
/// (`Member::fence_deadline_after`) is the one the next step arms when it renews, never later:
/// none once the trust has ended (that step lets the lease lapse), capped by the renewal that
/// step sends with the ttl last read (lowered live, a promise on the old one is longer).
#[test]
fn a_confirmation_between_steps_moves_the_fence_no_later_than_the_next_step_arms() {
    let (mut n1, _view) = established_leader();
    let down = store_down(1_000, primary(1, 1100));
    n1.step(&down);
    let confirmed = |at: u64| {
        vec![Outcome::FailsafeConfirmed {
            requested_at: Millis(at),
            promised_ms: 10_000,
        }]
    };
    let room = (Millis(0), Millis(250));
    let config = n1.config().clone();
    let moved = n1.fence_deadline_after(&confirmed(1_900), Millis(2_000), &config, room);
    let mut next = down.clone();
    next.now = Millis(2_000);
    next.outcomes = confirmed(1_900);
    let mut stepped = n1.clone();
    stepped.step(&next);
    assert_eq!(moved, stepped.fence_deadline_leaving(room.0, room.1));
    assert!(
        moved > n1.fence_deadline_leaving(room.0, room.1),
        "{moved:?}"
    );
    // The trust ended before the answer came: nothing moves.
    let late = n1.fence_deadline_after(&confirmed(1_900), Millis(11_500), &config, room);
    assert_eq!(late, None);
    // The ttl lowered to 4 s since (the promise was for 10 s): the next step's renewal caps
    // the lease at 2 s + 4 s, and so does the move.
    let lowered = ClusterConfig {
        ttl_ms: 4_000,
        safety_margin_ms: 1_000,
        ..config
    };
    let capped = n1.fence_deadline_after(&confirmed(1_900), Millis(2_000), &lowered, room);
    assert!(capped <= Some(Millis(6_000)), "{capped:?}");
    assert!(capped < moved, "{capped:?} {moved:?}");
}

/// A renewal answered after the step that sent it counts in what the member reports at once
/// (`/primary` between steps), exactly as the next step will count it; a refusal ends the
/// trust at once; nothing else in the answers changes it.
#[test]
fn a_renewal_answered_between_steps_shows_in_the_reported_deadline() {
    let (mut n1, view) = established_leader();
    n1.step(&obs(1000, primary(1, 1100), &view, vec![]));
    let before = n1.lease_deadline();
    assert_eq!(
        before,
        Some(Millis(7500)),
        "acquired at 0: ttl 10 s - margin 2.5 s"
    );
    let answers = vec![renewed(1000)];
    let reported = n1.lease_deadline_after(&answers, Millis(1000));
    assert_eq!(reported, Some(Millis(8500)));
    assert_eq!(
        n1.lease_deadline(),
        before,
        "the member itself is not changed"
    );
    assert_eq!(
        n1.lease_deadline_after(&[Outcome::LeaderRefused], Millis(1000)),
        None
    );
    assert_eq!(n1.lease_deadline_after(&[], Millis(1000)), before);
    assert_eq!(n1.lease_deadline_after(&[], Millis(7500)), None, "past it");
    n1.step(&obs(2000, primary(1, 1200), &view, answers));
    assert_eq!(
        n1.lease_deadline(),
        reported,
        "the next step counts it the same"
    );
}

#[test]
fn a_successful_renewal_extends_trust_from_its_send_time() {
    let (mut n1, view) = established_leader();
    let renewed = renewed(5000);
    n1.step(&obs(5100, primary(1, 1100), &view, vec![renewed]));
    let d = n1.step(&store_down(12_000, primary(1, 1200)));
    assert_eq!(
        d.reason,
        Reason::StoreDownLeaseTrusted { remaining_ms: 500 }
    );
}

/// Issue 9, item 2: `ttl_ms` raised live. The renewal asks the store for the new TTL and the
/// leader trusts what the store reports the lease runs with, never the configured value.
#[test]
fn a_raised_ttl_is_trusted_only_once_the_store_granted_it() {
    let (mut n1, view) = established_leader();
    let raised = view.ttl(30_000, 7_500);
    let d = n1.step(&obs(1000, primary(1, 1100), &raised, vec![]));
    assert!(
        has(&d, |a| matches!(
            a,
            Action::RenewLeader {
                revision: 7,
                ttl
            } if *ttl == Ttl::from_millis(30_000)
        )),
        "the renewal carries the new ttl: {:?}",
        d.actions
    );
    // The store has not re-granted yet (the renewal kept the old 10 s lease).
    let old = renewed_for(1000, 10_000);
    n1.step(&obs(1100, primary(1, 1100), &raised, vec![old]));
    assert_eq!(n1.lease_deadline(), Some(Millis(1000 + 10_000 - 7_500)));
    let d = n1.step(&store_down(3_500, primary(1, 1200)));
    assert_eq!(d.reason, Reason::LeaseExpiredDemoting);
    // Re-granted: now the new TTL counts.
    let (mut n1, view) = established_leader();
    let raised = view.ttl(30_000, 7_500);
    let new = renewed_for(1000, 30_000);
    n1.step(&obs(1100, primary(1, 1100), &raised, vec![new]));
    assert_eq!(n1.lease_deadline(), Some(Millis(1000 + 30_000 - 7_500)));
}

#[test]
fn another_member_holding_the_key_makes_a_writable_member_demote() {
    let mut n1 = member("n1");
    let view = View::new()
        .leader("n2", 9)
        .with("n2", record(&primary(2, 50), None));
    let d = n1.step(&obs(0, primary(1, 80), &view, vec![]));
    assert_eq!(d.reason, Reason::DemotingForLeader { leader: name("n2") });
    // another member may take writes already: what this one commits from now on is thrown
    // away anyway, so it stops at once (a lapsed lease of its own stops fast instead, see
    // `leader_renews_then_demotes_before_the_lease_can_expire_when_the_store_is_down`)
    assert!(has(&d, |a| *a
        == Action::Demote {
            mode: StopMode::Immediate,
            fencing: true
        }));
}

/// Found by the simulation (seed 728 with a live ttl change, a slow store and a paused
/// agent): a renewal with a shorter TTL can take effect in the store before its answer comes
/// back, so from the moment it is sent the leader trusts (and its supervisor fences) by the
/// shorter lease, and an older answer arriving late cannot lift that again.
#[test]
fn lowering_the_ttl_shortens_trust_as_soon_as_the_renewal_is_sent() {
    let (mut n1, view) = established_leader();
    assert_eq!(n1.lease_deadline(), Some(Millis(7_500)));
    let lowered = view.ttl(6_000, 1_500);
    let d = n1.step(&obs(1000, primary(1, 1100), &lowered, vec![]));
    assert!(has(&d, |a| matches!(
        a,
        Action::RenewLeader { ttl, .. } if *ttl == Ttl::from_millis(6_000)
    )));
    // The store may expire the lease at 1000 + 6000 = 7000 if it applied that renewal.
    assert!(n1.lease_deadline().unwrap() <= Millis(7_000 - 1_500));
    assert!(n1.fence_deadline().unwrap() < Millis(7_000));
    // An older renewal's answer (sent at 500, the old 10 s lease) arrives late.
    let late = renewed_for(500, 10_000);
    n1.step(&obs(1100, primary(1, 1100), &lowered, vec![late]));
    assert!(
        n1.fence_deadline().unwrap() < Millis(7_000),
        "{:?}",
        n1.fence_deadline()
    );
    // The shorter renewal's own answer restarts trust from its send time.
    let own = renewed_for(1000, 6_000);
    n1.step(&obs(1200, primary(1, 1100), &lowered, vec![own]));
    assert_eq!(n1.lease_deadline(), Some(Millis(1000 + 6_000 - 1_500)));
}

/// The established leader n1, its PostgreSQL found stopped (crashed) right after a renewal:
/// the step that starts it again as the primary, and what n1 observed.
fn leader_restarting_its_crashed_primary() -> (Member, View, LocalPg, Decision) {
    let (mut n1, view) = established_leader();
    let down = stopped(primary(1, 1000));
    let d = n1.step(&obs(1000, down.clone(), &view, vec![renewed(1000)]));
    (n1, view, down, d)
}

/// Found by the simulation (seed 3608): a leader restarting its crashed PostgreSQL as a
/// primary when its lease lapses counts the start in flight as writable. It demotes (which
/// cancels the start) and keeps the key until that is done, instead of releasing the key while
/// a primary may still come up writable with no lease (two writers once another promotes).
#[test]
fn a_primary_start_in_flight_when_the_lease_lapses_is_demoted_before_the_key_goes() {
    let (mut n1, view, down, d) = leader_restarting_its_crashed_primary();
    assert!(
        has(&d, |a| *a == Action::StartPostgres(StartRole::Primary)),
        "{:?}",
        d.actions
    );
    assert!(n1.job_may_make_writable());
    // No renewal is answered any more: the lease lapses on n1's clock while the start runs.
    let lapsed = n1.lease_deadline().unwrap().0;
    let d = n1.step(&obs(lapsed, down.clone(), &view, vec![]));
    assert!(
        has(&d, |a| *a
            == Action::Demote {
                mode: StopMode::Fast,
                fencing: true
            }),
        "{:?}: {:?}",
        d.reason,
        d.actions
    );
    let releases = |d: &Decision| has(d, |a| matches!(a, Action::ReleaseLeader { .. }));
    assert!(!releases(&d));
    let d = n1.step(&obs(lapsed + 100, down.clone(), &view, vec![]));
    assert!(!releases(&d), "released while demoting: {:?}", d.reason);
    // Once the demotion is done (PostgreSQL stopped, a standby from now on), the key goes.
    let demoted = job_done(JobKind::Demote);
    let standby_down = stopped(standby(1, 1000, None));
    let d = n1.step(&obs(lapsed + 200, standby_down, &view, vec![demoted]));
    assert!(releases(&d), "{:?}: {:?}", d.reason, d.actions);
}

/// The same lapse with the store unreachable, as
/// `faults::disk_stalls::primary_restart_in_flight_when_the_lease_lapses` injects it: while the
/// demotion runs, each step says that it runs, not that PostgreSQL was found writable without the
/// lease (it was not: it never came up).
#[test]
fn a_demotion_running_with_the_store_down_is_reported_as_running() {
    let (mut n1, _view, down, _) = leader_restarting_its_crashed_primary();
    let lapsed = n1.lease_deadline().unwrap().0;
    let d = n1.step(&store_down(lapsed, down.clone()));
    assert!(
        has(&d, |a| matches!(a, Action::Demote { .. })),
        "{:?}: {:?}",
        d.reason,
        d.actions
    );
    let d = n1.step(&store_down(lapsed + 500, down));
    assert!(
        matches!(&d.reason, Reason::JobRunning { job, for_ms: 500 } if job.kind() == JobKind::Demote),
        "{:?}",
        d.reason
    );
    assert!(d.actions.is_empty(), "{:?}", d.actions);
}

/// The store slow rather than cut, found by the distributed campaign (`etcd-slow`: the
/// leader's answers 1 s late each way): the leader stopped trusting its lease and demoted, but
/// the renewals it had sent landed late and kept the store's lease alive a ttl past the
/// demotion, so nobody led for 11 s. Once its PostgreSQL no longer writes it lets go of the key
/// of the lapsed term unseen (its promises given back first), once; not while the demotion
/// runs.
#[test]
fn a_lease_lapsed_while_the_store_is_down_is_released_unseen_once_postgresql_no_longer_writes() {
    let (mut n1, view) = established_leader();
    n1.step(&obs(1000, primary(1, 1100), &view, vec![]));
    let releases = |d: &Decision| has(d, |a| matches!(a, Action::ReleaseLeader { .. }));
    let d = n1.step(&store_down(7500, primary(1, 1300)));
    assert_eq!(d.reason, Reason::LeaseExpiredDemoting);
    assert!(!releases(&d), "PostgreSQL still writes: {:?}", d.actions);
    let d = n1.step(&store_down(8000, primary(1, 1300)));
    assert!(!releases(&d), "the demotion runs: {:?}", d.actions);
    let demoted = Observation::new(
        Millis(8600),
        standby(1, 1300, None),
        StoreView::Down {
            error: "timeout".into(),
        },
        vec![job_done(JobKind::Demote)],
    );
    let d = n1.step(&demoted);
    assert_eq!(d.reason, Reason::LapsedLeaseReleasedUnseen { term: 7 });
    gives_back_promises_then_releases(&d, 7);
    let d = n1.step(&store_down(9600, standby(1, 1300, None)));
    assert!(!releases(&d), "once: {:?}", d.actions);
    assert!(
        matches!(d.reason, Reason::StoreDown { .. }),
        "{:?}",
        d.reason
    );
}

/// The store back in sight before PostgreSQL stopped writing: the key is given up as read
/// (`LapsedLeaseReleased`), and a later outage releases nothing unseen.
#[test]
fn a_lapsed_term_seen_again_is_given_up_as_read_not_unseen() {
    let (mut n1, view) = established_leader();
    n1.step(&obs(1000, primary(1, 1100), &view, vec![]));
    let d = n1.step(&store_down(7500, primary(1, 1300)));
    assert_eq!(d.reason, Reason::LeaseExpiredDemoting);
    let standby = standby(1, 1300, None);
    let d = n1.step(&obs(
        8600,
        standby.clone(),
        &view,
        vec![job_done(JobKind::Demote)],
    ));
    assert_eq!(d.reason, Reason::LapsedLeaseReleased);
    assert!(has(&d, |a| *a == Action::ReleaseLeader { revision: 7 }));
    let d = n1.step(&store_down(9600, standby));
    assert!(
        !has(&d, |a| matches!(a, Action::ReleaseLeader { .. })),
        "{:?}: {:?}",
        d.reason,
        d.actions
    );
}

/// Found by the simulation (seed 14064, slow store): a renewal sent before the answer to the
/// acquisition came back (adopting the key) caps the trust that answer brings.
#[test]
fn a_renewal_sent_before_the_acquisition_answer_caps_its_trust() {
    let mut n1 = member("n1");
    let view = View::led_by("n1", 7, &primary(1, 1000)).ttl(6_000, 1_500);
    // The key names n1, but no answer has come back yet: adopting, it renews (ttl 6 s).
    let d = n1.step(&obs(1_000, primary(1, 1000), &view, vec![]));
    assert!(has(&d, |a| matches!(
        a,
        Action::RenewLeader { ttl, .. } if *ttl == Ttl::from_millis(6_000)
    )));
    // Then the answer of an acquisition sent at 500 with the old 10 s ttl arrives.
    let acquired = Outcome::LeaderAcquired {
        requested_at: Millis(500),
        revision: 7,
        ttl: Ttl::from_millis(10_000),
    };
    n1.step(&obs(1_100, primary(1, 1000), &view, vec![acquired]));
    assert!(
        n1.fence_deadline().unwrap() < Millis(1_000 + 6_000),
        "{:?}",
        n1.fence_deadline()
    );
}

/// Found by `faults::postgres::leader_postgres_io_stall` (a stalled primary's agent could not renew
/// in time): a leader whose lease lapsed on its own clock demoted, its PostgreSQL came back as a
/// standby, and since the store had not yet expired the key, it adopted that very key again and
/// promoted the same data, bypassing the election (and, in synchronous modes, the rule that a
/// failed synchronous primary hands over). A term given up is never adopted again: the key is
/// released and the election decides.
#[test]
fn a_leader_never_adopts_again_the_term_its_lease_lapsed_in() {
    let (mut n1, view) = established_leader();
    // No renewal answered: past ttl - margin the lease is gone on n1's own clock.
    let d = n1.step(&obs(7600, primary(1, 1300), &view, vec![]));
    assert_eq!(d.reason, Reason::LeaseExpiredDemoting, "{d:?}");
    // The store still shows n1's key (it expires only at the ttl); the demotion is done and
    // PostgreSQL is a standby now.
    let demoted = job_done(JobKind::Demote);
    for (t, outcomes) in [(8000, vec![demoted]), (8500, vec![]), (9000, vec![])] {
        let d = n1.step(&obs(t, standby(1, 1300, None), &view, outcomes));
        assert!(
            !has(&d, |a| matches!(
                a,
                Action::RenewLeader { .. }
                    | Action::Promote { .. }
                    | Action::StartPostgres(StartRole::Primary)
            )),
            "n1 took its lapsed term back: {d:?}"
        );
        assert!(
            has(&d, |a| matches!(a, Action::ReleaseLeader { revision: 7 })),
            "the lapsed key is given up for an election: {d:?}"
        );
    }
    // A renewal answer arriving late for that term changes nothing.
    let late = renewed(7000);
    let d = n1.step(&obs(9100, standby(1, 1300, None), &view, vec![late]));
    assert!(
        !has(&d, |a| matches!(
            a,
            Action::Promote { .. } | Action::RenewLeader { .. }
        )),
        "a late renewal revived the lapsed term: {d:?}"
    );
}
