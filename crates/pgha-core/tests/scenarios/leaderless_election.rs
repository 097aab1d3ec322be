//! The election without a leader: who runs, who defers, and whose positions count.

use super::*;

#[test]
fn the_most_advanced_standby_acquires_and_the_other_defers() {
    let (a, b) = (standby(1, 5000, None), standby(1, 4000, None));
    let view = leaderless(&a, &b, None);
    let d2 = member("n2").step(&obs(0, a.clone(), &view, vec![]));
    assert!(acquires(&d2));
    assert_eq!(
        d2.reason,
        Reason::Acquiring {
            kind: EventKind::Failover
        }
    );
    let d3 = member("n3").step(&obs(0, b, &view, vec![]));
    assert_eq!(d3.reason, Reason::Behind { best: name("n2") });
    assert!(!acquires(&d3));
}

#[test]
fn ties_break_by_name() {
    let (a, b) = (standby(1, 5000, None), standby(1, 5000, None));
    let view = leaderless(&a, &b, None);
    let d3 = member("n3").step(&obs(0, b, &view, vec![]));
    assert_eq!(d3.reason, Reason::Behind { best: name("n2") });
}

/// Issue 12: at the same position, the standby whose synchronized logical slots a promotion
/// would find usable wins over a better name (the slots' consumers carry on), and a further
/// position still wins over slots.
#[test]
fn at_the_same_position_synchronized_logical_slots_win() {
    let a = standby(1, 5000, None);
    let b = LocalPg {
        synced_slots: 1,
        ..standby(1, 5000, None)
    };
    let view = leaderless(&a, &b, None);
    let d2 = member("n2").step(&obs(0, a, &view, vec![]));
    assert_eq!(d2.reason, Reason::Behind { best: name("n3") });
    let d3 = member("n3").step(&obs(0, b.clone(), &view, vec![]));
    assert!(acquires(&d3), "{:?}", d3.reason);

    let further = standby(1, 5001, None);
    let view = leaderless(&further, &b, None);
    let d3 = member("n3").step(&obs(0, b, &view, vec![]));
    assert_eq!(d3.reason, Reason::Behind { best: name("n2") });
}

/// Found by an asynchronous campaign with a second nemesis: n2's data disk froze just after
/// the leader's, both standbys stood at the same position, the tie went to n2 by name, and its
/// promotion waited on the frozen disk for 20 s while n3 could have led at once. A member whose
/// data directory has taken no write for `DATA_DIR_STALL_MS` says so in its record and runs
/// for nothing; the other wins the tie. A slower write than that is no stall.
#[test]
fn a_member_whose_data_directory_takes_no_write_loses_a_tie() {
    let stall = pgha_core::DATA_DIR_STALL_MS;
    let (a, b) = (standby(1, 5000, None), standby(1, 5000, None));
    let view = leaderless(&a, &b, None);
    // n2's check has been in flight since 10 s: not yet a stall, and it looks again when it
    // would be one.
    let unwritable = |now: u64| Observation {
        data_dir_unwritable_since: Some(Millis(10_000)),
        ..obs(now, a.clone(), &view, vec![])
    };
    let d = member("n2").step(&unwritable(10_000 + stall - 1));
    assert!(acquires(&d), "{:?}", d.reason);
    assert!(d.wake_at <= Millis(10_000 + stall), "{:?}", d.wake_at);
    // From then on it is out of the failovers, and its record says so.
    let d = member("n2").step(&unwritable(10_000 + stall));
    assert_eq!(
        d.reason,
        Reason::NotEligible(election::Ineligible::DataDirStalled)
    );
    assert!(!acquires(&d));
    assert!(
        has(
            &d,
            |a| matches!(a, Action::PublishMember(r) if r.data_dir_stalled)
        ),
        "{:?}",
        d.actions
    );
    // n3 reads that record: the tie is its own.
    let mut stalled = view.clone();
    stalled
        .0
        .members
        .get_mut(&name("n2"))
        .unwrap()
        .data_dir_stalled = true;
    let d3 = member("n3").step(&obs(0, b.clone(), &stalled, vec![]));
    assert!(acquires(&d3), "{:?}", d3.reason);
    let d3 = member("n3").step(&obs(0, b, &view, vec![]));
    assert_eq!(d3.reason, Reason::Behind { best: name("n2") });
}

#[test]
fn positions_read_before_the_leader_vanished_are_waited_for() {
    let (a, b) = (standby(1, 5000, None), standby(1, 4000, None));
    let view = leaderless(&a, &b, Some("n1"));
    let d = member("n2").step(&obs(0, a, &view, vec![]));
    assert_eq!(
        d.reason,
        Reason::WaitingForPositions {
            unconfirmed: vec![name("n3")],
            replaying: vec![],
        }
    );
}

