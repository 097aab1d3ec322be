//! Failsafe mode: a leader kept by its members' confirmations while the store is down.

use super::*;

#[test]
fn failsafe_confirmation_keeps_the_leader_while_the_store_is_down() {
    let (mut n1, _view) = established_leader();
    // Trusted until 7500 from the acquisition at 0; everyone confirmed it at 6000.
    let confirmed = Outcome::FailsafeConfirmed {
        requested_at: Millis(6000),
        promised_ms: ClusterConfig::default().ttl_ms,
    };
    let mut down = store_down(6100, primary(1, 1200));
    down.outcomes = vec![confirmed];
    let d = n1.step(&down);
    assert_eq!(
        d.reason,
        Reason::StoreDownLeaseTrusted { remaining_ms: 7400 }
    );
    // Past the original deadline, still trusted thanks to the confirmation.
    let d = n1.step(&store_down(9000, primary(1, 1300)));
    assert!(matches!(d.reason, Reason::StoreDownLeaseTrusted { .. }));
    assert!(n1.holds_lease(Millis(9000)));
    // Without a further confirmation it demotes at 6000 + ttl - margin.
    let d = n1.step(&store_down(13_500, primary(1, 1400)));
    assert_eq!(d.reason, Reason::LeaseExpiredDemoting);
}

#[test]
fn a_member_that_confirmed_the_old_leader_does_not_take_the_lease() {
    let (a, b) = (standby(1, 5000, None), standby(1, 4000, None));
    let view = leaderless(&a, &b, None);
    let mut o = obs(1000, a.clone(), &view, vec![]);
    o.failsafe_promised_until = Some(Millis(4000));
    let d = member("n2").step(&o);
    assert_eq!(d.reason, Reason::FailsafePromise { remaining_ms: 3000 });
    assert!(!acquires(&d));
    assert!(d.wake_at <= Millis(4000));
}

/// Issue 9, item 3: the leader publishes whom it would ask in a store outage.
#[test]
fn the_leader_publishes_its_failsafe_list() {
    let (mut n1, view) = established_leader();
    let view = view.with("n2", record(&standby(1, 900, Some("n1")), Some("n1")));
    let d = n1.step(&obs(1000, primary(1, 1000), &view, vec![]));
    assert!(
        has(&d, |a| *a
            == Action::PublishFailsafe {
                list: failsafe_list("n1", &["n1", "n2"]),
                leader_revision: 7,
                key_revision: 0,
            }),
        "{:?}",
        d.actions
    );
    let mut listed = view.clone();
    listed.0.failsafe = Some(failsafe_list("n1", &["n1", "n2"]));
    listed.0.failsafe_revision = 3; // written since it was sent
    let d = n1.step(&obs(2000, primary(1, 1000), &listed, vec![]));
    assert!(!has(&d, |a| matches!(a, Action::PublishFailsafe { .. })));
}

/// Issue 9, item 3: a member the old leader did not list (it was stopped, or is new) does not
/// run for leader while the listed members could still be confirming the old leader over REST;
/// it runs once one of them has been reading the store for a ttl (so refusing confirmations).
#[test]
fn a_member_outside_the_failsafe_list_waits_until_no_confirmation_can_be_in_force() {
    let (a, b) = (standby(1, 5000, None), standby(1, 4000, None));
    let ttl = ClusterConfig::default().ttl_ms;
    // n1 led with n1 and n3 listed; n3 is cut off with n1 (not in the store), n2 was absent.
    let mut view = View::new().with("n2", record(&a, None));
    view.0.failsafe = Some(failsafe_list("n1", &["n1", "n3"]));
    let mut n2 = member("n2");
    for now in [0, ttl, 3 * ttl] {
        let d = n2.step(&obs(now, a.clone(), &view, vec![]));
        assert_eq!(d.reason, Reason::OutsideFailsafeList { leader: name("n1") });
        assert!(!acquires(&d));
    }
    // n3 reaches the store again: after a ttl no promise of n3 can keep n1 writing.
    let with_n3 = view.clone().with("n3", record(&b, None));
    let start = 3 * ttl + 1000;
    let d = n2.step(&obs(start, a.clone(), &with_n3, vec![]));
    assert_eq!(d.reason, Reason::OutsideFailsafeList { leader: name("n1") });
    // Watched continuously (a step every loop), for a ttl.
    for now in (start + 1_000..start + ttl).step_by(1_000) {
        let d = n2.step(&obs(now, a.clone(), &with_n3, vec![]));
        assert_eq!(d.reason, Reason::OutsideFailsafeList { leader: name("n1") });
    }
    let d = n2.step(&obs(start + ttl, a.clone(), &with_n3, vec![]));
    assert!(acquires(&d), "{:?}", d.reason);
    // A list naming only its leader cannot hold anyone back (nobody could confirm it).
    let mut alone = View::new().with("n2", record(&a, None));
    alone.0.failsafe = Some(failsafe_list("n1", &["n1"]));
    let d = member("n2").step(&obs(0, a, &alone, vec![]));
    assert!(acquires(&d));
}

