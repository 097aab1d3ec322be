//! Taking the leader key: an outsider of an ended term's failsafe list, what an acquisition
//! compares, and one whose answer was lost that lands after its election moved on.

use super::*;

/// Found by review (2026-12-04): n1, leading with the list {n1, n2}, was killed; n2 took over
/// and was stopped before its own list landed; n3, outside n1's list, waited for good. What
/// frees it is the store: taking the key replaces the list by one naming its new holder alone
/// (store contract `taking_the_leader_key_replaces_the_failsafe_list`). Not a term n3 remembers being newer
/// than the list: after etcd lost its data, revisions begin again below the terms members
/// remember, and a list written since may still hold a leader writing on its promises.
#[test]
fn a_remembered_later_term_does_not_free_a_member_outside_the_failsafe_list() {
    let a = standby(1, 5000, Some("n2"));
    let mut n3 = member("n3");
    // n3 saw term 5000 before etcd's data was lost.
    let before = View::new()
        .leader("n2", 5000)
        .with("n3", record(&a, Some("n2")));
    n3.step(&obs(0, a.clone(), &before, vec![]));
    // Since: n1 took the key at revision 20 and listed {n1, n2} at 25; both are cut off.
    let a = standby(1, 5000, None);
    let mut after = View::new().with("n3", record(&a, None));
    after.0.failsafe = Some(failsafe_list("n1", &["n1", "n2"]));
    after.0.failsafe_revision = 25;
    let d = n3.step(&obs(1_000, a.clone(), &after, vec![]));
    assert_eq!(d.reason, Reason::OutsideFailsafeList { leader: name("n1") });
    // With the list gone (deleted by hand, as operations.md says once n1 is known down; a new
    // term would have rewritten it naming its leader alone), nothing holds it back.
    after.0.failsafe = None;
    after.0.failsafe_revision = 0;
    let d = n3.step(&obs(2_000, a.clone(), &after, vec![]));
    assert!(acquires(&d), "{:?}", d.reason);
    // The acquisition lands only while the `failsafe` key is as read (found by review: one
    // whose answer was lost landed after a newer leader's list and deleted it).
    after.0.failsafe = Some(failsafe_list("n1", &["n1"]));
    after.0.failsafe_revision = 31;
    let d = member("n3").step(&obs(0, a, &after, vec![]));
    assert!(
        has(&d, |x| matches!(
            x,
            Action::AcquireLeader {
                failsafe_revision: 31,
                ..
            }
        )),
        "{:?}",
        d.actions
    );
}