#[test]
fn nofailover_and_lagging_members_never_acquire() {
    let (a, b) = (standby(1, 5000, None), standby(1, 100, None));
    let view = leaderless(&a, &b, None);
    let tagged = Tags {
        nofailover: true,
        ..Tags::default()
    };
    let d = member_with("n2", tagged).step(&obs(0, a.clone(), &view, vec![]));
    assert_eq!(
        d.reason,
        Reason::NotEligible(election::Ineligible::NoFailoverTag)
    );

    // n3 saw the primary at 10 MiB before it vanished; n3 itself is far behind.
    let mut n3 = member("n3");
    let before = View::led_by("n1", 3, &primary(1, 10 << 20));
    n3.step(&obs(0, standby(1, 100, Some("n1")), &before, vec![]));
    let d = n3.step(&obs(
        100,
        b,
        &leaderless(&standby(1, 50, None), &standby(1, 100, None), None),
        vec![],
    ));
    assert!(matches!(
        d.reason,
        Reason::NotEligible(election::Ineligible::Lagging { .. })
    ));
    // the way out, as the status shows the reason
    assert!(
        d.reason.to_string().ends_with(
            "(`pgha failover --to NAME --force` promotes it by hand, losing what it lacks)"
        ),
        "{}",
        d.reason
    );
}

/// Issue 9, item 8: an agent restarted after the primary vanished has no memory of its
/// position; the `position` key the leader kept writing still rules out a lagging standby.
#[test]
fn a_restarted_agent_checks_the_lag_against_the_stored_leader_position() {
    let (behind, peer) = (standby(1, 100, None), standby(1, 50, None));
    let mut view = leaderless(&behind, &peer, None);
    view.0.leader_position = Some(LeaderPosition {
        leader: name("n1"),
        timeline: Timeline(1),
        lsn: Lsn(10 << 30),
        term: None,
        unfenced: false,
    });
    let d = member("n3").step(&obs(100, behind.clone(), &view, vec![]));
    assert!(
        matches!(
            d.reason,
            Reason::NotEligible(election::Ineligible::Lagging { .. })
        ),
        "{:?}",
        d.reason
    );
    assert!(!acquires(&d));
    // Without the stored position the same member would run.
    view.0.leader_position = None;
    let d = member("n3").step(&obs(100, behind, &view, vec![]));
    assert!(
        !matches!(d.reason, Reason::NotEligible(_)),
        "{:?}",
        d.reason
    );
}

#[test]
fn the_leader_keeps_the_position_key_current() {
    let (mut n1, view) = established_leader();
    let d = n1.step(&obs(1000, primary(1, 5000), &view, vec![]));
    assert!(has(&d, |a| matches!(
        a,
        Action::PublishPosition {
            position: LeaderPosition {
                lsn: Lsn(5000),
                term: Some(7),
                ..
            },
            leader_revision: 7,
            // compared against the key's revision as read (none yet here)
            key_revision: 0,
        }
    )));
    // Not more than once per loop.
    let d = n1.step(&obs(1200, primary(1, 6000), &view, vec![]));
    assert!(!has(&d, |a| matches!(a, Action::PublishPosition { .. })));
}

/// `me` (`behind`) and n3 (`ahead`, its record naming `n3_leader` as the leader it saw) in a
/// leaderless view: at 0 `me` does not run for leader yet, waiting for n3's fresh position.
fn behind_a_stale_record(
    me: &str,
    behind: &LocalPg,
    ahead: &LocalPg,
    n3_leader: &str,
) -> (Member, View) {
    let view = View::new()
        .with(me, record(behind, None))
        .with("n3", record(ahead, Some(n3_leader)));
    let mut m = member(me);
    assert_still_waits_for_n3(&m.step(&obs(0, behind.clone(), &view, vec![])));
    (m, view)
}

fn assert_still_waits_for_n3(d: &Decision) {
    assert!(
        !acquires(d),
        "acquired without waiting for n3: {:?}",
        d.reason
    );
}

/// Found by the simulation (seed 7758): a member cut off from the store for longer than a ttl
/// while leaderless must not count that time as waiting for the others' fresh positions; back
/// on the store it waits for them, and does not outrun a more advanced standby.
#[test]
fn time_cut_off_from_the_store_does_not_count_as_waiting_for_positions() {
    let (behind, ahead) = (standby(1, 5_000, None), standby(2, 9_000, None));
    // n3's record predates the leader's disappearance (it still names n2 as leader).
    let (mut n1, view) = behind_a_stale_record("n1", &behind, &ahead, "n2");
    // Cut off from the store for 20 s.
    for now in (1_000..21_000).step_by(1_000) {
        n1.step(&store_down(now, behind.clone()));
    }
    let d = n1.step(&obs(21_000, behind, &view, vec![]));
    assert_still_waits_for_n3(&d);
}

