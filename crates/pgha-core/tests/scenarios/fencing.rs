//! A leader whose fencing deadline cannot be moved hands over before its supervisor fences.

use super::*;

/// The leader's agent cannot write a later fencing deadline (the file system holding its
/// lease file is full): its supervisor kills PostgreSQL at the deadline it still holds, however
/// long the store's lease is renewed. The leader serves on while that deadline is more than a
/// safety margin away (a write that fails once and then succeeds changes nothing), then stops
/// PostgreSQL cleanly, lets go once it is not writable, and stays out of failovers.
#[test]
fn a_leader_whose_fence_cannot_be_moved_hands_over_before_its_supervisor_fences() {
    let (mut n1, view) = established_leader();
    let margin = ClusterConfig::default().safety_margin_ms;
    let armed = 8_750;
    let stuck = |now: u64, local: LocalPg, outcomes: Vec<Outcome>| Observation {
        fence_stuck_at: Some(Millis(armed)),
        ..obs(now, local, &view, outcomes)
    };
    let d = n1.step(&stuck(1000, primary(1, 1100), vec![]));
    assert_eq!(d.reason, Reason::Leading { standbys: 0 });
    assert!(has(&d, |a| matches!(a, Action::RenewLeader { .. })));
    assert!(d.wake_at <= Millis(armed - margin), "{:?}", d.wake_at);
    // the next write succeeded: nothing to do
    let d = n1.step(&obs(2000, primary(1, 1200), &view, vec![]));
    assert_eq!(d.reason, Reason::Leading { standbys: 0 });
    // failing again, a margin before the deadline the supervisor holds
    let d = n1.step(&stuck(armed - margin - 1, primary(1, 1300), vec![]));
    assert!(!has(&d, |a| matches!(a, Action::Demote { .. })));
    let d = n1.step(&stuck(armed - margin, primary(1, 1300), vec![]));
    assert_eq!(
        d.reason,
        Reason::FenceStuckDemoting {
            fenced_in_ms: margin
        }
    );
    assert!(has(&d, |a| *a
        == Action::Demote {
            mode: StopMode::Fast,
            fencing: false
        }));
    assert!(!has(&d, |a| matches!(a, Action::ReleaseLeader { .. })));
    // still demoting: the lease is renewed, not released
    let d = n1.step(&stuck(armed - margin + 300, primary(1, 1300), vec![]));
    assert!(!has(&d, |a| matches!(
        a,
        Action::ReleaseLeader { .. } | Action::Demote { .. }
    )));
    let done = job_done(JobKind::Demote);
    let d = n1.step(&stuck(
        armed - margin + 600,
        standby(1, 1300, None),
        vec![done],
    ));
    assert_eq!(d.reason, Reason::FenceStuckHandedOver);
    assert!(has(&d, |a| matches!(
        a,
        Action::ReleaseLeader { revision: 7 }
    )));
    // no leader now, and n1 the only candidate: it stays out
    let gone = View::new().with("n1", record(&standby(1, 1300, None), None));
    stays_out_then_a_later_term_is_not_let_go(n1, gone, armed);
}

/// The member that handed over (above) stays out while its fence is stuck; if it lost its term
/// while the demotion was under way, what it meant to do in that term does not carry over.
fn stays_out_then_a_later_term_is_not_let_go(mut n1: Member, gone: View, armed: u64) {
    let d = n1.step(&Observation {
        fence_stuck_at: Some(Millis(armed)),
        ..obs(armed, standby(1, 1300, None), &gone, vec![])
    });
    assert!(!acquires(&d), "{}", d.reason);
    assert_eq!(
        d.reason,
        Reason::NotEligible(election::Ineligible::PromotionVetoed)
    );
}

/// A leader whose fence is stuck starts its clean demotion, and loses its term meanwhile (the
/// store expired the key: another member led). Later it wins a new term: the release it had
/// planned for the old one must not end the new one.
#[test]
fn a_release_planned_in_one_term_does_not_end_the_next() {
    let (mut n1, view) = established_leader();
    let margin = ClusterConfig::default().safety_margin_ms;
    let armed = 8_750;
    let d = n1.step(&Observation {
        fence_stuck_at: Some(Millis(armed)),
        ..obs(armed - margin, primary(1, 1300), &view, vec![])
    });
    assert!(has(&d, |a| *a
        == Action::Demote {
            mode: StopMode::Fast,
            fencing: false
        }));
    let other =
        View::led_by("n2", 8, &primary(2, 1400)).with("n1", record(&standby(1, 1300, None), None));
    // it follows n2 (its demotion done, streaming)
    let d = n1.step(&obs(
        8_000,
        standby(2, 1400, Some("n2")),
        &other,
        vec![job_done(JobKind::Demote)],
    ));
    assert_eq!(d.reason, Reason::Streaming { leader: name("n2") });
    // n1 wins term 9, its fence writable again; it must promote, not let go
    let mine = View::new()
        .leader("n1", 9)
        .with("n1", record(&standby(2, 1400, Some("n2")), Some("n1")));
    let d = n1.step(&obs(
        40_000,
        standby(2, 1400, None),
        &mine,
        vec![acquired(40_000, 9)],
    ));
    assert!(
        !has(&d, |a| matches!(a, Action::ReleaseLeader { .. })),
        "{}",
        d.reason
    );
    assert!(
        matches!(d.actions.last(), Some(Action::Promote { .. })),
        "{}",
        d.reason
    );
}

