//! What the history records of a failover or promotion, and the reason it gives.

use super::*;

/// The winner's failover as its history records it, the last leader n1 shown in the
/// leaderless view as `n1_record` says (absent: gone altogether).
fn failover_event(n1_record: Option<MemberRecord>) -> HistoryEvent {
    let (_, _, d) = n2_took_over_from_n1(n1_record);
    recorded(&d).expect("history event")
}

/// n2, streaming from n1, takes over once n1 is gone (shown as `n1_record`, or not at all):
/// n2, its view as leader, and the decision after its promotion.
fn n2_took_over_from_n1(n1_record: Option<MemberRecord>) -> (Member, View, Decision) {
    let mut n2 = member("n2");
    let before = View::led_by("n1", 3, &primary(1, 5000));
    n2.step(&obs(0, standby(1, 5000, Some("n1")), &before, vec![]));
    let local = standby(1, 5000, None);
    let mut gone = leaderless(&local, &standby(1, 10, None), None);
    if let Some(r) = n1_record {
        gone = gone.with("n1", r);
    }
    n2.step(&obs(100, local.clone(), &gone, vec![]));
    let mine = gone.leader("n2", 11).with("n2", record(&local, Some("n2")));
    n2.step(&obs(200, local, &mine, vec![acquired(100, 11)]));
    let promoted = job_done(JobKind::Promote);
    let d = n2.step(&obs(900, primary(2, 5100), &mine, vec![promoted]));
    (n2, mine, d)
}

/// Issue 14: the history says why in words a DBA reads, from what the store shows of the
/// last leader: gone, down, or silent while still claiming to be writable.
#[test]
fn the_failover_says_why_the_leader_was_lost() {
    let gone = failover_event(None);
    assert!(
        gone.reason.starts_with("n2 took over: n1 is gone"),
        "{}",
        gone.reason
    );
    let down = failover_event(Some(record(&stopped(primary(1, 5000)), Some("n1"))));
    assert!(
        down.reason.contains("with its PostgreSQL down"),
        "{}",
        down.reason
    );
    let silent = failover_event(Some(record(&primary(1, 5000), Some("n1"))));
    assert!(
        silent.reason.contains("still said it was writable"),
        "{}",
        silent.reason
    );
}

#[test]
fn the_winner_promotes_then_records_the_failover() {
    let (mut n2, mine) = n2_promoting_after_n1();
    let d = n2.step(&obs(
        900,
        primary(2, 5100),
        &mine,
        vec![job_done(JobKind::Promote)],
    ));
    let event = recorded(&d).expect("history event");
    assert_eq!(event.kind, EventKind::Failover);
    assert_eq!(event.from, Some(name("n1")));
    assert_eq!((event.timeline, event.lsn), (Timeline(2), Lsn(5000)));
}

/// Found by `faults::hosts::etcd_host_lossy`: n2 took over from n1, lost its own lease (the store
/// out of reach), stepped down, and won the lease back. The history said "from n1 ... n1
/// stepped down": the leader it had followed last, not itself. The member that led last was
/// n2: the entry says so, and why.
#[test]
fn a_leader_that_wins_its_lapsed_lease_back_says_it_led_last() {
    let (mut n2, mine, _) = n2_took_over_from_n1(None);
    n2.step(&obs(1000, primary(2, 5200), &mine, vec![]));
    let d = n2.step(&store_down(9000, primary(2, 5300)));
    assert_eq!(d.reason, Reason::LeaseExpiredDemoting);
    let demoted = standby(2, 5300, None);
    let again =
        leaderless(&demoted, &standby(1, 10, None), None).with("n2", record(&demoted, Some("n2")));
    let mut at = 9500;
    let mut outcomes = vec![job_done(JobKind::Demote)];
    loop {
        let d = n2.step(&obs(
            at,
            demoted.clone(),
            &again,
            std::mem::take(&mut outcomes),
        ));
        if acquires(&d) {
            break;
        }
        at += 500;
        assert!(at < 30_000, "n2 never ran for leader again: {}", d.reason);
    }
    let mine = again.leader("n2", 20);
    n2.step(&obs(at + 100, demoted, &mine, vec![acquired(at, 20)]));
    let d = n2.step(&obs(
        at + 900,
        primary(3, 5400),
        &mine,
        vec![job_done(JobKind::Promote)],
    ));
    let event = recorded(&d).expect("history event");
    assert_eq!(event.from, Some(name("n2")), "{event}");
    assert!(event.reason.contains("n2 led last"), "{}", event.reason);
}