/// Found by the simulation (seed 8865): an agent paused while leaderless must not count the
/// pause as time spent waiting for the others' fresh positions.
#[test]
fn a_pause_does_not_count_as_waiting_for_positions() {
    let (behind, ahead) = (standby(2, 5_000, None), standby(2, 9_000, None));
    let (mut n2, view) = behind_a_stale_record("n2", &behind, &ahead, "n1");
    // Paused (SIGSTOP) for 15 s, then it steps again on the same view.
    let d = n2.step(&obs(15_000, behind, &view, vec![]));
    assert_still_waits_for_n3(&d);
}

/// Found by the simulation (seed 2805 of the run with vetoes): n3 published its position with
/// no leader in an earlier vacancy, was then cut off from the store while it kept streaming
/// from the next leader (term 79), and a store outage kept its key alive. When term 79 ends,
/// that record's position is old although it saw no leader: n2 waits for n3 to publish again
/// instead of winning over a member that is in fact ahead of it.
#[test]
fn a_position_from_an_earlier_vacancy_is_not_current() {
    let n2_pg = standby(2, 9_000, Some("n1"));
    // n3's record from the vacancy before term 79: no leader seen, term 40 the newest it knew.
    let n3_old = MemberRecord {
        term_seen: Some(40),
        ..record(&standby(1, 5_000, None), None)
    };
    let led = View::led_by("n1", 79, &primary(2, 9_000))
        .with("n2", record(&n2_pg, Some("n1")))
        .with("n3", n3_old.clone());
    let mut n2 = member("n2");
    n2.step(&obs(0, n2_pg.clone(), &led, vec![]));
    let vacancy = View::new()
        .with("n2", record(&n2_pg, Some("n1")))
        .with("n3", n3_old);
    let d = n2.step(&obs(1_000, stopped_upstream(&n2_pg), &vacancy, vec![]));
    assert!(!acquires(&d), "won over n3's old position: {:?}", d.reason);
    assert!(
        matches!(&d.reason, Reason::WaitingForPositions { unconfirmed, .. } if unconfirmed == &[name("n3")]),
        "{:?}",
        d.reason
    );
    // n3 publishes what it has now, read in this vacancy: it is ahead, and n2 defers to it.
    let n3_now = MemberRecord {
        term_seen: Some(79),
        ..record(&standby(2, 9_500, None), None)
    };
    let vacancy = vacancy.with("n3", n3_now);
    let d = n2.step(&obs(1_500, stopped_upstream(&n2_pg), &vacancy, vec![]));
    assert!(
        matches!(&d.reason, Reason::Behind { best } if best == &name("n3")),
        "{:?}",
        d.reason
    );
}

/// The same standby once its upstream is gone: not streaming.
fn stopped_upstream(pg: &LocalPg) -> LocalPg {
    LocalPg {
        streaming: false,
        ..pg.clone()
    }
}

/// Found by the simulation (seed 27061): once a member gives up waiting for another's fresh
/// position, that member's stale record still counts: WAL only grows, so a member known to be
/// ahead (here on a newer timeline) is never outrun by one far behind.
#[test]
fn a_stale_record_of_a_member_ahead_still_counts_after_giving_up_waiting() {
    let (behind, ahead) = (standby(2, 2_000, None), standby(3, 9_000, None));
    let (mut n2, view) = behind_a_stale_record("n2", &behind, &ahead, "n1");
    let ttl = ClusterConfig::default().ttl_ms;
    let mut now = 500;
    while now <= ttl + 2_000 {
        let d = n2.step(&obs(now, behind.clone(), &view, vec![]));
        assert!(!acquires(&d), "at {now} ms: {:?}", d.reason);
        now += 500;
    }
}

/// The `position` key of a cluster whose last leader, n2, led on timeline 2 (term 5).
fn n2_led_last(view: View) -> View {
    let mut view = view;
    view.0.leader_position = Some(LeaderPosition {
        leader: name("n2"),
        timeline: Timeline(2),
        lsn: Lsn(9_000),
        term: Some(5),
        unfenced: false,
    });
    view
}

