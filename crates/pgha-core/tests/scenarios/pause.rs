//! Maintenance mode (`paused`): no automatic action, and fencing disarmed only safely.

use super::*;

#[test]
fn paused_cluster_takes_no_automatic_action() {
    let (a, b) = (standby(1, 5000, None), standby(1, 4000, None));
    let view = leaderless(&a, &b, None).config(|c| c.paused = true);
    let d = member("n2").step(&obs(0, a, &view, vec![]));
    assert_eq!(d.reason, Reason::PausedWithoutLeader);
    assert!(d
        .actions
        .iter()
        .all(|a| matches!(a, Action::PublishMember(_))));
}

/// Found by review (2026-12-03): maintenance mode disarms the leader's supervisor, so a leader
/// whose agent died while paused (the upgrade recipe's new binary failing to start) kept a
/// writable PostgreSQL with nothing to fence it; its lease lapsed, and `pgha resume` let
/// another member take over: two writers. The paused leader first publishes its position
/// marked unfenced, and its fencing is off only once the store shows that mark (in its term);
/// resumed, it publishes the mark cleared.
#[test]
fn a_paused_leader_disarms_its_fencing_only_once_the_store_marks_it_unfenced() {
    let (mut n1, view) = established_leader();
    let paused = view.clone().config(|c| c.paused = true);
    let marks = |d: &Decision, unfenced: bool| {
        has(d, |a| {
            matches!(a, Action::PublishPosition { position, leader_revision: 7, .. }
                if position.unfenced == unfenced && position.term == Some(7))
        })
    };
    let d = n1.step(&obs(1000, primary(1, 1000), &paused, vec![]));
    assert_eq!(d.reason, Reason::Paused);
    assert!(marks(&d, true), "{d:?}");
    assert!(
        !n1.pause_disarms_fencing(&paused.0),
        "fencing off before the store shows the mark"
    );
    let mut marked = paused.clone();
    marked.0.leader_position = Some(LeaderPosition {
        leader: name("n1"),
        timeline: Timeline(1),
        lsn: Lsn(1000),
        term: Some(7),
        unfenced: true,
    });
    let d = n1.step(&obs(2000, primary(1, 1000), &marked, vec![]));
    assert!(!marks(&d, true), "marked already: {d:?}");
    assert!(n1.pause_disarms_fencing(&marked.0));
    // A mark of an earlier term is not this one's.
    let mut earlier = marked.clone();
    earlier.0.leader_position.as_mut().unwrap().term = Some(6);
    assert!(!n1.pause_disarms_fencing(&earlier.0));
    // Resumed: fencing is armed again in this step (not a pause that disarms it any more),
    // and the mark cleared once the supervisor is seen holding a deadline.
    let resumed = marked.clone().config(|c| c.paused = false);
    let d = n1.step(&obs(2100, primary(1, 1000), &resumed, vec![]));
    assert!(
        !marks(&d, false),
        "cleared before the supervisor holds a deadline: {d:?}"
    );
    assert!(!n1.pause_disarms_fencing(&resumed.0));
    let armed = Observation {
        fence_armed_at: Some(Millis(9_000)),
        ..obs(2200, primary(1, 1000), &resumed, vec![])
    };
    let d = n1.step(&armed);
    assert!(marks(&d, false), "{d:?}");
}

/// Found by review (2026-12-07): resumed while the fencing file could not be written (the
/// file system holding it full), the leader cleared its unfenced mark in the step that tried
/// to arm its supervisor, and the write failed: the store said fenced, nothing was. Its agent
/// dying then, the members took over from a primary that lived on. The mark stays for as long
/// as the supervisor holds no deadline.
#[test]
fn a_leader_resumed_while_its_fence_cannot_be_written_stays_marked_unfenced() {
    let (mut n1, view) = established_leader();
    let mut resumed = view.clone();
    resumed.0.leader_position = Some(LeaderPosition {
        leader: name("n1"),
        timeline: Timeline(1),
        lsn: Lsn(1000),
        term: Some(7),
        unfenced: true,
    });
    for now in [1000, 2000, 3000, 4000] {
        let d = n1.step(&Observation {
            fence_stuck_at: None,
            fence_armed_at: None,
            ..obs(now, primary(1, 1000), &resumed, vec![])
        });
        assert!(
            !has(&d, |a| matches!(a, Action::PublishPosition { position, .. }
                if !position.unfenced)),
            "the mark cleared at {now} with nothing armed: {d:?}"
        );
    }
    // Another leader's mark is not this one's to keep: its own position says fenced.
    let mut other = view;
    other.0.leader_position = Some(LeaderPosition {
        leader: name("n2"),
        timeline: Timeline(1),
        lsn: Lsn(900),
        term: Some(6),
        unfenced: true,
    });
    let (mut n1, _) = established_leader();
    let d = n1.step(&obs(1000, primary(1, 1000), &other, vec![]));
    assert!(
        has(&d, |a| matches!(a, Action::PublishPosition { position, .. }
        if !position.unfenced)),
        "{d:?}"
    );
}

/// n2, which streamed from n1 (term 7) and saw it go.
fn follower_of_n1() -> Member {
    let mut n2 = member("n2");
    let led = View::led_by("n1", 7, &primary(1, 5000));
    n2.step(&obs(0, standby(1, 5000, Some("n1")), &led, vec![]));
    n2
}

/// The other side of the mark: resumed, with the leader key gone and the last leader's
/// position marked unfenced, nobody takes over while no record of that leader shows its
/// PostgreSQL not writable (its agent gone: its record expired; or its record still says
/// primary). Once its agent is back and has demoted it, the election goes on.
#[test]
fn nobody_takes_over_from_a_leader_that_lost_its_lease_unfenced() {
    let (a, b) = (standby(1, 5000, None), standby(1, 4000, None));
    let mut view = leaderless(&a, &b, None);
    view.0.leader_position = Some(LeaderPosition {
        leader: name("n1"),
        timeline: Timeline(1),
        lsn: Lsn(5000),
        term: Some(7),
        unfenced: true,
    });
    let d = follower_of_n1().step(&obs(100, a.clone(), &view, vec![]));
    assert_eq!(
        d.reason,
        Reason::FormerLeaderUnfenced { leader: name("n1") }
    );
    assert!(!acquires(&d));
    let still_primary = view.clone().with("n1", record(&primary(1, 5000), None));
    let d = follower_of_n1().step(&obs(100, a.clone(), &still_primary, vec![]));
    assert!(!acquires(&d), "{:?}", d.reason);
    let demoted = view
        .clone()
        .with("n1", record(&standby(1, 4500, None), None));
    let d = follower_of_n1().step(&obs(100, a.clone(), &demoted, vec![]));
    assert!(acquires(&d), "{:?}", d.reason);
    let stopped_by_its_agent = view
        .clone()
        .with("n1", record(&stopped(primary(1, 4500)), None));
    let d = follower_of_n1().step(&obs(100, a.clone(), &stopped_by_its_agent, vec![]));
    assert!(acquires(&d), "{:?}", d.reason);
    // The operator's `pgha failover --to n2` (its PostgreSQL stopped by hand) is not held back.
    let named = view.failover_to("n2");
    let d = follower_of_n1().step(&obs(100, a, &named, vec![]));
    assert!(acquires(&d), "{:?}", d.reason);
}