/// Found by the simulation (seed 944: ttl lowered live, then the store gone for everyone):
/// the confirming members promise for the ttl they saw, which may be shorter than the one this
/// leader still knows; it trusts the shortest promise, not its own ttl.
#[test]
fn failsafe_trust_ends_with_the_shortest_promise() {
    let (mut n1, _view) = established_leader();
    let confirmed = Outcome::FailsafeConfirmed {
        requested_at: Millis(6000),
        promised_ms: 6_000,
    };
    let mut down = store_down(6100, primary(1, 1200));
    down.outcomes = vec![confirmed];
    n1.step(&down);
    // The default margin (2.5 s) off the 6 s promise, not off the 10 s ttl.
    assert_eq!(n1.lease_deadline(), Some(Millis(6000 + 6_000 - 2_500)));
    assert!(n1.fence_deadline().unwrap() < Millis(6000 + 6_000));
}

/// Found by the simulation (seed 17054): a leader kept by failsafe promises renews the store's
/// lease in the very step it reads the store again, not up to half a loop later, while its
/// lease may be about to expire there.
#[test]
fn a_leader_back_from_a_store_outage_renews_at_once() {
    let (mut n1, view) = established_leader();
    let d = n1.step(&store_down(1_000, primary(1, 1100)));
    assert!(has(&d, |a| matches!(a, Action::RenewLeader { .. })));
    let d = n1.step(&obs(1_050, primary(1, 1100), &view, vec![]));
    assert!(
        has(&d, |a| matches!(a, Action::RenewLeader { revision: 7, .. })),
        "{:?}",
        d.actions
    );
}

/// Found by the simulation (seed 29247): a member outside the failsafe list counts how long a
/// listed member has been visible only over time it watched the store itself; time cut off
/// from the store does not count, or it could run while the old leader writes on promises.
#[test]
fn outside_the_failsafe_list_visibility_counts_only_while_watching() {
    let a = standby(1, 5000, None);
    let mut view = View::new()
        .with("n2", record(&a, None))
        .with("n3", record(&standby(1, 4000, None), None));
    view.0.failsafe = Some(failsafe_list("n1", &["n1", "n3"]));
    let ttl = ClusterConfig::default().ttl_ms;
    let mut n2 = member("n2");
    n2.step(&obs(0, a.clone(), &view, vec![]));
    // Cut off from the store for two ttls (n3 may have confirmed n1 meanwhile).
    for now in (1_000..2 * ttl).step_by(1_000) {
        n2.step(&store_down(now, a.clone()));
    }
    let d = n2.step(&obs(2 * ttl, a.clone(), &view, vec![]));
    assert_eq!(d.reason, Reason::OutsideFailsafeList { leader: name("n1") });
    let d = n2.step(&obs(2 * ttl + 1_000, a, &view, vec![]));
    assert_eq!(d.reason, Reason::OutsideFailsafeList { leader: name("n1") });
}