/// Found by `faults::late_requests`: an agent started again beside its demoted primary (its
/// predecessor's lease lapsed, the key still under its name) adopts the key and promotes. The
/// history said "no leader, and this member had seen none": the process had seen none, but
/// the key was its member's own. The entry says so.
#[test]
fn a_restarted_agent_that_promotes_on_its_adopted_key_says_the_key_was_its_own() {
    let mut n1 = member("n1");
    let demoted = standby(2, 5300, None);
    let mine = View::led_by("n1", 7, &demoted);
    let d = n1.step(&obs(100, demoted.clone(), &mine, vec![]));
    assert!(
        has(&d, |a| matches!(a, Action::RenewLeader { .. })),
        "{d:?}"
    );
    n1.step(&obs(600, demoted, &mine, vec![renewed(100)]));
    let d = n1.step(&obs(
        900,
        primary(3, 5400),
        &mine,
        vec![job_done(JobKind::Promote)],
    ));
    let event = recorded(&d).expect("history event");
    assert_eq!(event.kind, EventKind::Failover);
    assert!(
        event
            .reason
            .contains("n1 found the leader key under its own name"),
        "{}",
        event.reason
    );
}

/// n2 won the lease (revision 11) from n1 and started its promotion (at 200): n2, and its view
/// as leader.
fn n2_promoting_after_n1() -> (Member, View) {
    let mut n2 = member("n2");
    let before = View::led_by("n1", 3, &primary(1, 5000));
    n2.step(&obs(0, standby(1, 5000, Some("n1")), &before, vec![]));
    let local = standby(1, 5000, None);
    let gone = leaderless(&local, &standby(1, 10, None), None);
    n2.step(&obs(100, local.clone(), &gone, vec![]));
    let mine = View::new()
        .leader("n2", 11)
        .with("n2", record(&local, Some("n2")));
    let d = n2.step(&obs(200, local, &mine, vec![acquired(100, 11)]));
    assert!(matches!(d.actions.last(), Some(Action::Promote { .. })));
    (n2, mine)
}

/// The promotion event among `decisions`, checked to be recorded once.
fn the_one_promotion(decisions: &[Decision]) -> HistoryEvent {
    let events: Vec<HistoryEvent> = decisions.iter().filter_map(recorded).collect();
    assert_eq!(events.len(), 1, "{events:?}");
    let event = events[0].clone();
    assert_eq!(event.kind, EventKind::Failover);
    assert_eq!(
        (&event.from, &event.to),
        (&Some(name("n1")), &Some(name("n2")))
    );
    assert_eq!((event.timeline, event.lsn), (Timeline(2), Lsn(5000)));
    event
}

/// Found by `faults::hosts::etcd_host_lossy` (CI, on a store dropping 30 % of its packets): n3 won
/// the lease and promoted, served writes for 2.5 s, and lost its lease before any step saw the
/// store answer (only a leader's step with the store up recorded a promotion). Its demotion forgot
/// the promotion: the history never said n3 had led, though clients wrote to it. A promotion that
/// took effect is recorded the first step PostgreSQL shows it, whatever the store and the lease do
/// next (an append that fails is appended again later).
#[test]
fn a_promotion_is_recorded_even_when_the_lease_lapses_with_the_store_out_of_reach() {
    let (mut n2, _) = n2_promoting_after_n1();
    let promoted = Observation::new(
        Millis(900),
        primary(2, 5100),
        StoreView::Down {
            error: "timeout".into(),
        },
        vec![job_done(JobKind::Promote)],
    );
    let mut decisions = vec![n2.step(&promoted)];
    decisions.push(n2.step(&store_down(9000, primary(2, 5300))));
    assert_reason!(decisions[1], Reason::LeaseExpiredDemoting);
    the_one_promotion(&decisions);
    // The step after the demotion does not record it again.
    let demoted = standby(2, 5300, None);
    let vacant = leaderless(&demoted, &standby(2, 5300, None), None);
    decisions.push(n2.step(&obs(
        9500,
        demoted,
        &vacant,
        vec![job_done(JobKind::Demote)],
    )));
    the_one_promotion(&decisions);
}