/// Found by review (2026-12-07): the ttl lowered live (10 s to 4 s) while the leader's fence
/// was stuck at a deadline armed on the longer one; its renewal with the new ttl let the store
/// end the lease 4 s later, and its agent dying then left the supervisor fencing seconds
/// after another member led. No renewal goes that the supervisor's deadline would outlast:
/// while stuck, the lease is renewed with the ttl it has, and the leader hands over before
/// the deadline as with any stuck fence (not a lapse of its trust).
#[test]
fn a_ttl_lowered_live_is_not_renewed_with_while_the_supervisor_holds_a_later_deadline() {
    let (mut n1, view) = established_leader();
    let lowered = view.ttl(4_000, 1_000);
    let renewals = |d: &Decision| -> Vec<Ttl> {
        (d.actions.iter())
            .filter_map(|a| match a {
                Action::RenewLeader { ttl, .. } => Some(*ttl),
                _ => None,
            })
            .collect()
    };
    // armed on the 10 s lease acquired at 0
    let armed = 8_750;
    let margin = 1_000;
    let mut answered: Option<u64> = None;
    let mut sent = 0;
    for now in (500..armed - margin).step_by(500) {
        let outcomes = answered
            .take()
            .map(|at| renewed_for(at, 10_000))
            .into_iter()
            .collect();
        let d = n1.step(&Observation {
            fence_stuck_at: Some(Millis(armed)),
            fence_armed_at: Some(Millis(armed)),
            ..obs(now, primary(1, 1100), &lowered, outcomes)
        });
        assert_eq!(d.reason, Reason::Leading { standbys: 0 }, "at {now}");
        for ttl in renewals(&d) {
            assert_eq!(
                ttl,
                Ttl::from_secs(10),
                "renewed at {now} with the fence stuck"
            );
            answered = Some(now);
            sent += 1;
        }
    }
    assert!(sent > 5, "{sent} renewals sent");
    let d = n1.step(&Observation {
        fence_stuck_at: Some(Millis(armed)),
        fence_armed_at: Some(Millis(armed)),
        ..obs(armed - margin, primary(1, 1100), &lowered, vec![])
    });
    assert_eq!(
        d.reason,
        Reason::FenceStuckDemoting {
            fenced_in_ms: margin
        }
    );
    // Written: the step that lowers the deadline sends nothing; once the supervisor holds the
    // lowered one, the renewal goes with the new ttl.
    let (mut n1, _) = established_leader();
    let d = n1.step(&Observation {
        fence_armed_at: Some(Millis(armed)),
        ..obs(1_000, primary(1, 1100), &lowered, vec![])
    });
    assert!(renewals(&d).is_empty(), "{d:?}");
    let deadline = n1.fence_deadline().expect("a deadline");
    assert!(deadline <= Millis(1_000 + 4_000 - 500), "{deadline:?}");
    let d = n1.step(&Observation {
        fence_armed_at: Some(deadline),
        ..obs(1_600, primary(1, 1100), &lowered, vec![])
    });
    assert_eq!(renewals(&d), vec![Ttl::from_millis(4_000)], "{d:?}");
}

/// Found by review (2026-12-07): a leader resumed from maintenance mode (its supervisor
/// disarmed) whose arming fails kept leading with nothing to fence its primary, its position
/// marked unfenced: had its agent died, no failover for as long. A supervisor that holds no
/// deadline while none can be written counts as stuck at once: the leader hands over.
#[test]
fn a_leader_whose_supervisor_holds_no_deadline_and_none_can_be_written_hands_over() {
    let (mut n1, view) = established_leader();
    let d = n1.step(&Observation {
        fence_stuck_at: Some(Millis(2_000)),
        fence_armed_at: None,
        ..obs(2_000, primary(1, 1100), &view, vec![])
    });
    assert_eq!(d.reason, Reason::FenceStuckDemoting { fenced_in_ms: 0 });
    assert!(has(&d, |a| *a
        == Action::Demote {
            mode: StopMode::Fast,
            fencing: false
        }));
}