/// Found by review (2026-12-03): a leader that has just written a failsafe list naming a member
/// back in the cluster (n3) asked, once cut off from the store, only the members of the list it
/// had last read (n2): n2, cut off as well, confirmed it and it kept writing, while n3, on the
/// store's side and named by the list there, ran for leader without waiting once the lease
/// lapsed. The leader asks every member of the lists it sent in its term since its list was
/// last seen, too.
#[test]
fn a_leader_asks_the_members_of_the_failsafe_list_it_sent_not_only_of_the_one_it_read() {
    let (mut n1, view) = established_leader();
    let mut view = view
        .with("n2", record(&standby(1, 900, Some("n1")), Some("n1")))
        .with("n3", record(&standby(1, 900, Some("n1")), Some("n1")));
    view.0.failsafe = Some(failsafe_list("n1", &["n1", "n2"]));
    let d = n1.step(&obs(1000, primary(1, 1000), &view, vec![]));
    assert!(has(&d, |a| *a
        == Action::PublishFailsafe {
            list: failsafe_list("n1", &["n1", "n2", "n3"]),
            leader_revision: 7,
            key_revision: 0,
        }));
    // The store's list is from before this term (revision 0, the term 7): no list of this
    // term read yet, no confirmation counts (found by review, 2026-12-04: a member outside
    // the store's list, an earlier leader's, goes by that list while this leader would count
    // confirmations of a list that never landed).
    assert_eq!(n1.failsafe_confirmers(&view.0), None);
    // Once a read shows the list written since, that list alone counts.
    let mut shown = view.clone();
    shown.0.failsafe = Some(failsafe_list("n1", &["n1", "n2", "n3"]));
    shown.0.failsafe_revision = 10;
    let d = n1.step(&obs(1500, primary(1, 1000), &shown, vec![]));
    assert!(
        !has(&d, |a| matches!(a, Action::PublishFailsafe { .. })),
        "{d:?}"
    );
    // n3 leaves, and the list without it lands: that list alone counts.
    let mut gone = shown.clone();
    gone.0.members.remove(&name("n3"));
    n1.step(&obs(2000, primary(1, 1000), &gone, vec![]));
    gone.0.failsafe = Some(failsafe_list("n1", &["n1", "n2"]));
    gone.0.failsafe_revision = 12;
    n1.step(&obs(2500, primary(1, 1000), &gone, vec![]));
    assert_eq!(n1.failsafe_confirmers(&gone.0), Some([name("n2")].into()));
    // n3 back: the list naming it is sent, and its answer lost; n3 gone again before a read
    // shows it, the wanted list equals the read once more, but the lost write may still land:
    // n3 is asked, and the list is sent again, until a read shows the last one written since
    // (found by review of the fix: what was sent was forgotten as soon as the read matched).
    let mut back = gone.clone();
    back.0
        .members
        .insert(name("n3"), record(&standby(1, 900, Some("n1")), Some("n1")));
    n1.step(&obs(3500, primary(1, 1000), &back, vec![]));
    let d = n1.step(&obs(4000, primary(1, 1000), &gone, vec![]));
    assert!(
        has(&d, |a| matches!(a, Action::PublishFailsafe { .. })),
        "sent again until a read shows it: {d:?}"
    );
    assert_eq!(
        n1.failsafe_confirmers(&gone.0),
        Some([name("n2"), name("n3")].into())
    );
    let mut landed = gone.clone();
    landed.0.failsafe_revision = 13;
    n1.step(&obs(4500, primary(1, 1000), &landed, vec![]));
    assert_eq!(n1.failsafe_confirmers(&landed.0), Some([name("n2")].into()));
    // Without a lease there is nobody to ask.
    assert_eq!(member("n1").failsafe_confirmers(&view.0), None);
}

/// Found by review (2026-12-03): a leader's agent restarted within the ttl adopted its term
/// knowing nothing of the lists its former process sent. One naming n4 (whose record expired
/// since) could still land; the store showing the list it wanted, it sent nothing, and cut off
/// from the store it asked n2 and n3 only, while n4, named by the late list on the store's
/// side, ran for leader without waiting. Until a read shows the key moved, an adopted leader
/// has no list to go by (no failsafe: it demotes on its own clock), and it sends its list so
/// that the key does move.
#[test]
fn an_adopted_leader_has_no_failsafe_list_until_the_key_moves() {
    let mut view = View::led_by("n1", 7, &primary(1, 1000))
        .with("n2", record(&standby(1, 900, Some("n1")), Some("n1")))
        .with("n3", record(&standby(1, 900, Some("n1")), Some("n1")));
    view.0.failsafe = Some(failsafe_list("n1", &["n1", "n2", "n3"]));
    view.0.failsafe_revision = 10;
    let mut n1 = member("n1");
    let d = n1.step(&obs(1000, primary(1, 1000), &view, vec![]));
    assert_eq!(d.reason, Reason::AdoptingLease { new_cluster: false });
    let d = n1.step(&obs(1100, primary(1, 1000), &view, vec![renewed(1000)]));
    assert!(
        has(&d, |a| matches!(
            a,
            Action::PublishFailsafe {
                key_revision: 10,
                ..
            }
        )),
        "the list is sent so that the key moves: {d:?}"
    );
    assert_eq!(n1.failsafe_confirmers(&view.0), None);
    let d = n1.step(&obs(2000, primary(1, 1000), &view, vec![]));
    assert!(has(&d, |a| matches!(a, Action::PublishFailsafe { .. })));
    assert_eq!(n1.failsafe_confirmers(&view.0), None);
    // A read shows the key moved: nothing sent on revision 10 can land any more.
    view.0.failsafe_revision = 11;
    let d = n1.step(&obs(2500, primary(1, 1000), &view, vec![]));
    assert!(!has(&d, |a| matches!(a, Action::PublishFailsafe { .. })));
    assert_eq!(
        n1.failsafe_confirmers(&view.0),
        Some([name("n2"), name("n3")].into())
    );
}