/// Found by CI (`up::restart::a_primary_stopped_before_another_led_is_not_given_the_key_on_a_restart`):
/// every agent of a stopped cluster started again at once (no member keys survive a clean
/// stop), and n1, on the older timeline of a primary stopped before n2 led, judged itself
/// best before n2 had published anything: it took the key, and n2's writes were rewound away.
/// An agent that has seen no leader since it started waits for the last leader the store
/// names to say where it is (at most a ttl); one that saw that leader go does not.
#[test]
fn an_agent_just_started_waits_for_the_last_leader_to_report_before_running() {
    let n1_pg = standby(1, 8_000, None);
    let alone = n2_led_last(View::new().with("n1", record(&n1_pg, None)));
    let mut n1 = member("n1");
    let d = n1.step(&obs(0, n1_pg.clone(), &alone, vec![]));
    assert!(!acquires(&d), "ran before n2 reported: {:?}", d.reason);
    assert_eq!(
        d.reason,
        Reason::WaitingForLastLeader { leader: name("n2") }
    );
    // n2's agent is back, its PostgreSQL not started yet: its record says nothing of its WAL.
    let n2_starting = MemberRecord {
        term_seen: Some(5),
        ..record(&stopped(standby(2, 9_500, None)), None)
    };
    let starting = alone.clone().with("n2", n2_starting);
    let d = n1.step(&obs(250, n1_pg.clone(), &starting, vec![]));
    assert!(!acquires(&d), "ran over n2 starting: {:?}", d.reason);
    // n2 reports what it has: it is ahead, and n1 defers to it.
    let n2_now = MemberRecord {
        term_seen: Some(5),
        ..record(&standby(2, 9_500, None), None)
    };
    let both = alone.clone().with("n2", n2_now);
    let d = n1.step(&obs(500, n1_pg.clone(), &both, vec![]));
    assert_eq!(d.reason, Reason::Behind { best: name("n2") });

    // n2 never reports: after a ttl the election goes on without it.
    let mut n1 = member("n1");
    let ttl = ClusterConfig::default().ttl_ms;
    for now in (0..ttl).step_by(500) {
        let d = n1.step(&obs(now, n1_pg.clone(), &alone, vec![]));
        assert!(!acquires(&d), "at {now} ms: {:?}", d.reason);
    }
    let d = n1.step(&obs(ttl, n1_pg.clone(), &alone, vec![]));
    assert!(acquires(&d), "{:?}", d.reason);

    // An agent that followed n2 and saw it go runs at once, as in any failover.
    let n3_pg = standby(2, 9_000, Some("n2"));
    let led = n2_led_last(View::led_by("n2", 5, &primary(2, 9_000)));
    let mut n3 = member("n3");
    n3.step(&obs(0, n3_pg.clone(), &led, vec![]));
    let gone = n2_led_last(View::new().with("n3", record(&n3_pg, None)));
    let d = n3.step(&obs(1_000, stopped_upstream(&n3_pg), &gone, vec![]));
    assert!(acquires(&d), "{:?}", d.reason);
}

/// Found by the simulation with whole-cluster stops (seed 29942): every host lost power for
/// less than a ttl, so the agents that started again first found the leader key of n2, whose
/// agent was not back, still there with its record. n1 took it for a leader it had seen: when
/// the key expired it ran at once, without waiting for n2 to report, and the commits only n2
/// had confirmed were lost although n2 came back a moment later. A leader counts as seen only
/// once this member streamed from it; until then the last leader is waited for, as after a
/// clean stop.
#[test]
fn a_leader_key_left_by_a_power_loss_is_not_a_leader_seen() {
    // Configured to follow n2, whose PostgreSQL is down: it never streams.
    let n1_pg = LocalPg {
        upstream: Some(name("n2")),
        ..standby(2, 8_000, None)
    };
    let stale = View::led_by("n2", 5, &primary(2, 9_500)).with("n1", record(&n1_pg, None));
    let mut n1 = member("n1");
    let d = n1.step(&obs(0, n1_pg.clone(), &n2_led_last(stale), vec![]));
    assert!(d.actions.iter().all(|a| a.job().is_none()), "{d:?}");
    let gone = n2_led_last(View::new().with("n1", record(&n1_pg, None)));
    let d = n1.step(&obs(500, n1_pg, &gone, vec![]));
    assert!(!acquires(&d), "ran before n2 reported: {:?}", d.reason);
    assert_eq!(
        d.reason,
        Reason::WaitingForLastLeader { leader: name("n2") }
    );
}

/// Found by review: the leader republished the `position` key only once its LSN moved, so the
/// same member leading a new term with no write since (an idle primary whose agent took its
/// key again) left the previous term there, and members that go by the key (a switchover
/// request written between the two terms) took the new term for the old one.
#[test]
fn a_leader_in_a_new_term_publishes_its_position_with_that_term_though_nothing_was_written() {
    let pg = primary(2, 9_000);
    let view = n2_led_last(View::new().leader("n2", 7).with("n2", record(&pg, None)));
    let mut n2 = member("n2");
    let d = n2.step(&obs(0, pg.clone(), &view, vec![acquired(0, 7)]));
    let published = d.actions.iter().find_map(|a| match a {
        Action::PublishPosition { position, .. } => Some(position.clone()),
        _ => None,
    });
    assert_eq!(published.and_then(|p| p.term), Some(7), "{d:?}");
}