/// Found by review (2026-12-04): an acquisition whose answer was lost stays planned as a
/// promotion; the key landing later was adopted and promoted on, although the member had
/// decided since not to run (here: the cluster paused; a better candidate back alike). A
/// step that does not run again withdraws it: a key landing from it is released.
#[test]
fn a_key_landing_from_a_withdrawn_acquisition_is_released_not_promoted_on() {
    let (a, b) = (standby(1, 5000, None), standby(1, 4000, None));
    let view = leaderless(&a, &b, None);
    let mut n2 = member("n2");
    let d = n2.step(&obs(0, a.clone(), &view, vec![]));
    assert!(acquires(&d), "{}", d.reason);
    // Its answer lost; the cluster is paused meanwhile: n2 does not run again.
    let paused = view.clone().config(|c| c.paused = true);
    let d = n2.step(&obs(500, a.clone(), &paused, vec![Outcome::LeaderUnknown]));
    assert!(!acquires(&d), "{}", d.reason);
    // The acquisition lands: the key names n2 in term 12.
    let landed = paused.clone().leader("n2", 12);
    let d = n2.step(&obs(1_000, a.clone(), &landed, vec![]));
    assert_eq!(d.reason, Reason::WithdrawnAcquisitionReleased);
    assert!(has(&d, |x| *x == Action::ReleaseLeader { revision: 12 }));
    // The release not seen yet (lost, or not visible): released again, said the same way
    // (not as a lease that lapsed in a term it led), and never promoted on.
    let d = n2.step(&obs(2_000, a.clone(), &landed, vec![]));
    assert_eq!(d.reason, Reason::WithdrawnAcquisitionReleased);
    assert!(has(&d, |x| *x == Action::ReleaseLeader { revision: 12 }));
    assert!(!has(&d, |x| matches!(x, Action::Promote { .. })));
    assert_eq!(n2.stepped_down(), None);

    // A better candidate back in the meantime withdraws it alike.
    let mut n2 = member("n2");
    n2.step(&obs(0, a.clone(), &view, vec![]));
    let ahead = view
        .clone()
        .with("n4", record(&standby(1, 6000, None), None));
    let d = n2.step(&obs(500, a.clone(), &ahead, vec![Outcome::LeaderUnknown]));
    assert!(!acquires(&d), "{}", d.reason);
    let d = n2.step(&obs(
        1_000,
        a.clone(),
        &ahead.clone().leader("n2", 12),
        vec![],
    ));
    assert_eq!(d.reason, Reason::WithdrawnAcquisitionReleased);

    // So does a step in which its PostgreSQL does not answer (judged once it answers again).
    let mut n2 = member("n2");
    n2.step(&obs(0, a.clone(), &view, vec![]));
    let mut silent = a.clone();
    silent.unresponsive = true;
    n2.step(&obs(500, silent, &view, vec![Outcome::LeaderUnknown]));
    let d = n2.step(&obs(
        1_000,
        a.clone(),
        &view.clone().leader("n2", 12),
        vec![],
    ));
    assert_eq!(d.reason, Reason::WithdrawnAcquisitionReleased);

    // A step that cannot read the store withdraws nothing: the key that lands is adopted.
    let mut n2 = member("n2");
    n2.step(&obs(0, a.clone(), &view, vec![]));
    let mut down = store_down(500, a.clone());
    down.outcomes = vec![Outcome::LeaderUnknown];
    n2.step(&down);
    let d = n2.step(&obs(
        1_000,
        a.clone(),
        &view.clone().leader("n2", 12),
        vec![],
    ));
    assert!(
        matches!(d.reason, Reason::AdoptingLease { .. }),
        "{}",
        d.reason
    );

    // Still running when it lands (its election stands): adopted as before.
    let mut n2 = member("n2");
    n2.step(&obs(0, a.clone(), &view, vec![]));
    let d = n2.step(&obs(500, a.clone(), &view, vec![Outcome::LeaderUnknown]));
    assert!(acquires(&d), "{}", d.reason);
    let d = n2.step(&obs(1_000, a, &view.leader("n2", 12), vec![]));
    assert!(
        matches!(d.reason, Reason::AdoptingLease { .. }),
        "{}",
        d.reason
    );
    assert!(has(&d, |x| matches!(
        x,
        Action::RenewLeader { revision: 12, .. }
    )));
}

/// Found by review: an agent restarted between its won election and its promotion adopts the
/// key under its name and promoted on it without looking at its tags, which the restart may
/// have changed (`nofailover` set by the operator meanwhile). Tagged nofailover, it releases
/// the key unpromoted; untagged, it promotes as before.
#[test]
fn a_key_adopted_on_a_standby_tagged_nofailover_is_released_unpromoted() {
    let a = standby(1, 5000, None);
    let view = View::new()
        .leader("n2", 7)
        .with("n2", record(&a, None))
        .with("n3", record(&standby(1, 4000, None), None));
    let tagged = Tags {
        nofailover: true,
        ..Tags::default()
    };
    let mut n2 = member_with("n2", tagged);
    let d = n2.step(&obs(0, a.clone(), &view, vec![]));
    assert!(
        matches!(d.reason, Reason::AdoptingLease { .. }),
        "{}",
        d.reason
    );
    let d = n2.step(&obs(100, a.clone(), &view, vec![renewed(0)]));
    assert_eq!(d.reason, Reason::AdoptedKeyReleasedNoFailover);
    assert!(has(&d, |x| *x == Action::ReleaseLeader { revision: 7 }));
    assert!(!has(&d, |x| matches!(x, Action::Promote { .. })));
    assert!(d.reason.to_string().contains("nofailover"));

    let mut n2 = member("n2");
    n2.step(&obs(0, a.clone(), &view, vec![]));
    let d = n2.step(&obs(100, a, &view, vec![renewed(0)]));
    assert!(
        has(&d, |x| matches!(x, Action::Promote { .. })),
        "{}",
        d.reason
    );
}