/// Found by review (2026-12-04): a leader kept by failsafe confirmations reads the store again
/// and publishes a list naming a member it never asked (n4, new), while the renewal of that
/// step is lost. n4, listed, may run for leader once the store expires the key (the last
/// renewal it got + ttl) without waiting for anybody's promise, while the confirmations kept
/// the leader trusting seconds longer. Such a list waits until a renewal is answered (n4,
/// unlisted meanwhile, waits for a listed member to read the store for a ttl); confirmations
/// asked for before it went out count for nothing.
#[test]
fn a_list_naming_a_member_nobody_asked_waits_for_the_stores_lease() {
    let (mut n1, view) = established_leader();
    let ttl = ClusterConfig::default().ttl_ms;
    let confirmed = |at: u64| Outcome::FailsafeConfirmed {
        requested_at: Millis(at),
        promised_ms: ttl,
    };
    // The store's lease from the acquisition at 0 ends by 10 s; everyone confirmed n1 at 6 s.
    let mut down = store_down(6_100, primary(1, 1200));
    down.outcomes = vec![confirmed(6_000)];
    n1.step(&down);
    assert_eq!(n1.lease_deadline(), Some(Millis(13_500)));
    // At 7 s the store answers again, showing n4: a renewal goes out, the list naming n4 not.
    let with_n4 = view.with("n4", record(&standby(1, 900, Some("n1")), Some("n1")));
    let d = n1.step(&obs(7_000, primary(1, 1300), &with_n4, vec![]));
    assert!(has(&d, |a| matches!(a, Action::RenewLeader { .. })));
    assert!(
        !has(&d, |a| matches!(a, Action::PublishFailsafe { .. })),
        "{:?}",
        d.actions
    );
    assert_eq!(n1.lease_deadline(), Some(Millis(13_500)), "promises hold");
    // The renewal answered: the lease rests on the store again, and the list goes out.
    let renewed = Outcome::LeaderRenewed {
        requested_at: Millis(7_000),
        revision: 7,
        ttl: ClusterConfig::default().ttl(),
    };
    let d = n1.step(&obs(7_100, primary(1, 1300), &with_n4, vec![renewed]));
    assert!(
        has(
            &d,
            |a| matches!(a, Action::PublishFailsafe { list, .. } if list.members.contains(&name("n4")))
        ),
        "{:?}",
        d.actions
    );
    assert_eq!(n1.lease_deadline(), Some(Millis(14_500)));
    // The store gone again: a confirmation from a round asked for before the list went out
    // (it did not ask n4) counts for nothing; one asked for after it (n4 among those asked)
    // counts.
    let mut down = store_down(7_200, primary(1, 1400));
    down.outcomes = vec![confirmed(7_050)];
    n1.step(&down);
    assert_eq!(n1.lease_deadline(), Some(Millis(14_500)));
    assert_eq!(
        n1.failsafe_uncounted(),
        Some((
            Millis(7_050),
            FailsafeUncounted::ListSentSince {
                sent_at: Millis(7_100)
            }
        ))
    );
    let mut down = store_down(7_300, primary(1, 1400));
    down.outcomes = vec![confirmed(7_150)];
    n1.step(&down);
    assert_eq!(n1.lease_deadline(), Some(Millis(7_150 + ttl - 2_500)));
    assert_eq!(n1.failsafe_uncounted(), None);
}