/// The same when the store refuses the renewal (the key gone) in the step that first sees
/// PostgreSQL promoted, or shows another member holding the key.
#[test]
fn a_promotion_is_recorded_when_the_renewal_is_refused_or_another_leads() {
    let (mut n2, _) = n2_promoting_after_n1();
    let key_gone = leaderless(&primary(2, 5100), &standby(1, 10, None), None);
    let d = n2.step(&obs(
        900,
        primary(2, 5100),
        &key_gone,
        vec![job_done(JobKind::Promote), Outcome::LeaderRefused],
    ));
    assert!(has(&d, |a| matches!(a, Action::Demote { .. })), "{d:?}");
    the_one_promotion(&[d]);

    let (mut n2, _) = n2_promoting_after_n1();
    let theirs = View::led_by("n3", 12, &primary(2, 5000));
    let d = n2.step(&obs(
        900,
        primary(2, 5100),
        &theirs,
        vec![job_done(JobKind::Promote)],
    ));
    assert!(has(&d, |a| matches!(a, Action::Demote { .. })), "{d:?}");
    the_one_promotion(&[d]);
}

/// A leader whose renewals go unanswered steps down on its own clock; what the others see of it
/// then is a standby, so the member taking over could only say "it runs read-only". The leader
/// publishes why (its lease lapsed, in which term) until it leads again, and the history entry
/// of the failover that ends that term says so.
#[test]
fn a_leader_that_stepped_down_says_why_and_the_failover_records_it() {
    let (mut n2, mine, _) = n2_took_over_from_n1(None);
    n2.step(&obs(1000, primary(2, 5200), &mine, vec![]));
    let d = n2.step(&store_down(9000, primary(2, 5300)));
    assert_eq!(d.reason, Reason::LeaseExpiredDemoting);
    let demoted = standby(2, 5300, None);
    let vacant = leaderless(&demoted, &standby(2, 5300, None), None);
    let d = n2.step(&obs(
        9500,
        demoted,
        &vacant,
        vec![job_done(JobKind::Demote)],
    ));
    let published = d.actions.iter().find_map(|a| match a {
        Action::PublishMember(r) => Some(r.clone()),
        _ => None,
    });
    let published = published.expect("the demoted leader publishes its record");
    let stepped = SteppedDown {
        term: 11,
        cause: StepDown::LeaseLapsed,
    };
    assert_eq!(published.stepped_down, Some(stepped));
    // That record, read by the member taking over from it (shown as n1's, behind n2, in n1's
    // term 3, the newest n2 knows).
    let old_leader = |stepped_down| MemberRecord {
        timeline: Timeline(1),
        lsn: Lsn(4000),
        replay_lsn: Lsn(4000),
        term_seen: Some(3),
        stepped_down,
        ..published.clone()
    };
    let event = failover_event(Some(old_leader(Some(SteppedDown { term: 3, ..stepped }))));
    assert!(
        event.reason.contains(
            "n1 stepped down: its lease renewals went unanswered until it could no longer \
             trust its lease"
        ),
        "{}",
        event.reason
    );
    // A cause from another term than the one that ended, or none (an agent of an older
    // version), is not quoted.
    for stepped_down in [Some(stepped), None] {
        let event = failover_event(Some(old_leader(stepped_down)));
        assert!(
            event.reason.contains("n1 stepped down: it runs read-only"),
            "{}",
            event.reason
        );
    }
}

/// Found by review: n3 was cut off from n2 before it received timeline 2's history (n2's
/// promotion, recorded in the cluster's history), n2 died, and n3, on timeline 1, won the
/// lease. PostgreSQL would start timeline 2 again, a second history of one timeline that
/// pg_rewind cannot tell from the first; the promotion asks for a timeline above 2.
#[test]
fn a_promotion_starts_a_timeline_above_every_one_the_cluster_recorded() {
    let mut n3 = member("n3");
    let local = standby(1, 5000, None);
    let mine = View::new()
        .leader("n3", 20)
        .with("n3", record(&local, Some("n3")))
        .event(EventKind::Failover, "n1", "n2", 2, 4000);
    let d = n3.step(&obs(0, local, &mine, vec![acquired(0, 20)]));
    assert_eq!(
        d.actions.last(),
        Some(&Action::Promote {
            newest_timeline: Timeline(2)
        }),
        "{}",
        d.reason
    );
}