/// A confirmation that extends nothing says why, for the agent's log: the lease trusted from a
/// later renewal already, or no lease held any more.
#[test]
fn a_confirmation_that_counts_for_nothing_says_why() {
    let (mut n1, view) = established_leader();
    let confirmed = |at: u64| Outcome::FailsafeConfirmed {
        requested_at: Millis(at),
        promised_ms: ClusterConfig::default().ttl_ms,
    };
    // Renewed from 6.2 s (answered), then a round asked at 6 s confirms: 6.2 s vouches for more.
    n1.step(&obs(6_300, primary(1, 1200), &view, vec![renewed(6_200)]));
    let mut down = store_down(6_400, primary(1, 1200));
    down.outcomes = vec![confirmed(6_000)];
    n1.step(&down);
    assert_eq!(n1.lease_deadline(), Some(Millis(6_200 + 10_000 - 2_500)));
    assert_eq!(
        n1.failsafe_uncounted(),
        Some((
            Millis(6_000),
            FailsafeUncounted::TrustedSince {
                renewed_at: Millis(6_200)
            }
        ))
    );
    // The lease refused meanwhile: nothing to extend.
    let mut down = store_down(6_500, primary(1, 1200));
    down.outcomes = vec![Outcome::LeaderRefused, confirmed(6_450)];
    n1.step(&down);
    assert_eq!(n1.lease_deadline(), None);
    assert_eq!(
        n1.failsafe_uncounted(),
        Some((Millis(6_450), FailsafeUncounted::NoLease))
    );
    // The next step says nothing of it again.
    n1.step(&store_down(6_600, primary(1, 1200)));
    assert_eq!(n1.failsafe_uncounted(), None);
}

/// Found by review (2026-12-04) of the first form of the rule above, which cut the trust the
/// promises gave at every list sent: a list still on its way from before an outage (its
/// answer lost) is sent again when the store answers a read; every member it names was asked
/// and promised, so the leader keeps its trust (the cut had fenced it at once).
#[test]
fn a_list_sent_again_naming_only_members_asked_keeps_the_trust_of_their_promises() {
    let (mut n1, view) = established_leader();
    let ttl = ClusterConfig::default().ttl_ms;
    let mut listed = view.with("n2", record(&standby(1, 900, Some("n1")), Some("n1")));
    listed.0.failsafe = Some(failsafe_list("n1", &["n1", "n2"]));
    listed.0.failsafe_revision = 10;
    n1.step(&obs(100, primary(1, 1000), &listed, vec![]));
    // n3 joins: the list naming it goes out, and its answer never comes.
    let with_n3 = listed.with("n3", record(&standby(1, 900, Some("n1")), Some("n1")));
    let d = n1.step(&obs(200, primary(1, 1000), &with_n3, vec![]));
    assert!(has(&d, |a| matches!(a, Action::PublishFailsafe { .. })));
    assert_eq!(
        n1.failsafe_confirmers(&with_n3.0),
        Some([name("n2"), name("n3")].into())
    );
    // The store goes away; n2 and n3 confirmed n1 at 8 s.
    let mut down = store_down(8_100, primary(1, 1200));
    down.outcomes = vec![Outcome::FailsafeConfirmed {
        requested_at: Millis(8_000),
        promised_ms: ttl,
    }];
    n1.step(&down);
    assert_eq!(n1.lease_deadline(), Some(Millis(15_500)));
    // At 9 s a read is answered: the key has not moved, the list goes out again.
    let d = n1.step(&obs(9_000, primary(1, 1300), &with_n3, vec![]));
    assert!(
        has(&d, |a| matches!(a, Action::PublishFailsafe { .. })),
        "{:?}",
        d.actions
    );
    assert_eq!(n1.lease_deadline(), Some(Millis(15_500)));
    assert!(n1.holds_lease(Millis(9_000)));
}

/// Found by the simulation (seed 71492): n3, listed by n1 and cut off from the store with it,
/// promised n1 for the ttl it knew (10 s); the ttl was lowered to 6 s meanwhile; n3 read the
/// store again, and n2, outside the list, ran once n3 had been visible for the new ttl, while
/// n1 still wrote on n3's promise. A member outside the list waits for the promises a listed
/// member's record says still run (counted from when it read that record), whatever its own
/// ttl; with none running, it need not wait at all.
#[test]
fn a_member_outside_the_failsafe_list_waits_out_the_promises_a_listed_record_names() {
    let a = standby(1, 5000, None);
    let promised = |left: u64| MemberRecord {
        failsafe_promise_ms: Some(left),
        ..record(&standby(1, 4000, None), None)
    };
    let lowered = |n3: MemberRecord| {
        let mut view = View::new().with("n2", record(&a, None)).with("n3", n3);
        view.0.failsafe = Some(failsafe_list("n1", &["n1", "n3"]));
        view.0.config.ttl_ms = 6_000;
        view.0.config.safety_margin_ms = 1_500;
        view
    };
    let mut n2 = member("n2");
    let d = n2.step(&obs(1_000, a.clone(), &lowered(promised(9_600)), vec![]));
    assert_eq!(d.reason, Reason::OutsideFailsafeList { leader: name("n1") });
    assert!(d.wake_at <= Millis(10_600), "{:?}", d.wake_at);
    // Past the new ttl, with the record published since saying less time left: the promise
    // still runs until 10.6 s.
    for now in [7_000, 9_000, 10_599] {
        let left = 10_600 - now;
        let d = n2.step(&obs(now, a.clone(), &lowered(promised(left)), vec![]));
        assert_eq!(d.reason, Reason::OutsideFailsafeList { leader: name("n1") });
    }
    let d = n2.step(&obs(10_600, a.clone(), &lowered(promised(0)), vec![]));
    assert!(acquires(&d), "{:?}", d.reason);
    // No promise running: nothing to wait for.
    let d = member("n2").step(&obs(0, a.clone(), &lowered(promised(0)), vec![]));
    assert!(acquires(&d), "{:?}", d.reason);
}

/// A listed member's key still in the store proves nothing while its record was read with
/// the old leader in place: its member may be cut off since (its key's lease, of the ttl it
/// knew, not run out yet) and confirming the old leader. A member outside the list waits for
/// a record read with no leader.
#[test]
fn a_listed_members_key_left_from_before_the_vacancy_frees_nobody() {
    let a = standby(1, 5000, None);
    let mut view = View::new()
        .with("n2", record(&a, None))
        .with("n3", record(&standby(1, 4000, Some("n1")), Some("n1")));
    view.0.failsafe = Some(failsafe_list("n1", &["n1", "n3"]));
    let ttl = ClusterConfig::default().ttl_ms;
    let mut n2 = member("n2");
    for now in (0..=2 * ttl).step_by(1_000) {
        let d = n2.step(&obs(now, a.clone(), &view, vec![]));
        assert_eq!(d.reason, Reason::OutsideFailsafeList { leader: name("n1") });
    }
}

/// Found by the simulation (seed 553383, in a run with lease files that fill up): n2's record
/// expired (cut off from the store), so the leader sent the list without it, naming nobody
/// but itself; then the leader lost the store before a read showed that list. It asked n2
/// (of the list it had read), n2 confirmed, and the leader wrote on; but the list that had
/// landed held nobody outside it back, and the third member was free to run once the lease
/// lapsed. While a list naming only its leader may be in the store, no confirmation counts.
#[test]
fn no_confirmation_counts_while_a_list_naming_only_its_leader_may_have_landed() {
    let (mut n1, view) = established_leader();
    let mut shown = view.with("n2", record(&standby(1, 900, Some("n1")), Some("n1")));
    shown.0.failsafe = Some(failsafe_list("n1", &["n1", "n2"]));
    shown.0.failsafe_revision = 10;
    n1.step(&obs(1000, primary(1, 1000), &shown, vec![]));
    assert_eq!(n1.failsafe_confirmers(&shown.0), Some([name("n2")].into()));
    let mut gone = shown.clone();
    gone.0.members.remove(&name("n2"));
    let d = n1.step(&obs(1500, primary(1, 1000), &gone, vec![]));
    assert!(
        has(&d, |a| matches!(a, Action::PublishFailsafe { list, .. }
            if *list == failsafe_list("n1", &["n1"]))),
        "{d:?}"
    );
    assert_eq!(n1.failsafe_confirmers(&gone.0), None);
    // Once a read shows a list naming n2 again (n2 back), its confirmations count again.
    let mut back = shown.clone();
    back.0.failsafe_revision = 14;
    n1.step(&obs(2500, primary(1, 1000), &back, vec![]));
    assert_eq!(n1.failsafe_confirmers(&back.0), Some([name("n2")].into()));
}
