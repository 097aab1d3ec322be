//! Planned switchovers and manual failovers to a named member.

use super::*;

#[test]
fn a_manual_failover_target_acquires_once_the_named_leader_let_go() {
    let demoted = standby(1, 5000, None);
    let target = standby(1, 5000, None);
    let mut view = leaderless(&demoted, &target, None);
    // n2 here plays the demoted former leader "n1"'s role under the name n2; n3 is the target.
    view.0.switchover = Some(PendingSwitchover {
        request: SwitchoverRequest {
            from: Some(name("n2")),
            to: Some(name("n3")),
            kind: RequestKind::Failover {
                force: false,
                allow_data_loss: false,
            },
            at: None,
        },
        revision: 9,
    });
    let d = member("n3").step(&obs(0, target, &view, vec![]));
    assert!(acquires(&d), "{:?}", d.reason);
}

/// n1 leading in term 7, n2 streaming from it (its PostgreSQL as given), and a switchover to
/// n2 requested (revision 30).
fn leader_asked_to_switch_over_to_n2() -> (Member, LocalPg, View) {
    let (n1, _) = established_leader();
    let n2_pg = standby(1, 1000, Some("n1"));
    let view = View::led_by("n1", 7, &primary(1, 1000))
        .with("n2", record(&n2_pg, Some("n1")))
        .switchover("n1", Some("n2"), 30);
    (n1, n2_pg, view)
}

#[test]
fn switchover_demotes_the_leader_first_and_the_target_waits_for_replay() {
    let (mut n1, n2_pg, view) = leader_asked_to_switch_over_to_n2();
    let d = n1.step(&obs(100, primary(1, 1000), &view, vec![]));
    assert_eq!(
        d.actions.last(),
        Some(&Action::Demote {
            mode: StopMode::Fast,
            fencing: false
        })
    );
    assert_eq!(
        d.reason,
        Reason::SwitchoverDemoting {
            target: Some(name("n2"))
        }
    );
    let demoted = job_done(JobKind::Demote);
    let d = n1.step(&obs(600, standby(1, 1200, None), &view, vec![demoted]));
    // Demoted: its final position goes to the store first; the key stays until a read shows
    // it there (found by review: a lost write left the target the record from before the stop).
    assert!(has(
        &d,
        |a| matches!(a, Action::PublishMember(r) if r.lsn == Lsn(1200))
    ));
    assert!(
        !has(&d, |a| matches!(a, Action::ReleaseLeader { .. })),
        "{d:?}"
    );
    let d = n1.step(&obs(700, standby(1, 1200, None), &view, vec![]));
    assert!(
        !has(&d, |a| matches!(a, Action::ReleaseLeader { .. })),
        "{d:?}"
    );
    let shown = view
        .clone()
        .with("n1", record(&standby(1, 1200, None), Some("n1")));
    let d = n1.step(&obs(800, standby(1, 1200, None), &shown, vec![]));
    // The failsafe promises of its term are given back before the key is released (the
    // target need not wait out a promise its members gave n1 in a store outage).
    gives_back_promises_then_releases(&d, 7);

    let after = View::new()
        .with("n1", record(&standby(1, 1200, None), None))
        .with("n2", record(&n2_pg, None))
        .switchover("n1", Some("n2"), 30);
    let mut n2 = member("n2");
    let d = n2.step(&obs(700, standby(1, 1100, None), &after, vec![]));
    assert_eq!(
        d.reason,
        Reason::CatchingUpForSwitchover {
            replayed: Lsn(1100),
            needed: Lsn(1200)
        }
    );
    let d = n2.step(&obs(800, standby(1, 1200, None), &after, vec![]));
    assert!(acquires(&d));
}

/// Found by the 2026-12-05 distributed campaign: while a switchover's demotion shut
/// PostgreSQL down, the probe found it unresponsive and the leader explained itself as "primary
/// PostgreSQL unresponsive for 0 ms (over primary_start_timeout_ms): demoting it and letting
/// the lease run out", none of which was so. It is the switchover's demotion, and the handover
/// follows as planned.
#[test]
fn a_switchover_demotion_shutting_postgres_down_is_explained_as_the_switchover() {
    let (mut n1, _, view) = leader_asked_to_switch_over_to_n2();
    let d = n1.step(&obs(100, primary(1, 1000), &view, vec![]));
    assert!(has(&d, |a| matches!(a, Action::Demote { .. })));
    let shutting_down = LocalPg {
        unresponsive: true,
        ..primary(1, 1000)
    };
    let d = n1.step(&obs(200, shutting_down, &view, vec![]));
    assert_eq!(
        d.reason,
        Reason::SwitchoverDemoting {
            target: Some(name("n2"))
        }
    );
    let demoted = job_done(JobKind::Demote);
    n1.step(&obs(600, standby(1, 1200, None), &view, vec![demoted]));
    let shown = view
        .clone()
        .with("n1", record(&standby(1, 1200, None), Some("n1")));
    let d = n1.step(&obs(700, standby(1, 1200, None), &shown, vec![]));
    assert_eq!(
        d.reason,
        Reason::SwitchoverHandedOff {
            target: Some(name("n2"))
        }
    );
    assert!(has(&d, |a| matches!(
        a,
        Action::ReleaseLeader { revision: 7 }
    )));
}

/// Found by review: a switchover's handover belonged to no term. A leader whose lease lapsed
/// while its switchover demotion ran kept it, and on winning a later election released the new
/// lease as "handed over" (giving back that term's promises) instead of promoting.
#[test]
fn a_handover_of_a_lapsed_term_does_not_give_up_a_later_one() {
    let (mut n1, n2_pg, view) = leader_asked_to_switch_over_to_n2();
    let d = n1.step(&obs(100, primary(1, 1000), &view, vec![]));
    assert!(has(&d, |a| matches!(a, Action::Demote { .. })));
    // The store goes away and the lease lapses while the demotion runs.
    let lapsed = ClusterConfig::default().ttl_ms + 100;
    n1.step(&store_down(lapsed, primary(1, 1000)));
    // The demotion ends; the key has expired; n1, ahead, wins the election of term 9.
    let demoted = standby(1, 1200, None);
    let vacant = View::new()
        .with("n1", record(&demoted, None))
        .with("n2", record(&n2_pg, None));
    let mut now = lapsed + 100;
    let mut d = n1.step(&obs(
        now,
        demoted.clone(),
        &vacant,
        vec![job_done(JobKind::Demote)],
    ));
    while !acquires(&d) {
        now += 500;
        assert!(
            now < lapsed + 60_000,
            "never ran for leader: {:?}",
            d.reason
        );
        d = n1.step(&obs(now, demoted.clone(), &vacant, vec![]));
    }
    let won = View::led_by("n1", 9, &demoted).with("n2", record(&n2_pg, Some("n1")));
    let d = n1.step(&obs(now + 10, demoted, &won, vec![acquired(now, 9)]));
    assert!(
        has(&d, |a| matches!(a, Action::Promote { .. })),
        "{:?}: {:?}",
        d.reason,
        d.actions
    );
    assert!(!has(&d, |a| matches!(
        a,
        Action::ReleaseLeader { .. } | Action::ReturnPromises { .. }
    )));
}

#[test]
fn switchover_to_a_member_not_streaming_is_refused_and_cleared() {
    let (mut n1, _) = established_leader();
    let view = View::led_by("n1", 7, &primary(1, 1000))
        .with("n2", record(&standby(1, 1000, None), Some("n1")))
        .switchover("n1", Some("n2"), 30);
    let d = n1.step(&obs(100, primary(1, 1000), &view, vec![]));
    assert!(matches!(d.reason, Reason::SwitchoverRefused(_)));
    assert!(has(&d, |a| matches!(
        a,
        Action::ClearSwitchover { revision: 30 }
    )));
    assert!(!has(&d, |a| matches!(a, Action::Demote { .. })));
    // Said in the history, where `pgha switchover` looks for it (it waited its whole patience,
    // and said only that n2 was not the primary).
    let refused = d.actions.iter().find_map(|a| match a {
        Action::RecordHistory(e) if e.kind == EventKind::RequestRefused => Some(e.clone()),
        _ => None,
    });
    let refused = refused.expect("the refusal is recorded");
    assert_eq!(
        (refused.from, refused.to),
        (Some(name("n1")), Some(name("n2")))
    );
    assert_eq!(
        refused.reason,
        "switchover refused by n1: n2 is not streaming from the leader"
    );
    // Once: the request is cleared, and a step that reads it again records nothing more.
    let d = n1.step(&obs(200, primary(1, 1000), &view, vec![]));
    assert!(!has(&d, |a| matches!(a, Action::RecordHistory(_))));
}

/// Found by the whole suite (`failover::operator_commands::manual_failover_to_a_caught_up_standby`,
/// twice, under load): the leader refused `pgha failover --to n3` as 16 MB behind, judging its
/// own position now against n3's record, published before a WAL switch n3 had streamed since
/// (the CLI, reading n3 caught up, had passed it). The leader judges with what its replication
/// shows each standby flushed.
#[test]
fn a_request_to_a_standby_the_leader_sees_caught_up_is_not_refused_for_its_older_record() {
    let far = 20_000_000;
    let view = View::led_by("n1", 7, &primary(1, far))
        .with("n3", record(&standby(1, 1000, Some("n1")), Some("n1")))
        .failover_to("n3");
    let mut leader = primary(1, far);
    leader.replicas = vec![ReplicaState {
        name: name("n3"),
        streaming: true,
        flush_lsn: Lsn(far),
        replay_lsn: Lsn(far),
    }];
    let (mut n1, _) = established_leader();
    let d = n1.step(&obs(100, leader, &view, vec![]));
    assert!(
        has(&d, |a| matches!(a, Action::Demote { .. })),
        "{}",
        d.reason
    );
    // Not seen streaming there, its record is all the leader has: refused as lagging.
    let (mut n1, _) = established_leader();
    let d = n1.step(&obs(100, primary(1, far), &view, vec![]));
    assert!(
        matches!(
            d.reason,
            Reason::SwitchoverRefused(switchover::Refusal::TargetIneligible { .. })
        ),
        "{}",
        d.reason
    );
}

/// Found by the simulation (seed 16744): a switchover to n3 was requested, and its leader n1
/// lost its lease before it could check the request. n3, tagged `nofailover`, took over for it
/// anyway; as the leader that published the synchronous set it later stood ahead of the set,
/// unpromotable, and no member could ever lead again. The target must still be one that may be
/// promoted; otherwise the election decides, without waiting for it.
#[test]
fn a_switchover_target_that_may_not_be_promoted_leaves_it_to_the_election() {
    let n1_pg = standby(1, 5_000, None);
    let (n2_pg, n3_pg) = (standby(1, 5_000, None), standby(1, 5_000, None));
    let nofailover = Tags {
        nofailover: true,
        ..Tags::default()
    };
    let n3_record = MemberRecord {
        tags: nofailover.clone(),
        ..record(&n3_pg, None)
    };
    let view = View::new()
        .with("n1", record(&n1_pg, None))
        .with("n2", record(&n2_pg, None))
        .with("n3", n3_record)
        .switchover("n1", Some("n3"), 40);
    let d = member_with("n3", nofailover).step(&obs(0, n3_pg, &view, vec![]));
    assert!(
        !acquires(&d),
        "n3 took over for the switchover: {:?}",
        d.reason
    );
    let mut n2 = member("n2");
    let d = n2.step(&obs(0, n2_pg, &view, vec![]));
    assert!(
        !matches!(d.reason, Reason::WaitingForSwitchoverTarget { .. }),
        "{:?}",
        d.reason
    );
}

/// Found by the 50,000-seed run with vetoes (seed 11606), after the fix above: a void
/// switchover must not drop its old leader from the election either. n2 led for a moment and
/// its `pre_promote` vetoed while a switchover from it to the dead n1 was pending; n3, behind
/// n2, ran as if n2 were not there and lost the commit n2 had acknowledged.
#[test]
fn a_void_switchover_leaves_its_old_leader_in_the_election() {
    let (ahead, behind) = (standby(1, 5000, None), standby(1, 4000, None));
    let vetoed = vetoed_record(&ahead);
    let view = View::new()
        .with("n2", vetoed)
        .with("n3", record(&behind, None))
        .sync_set("n1", &["n2", "n3"])
        .switchover("n2", Some("n1"), 50);
    let d = member("n3").step(&obs(0, behind, &view, vec![]));
    assert!(!acquires(&d), "n3 took over: {:?}", d.reason);
    assert!(
        matches!(&d.reason, Reason::IneligibleAhead { member, .. } if member == &name("n2")),
        "{:?}",
        d.reason
    );
}

/// Found by the simulation (seed 22959): the old leader died instead of handing over, and its
/// record still shows a position from before its last writes. The switchover target does not
/// take the lease over a standby known to be further ahead; the election decides.
#[test]
fn a_switchover_target_behind_another_standby_leaves_it_to_the_election() {
    let after = View::new()
        .with("n1", record(&standby(1, 1200, None), None))
        .with("n2", record(&standby(1, 1500, None), None))
        .with("n3", record(&standby(1, 1900, None), None))
        .switchover("n1", Some("n2"), 30);
    let d = member("n2").step(&obs(800, standby(1, 1500, None), &after, vec![]));
    assert!(!acquires(&d), "{:?}", d.reason);
}

/// Seen in the entry-point test: a planned switchover was refused because the target's
/// published position lagged by a WAL segment right after a clone. A switchover hands over
/// only once the target replayed the old leader's final position, so lag is no reason to
/// refuse it; a failover without --force still is.
#[test]
fn a_planned_switchover_is_not_refused_for_lag_but_a_failover_is() {
    let view = View::led_by("n1", 7, &primary(1, 20 << 20))
        .with("n2", record(&standby(1, 1 << 20, Some("n1")), Some("n1")));
    let switchover = SwitchoverRequest {
        from: Some(name("n1")),
        to: Some(name("n2")),
        kind: RequestKind::Switchover,
        at: None,
    };
    assert_eq!(
        switchover::check(&view.0, Lsn(20 << 20), &switchover),
        Ok(name("n2"))
    );
    let failover = SwitchoverRequest {
        kind: RequestKind::Failover {
            force: false,
            allow_data_loss: false,
        },
        ..switchover
    };
    assert!(switchover::check(&view.0, Lsn(20 << 20), &failover).is_err());

    // Without a leader there is nobody to hand over from: only a failover promotes.
    let mut leaderless = view.clone();
    leaderless.0.leader = None;
    let planned = SwitchoverRequest {
        from: None,
        to: Some(name("n2")),
        kind: RequestKind::Switchover,
        at: None,
    };
    let refused = switchover::check(&leaderless.0, Lsn(0), &planned).unwrap_err();
    assert_eq!(
        refused,
        switchover::Refusal::SwitchoverWithoutLeader(name("n2"))
    );
    assert!(refused.to_string().contains("pgha failover --to n2"));
}

/// Found by the simulation with five members (seed 1355): a switchover from n1 to n3 was
/// written (revision 30) and never acted on; n2 took over by election (term 40), n3 followed
/// it, n2 was cut off before it cleared the request, and its lease ran out. In that later
/// vacancy n3 took over as the old request's target, ahead of n4, whose record still showed
/// the position it had under n2 and which was further by then: commits a quorum acknowledged
/// were lost. A request is made to the leader of its term: once a later term began, the
/// election decides, and n3 waits for n4's position as any candidate does.
#[test]
fn a_switchover_request_from_an_earlier_term_is_void_in_a_later_vacancy() {
    let mut n3 = member("n3");
    let n3_pg = standby(2, 5000, Some("n2"));
    let led = View::led_by("n2", 40, &primary(2, 5000))
        .with("n3", record(&n3_pg, Some("n2")))
        .switchover("n1", Some("n3"), 30);
    n3.step(&obs(0, n3_pg, &led, vec![]));
    let vacancy = View::new()
        .with("n1", record(&standby(1, 1000, None), None))
        .with("n3", record(&standby(2, 5000, None), None))
        .with("n4", record(&standby(2, 4000, Some("n2")), Some("n2")))
        .switchover("n1", Some("n3"), 30);
    let d = n3.step(&obs(1000, standby(2, 5000, None), &vacancy, vec![]));
    assert!(
        !acquires(&d),
        "n3 took over for the old request: {:?}",
        d.reason
    );
    assert_reason!(d, Reason::WaitingForPositions { .. });

    // A member that did not read n2's key (its agent restarted since) goes by the `position`
    // key n2 published in its term.
    let published = View(ClusterView {
        leader_position: Some(LeaderPosition {
            leader: name("n2"),
            timeline: Timeline(2),
            lsn: Lsn(5000),
            term: Some(40),
            unfenced: false,
        }),
        ..vacancy.0.clone()
    });
    let d = member("n3").step(&obs(1000, standby(2, 5000, None), &published, vec![]));
    assert!(
        !acquires(&d),
        "n3 took over for the old request: {:?}",
        d.reason
    );
}

/// A request written before the leader's term began (here it took its lease again, revision
/// 40, after the request's 30) could not be told from one made to an earlier leader: it is
/// refused and cleared, never acted on.
#[test]
fn a_leader_refuses_a_request_made_before_its_term() {
    let mut n1 = member("n1");
    let led = View::led_by("n1", 40, &primary(1, 1000))
        .with("n2", record(&standby(1, 1000, Some("n1")), Some("n1")));
    n1.step(&obs(0, primary(1, 1000), &led, vec![acquired(0, 40)]));
    let asked = led.switchover("n1", Some("n2"), 30);
    let d = n1.step(&obs(100, primary(1, 1000), &asked, vec![]));
    assert_eq!(
        d.reason,
        Reason::SwitchoverRefused(switchover::Refusal::MadeInEarlierTerm { term: 40 })
    );
    assert!(has(&d, |a| matches!(
        a,
        Action::ClearSwitchover { revision: 30 }
    )));
    assert!(!has(&d, |a| matches!(a, Action::Demote { .. })));
}

/// Found by the simulation with five members (seed 40571), after the fix above: the same
/// request, but its target's agent restarted meanwhile, so it had read no leader key since
/// the request, and the leader after it was cut off before it published its position. The old
/// leader's final position is on timeline 1 while the target's WAL is on timeline 2: another
/// primary wrote after it, so the request is no handover to wait for, and the election decides.
#[test]
fn a_switchover_target_on_a_later_timeline_than_the_old_leader_leaves_it_to_the_election() {
    let vacancy = View::new()
        .with("n1", record(&standby(1, 1000, None), None))
        .with("n2", record(&standby(2, 5000, None), None))
        .with("n3", record(&standby(2, 4000, Some("n4")), Some("n4")))
        .switchover("n1", Some("n2"), 30);
    let d = member("n2").step(&obs(1000, standby(2, 5000, None), &vacancy, vec![]));
    assert!(
        !acquires(&d),
        "n2 took over for the old request: {:?}",
        d.reason
    );
    assert_reason!(d, Reason::WaitingForPositions { .. });
}

/// Found by the simulation with whole-cluster stops (seed 1917): the cluster was stopped while
/// n2 handed over to the best candidate, and started again. n1, a primary of timeline 1 that
/// had never followed n2's timeline 2, started before n3 and ran, the old leader (now a standby
/// 130 kB ahead on timeline 2) being left out of the election as the switchover's: its writes
/// were rewound away. A member on an older timeline than the old leader's final position holds
/// nothing the old leader wrote on its own, and does not take over for its request.
#[test]
fn a_member_on_an_older_timeline_than_the_old_leader_does_not_run_for_its_switchover() {
    let old_leader = standby(2, 251_048, None);
    let behind = standby(1, 120_991, None);
    let view = View::new()
        .with("n1", record(&behind, None))
        .with("n2", record(&old_leader, None))
        .switchover("n2", None, 50);
    let mut n1 = member("n1");
    let d = n1.step(&obs(1000, behind.clone(), &view, vec![]));
    assert!(!acquires(&d), "n1 took over: {:?}", d.reason);
    assert!(
        matches!(&d.reason, Reason::Behind { best } if best == &name("n2")),
        "{:?}",
        d.reason
    );
    // Once the request's window is over, the old leader competes again, and wins; n1 never
    // runs.
    let mut n2 = member("n2");
    let over = 1000 + ClusterConfig::default().switchover_timeout_ms;
    let mut now = 1000;
    loop {
        let d = n1.step(&obs(now, behind.clone(), &view, vec![]));
        assert!(!acquires(&d), "n1 took over at {now} ms: {:?}", d.reason);
        let d = n2.step(&obs(now, old_leader.clone(), &view, vec![]));
        if now >= over {
            assert!(acquires(&d), "n2 did not run: {:?}", d.reason);
            break;
        }
        assert!(!acquires(&d), "n2 ran at {now} ms: {:?}", d.reason);
        now += 500;
    }
}

/// Found by review: without a leader, a manual failover's target was checked against no
/// primary position at all, so `pgha failover --to n2` (no --force) promoted a standby 19 MB
/// behind the last leader's published position (the `position` key), in asynchronous mode,
/// where the election would not have let it run (`maximum_lag_on_failover`, 1 MB). It is
/// checked against that position now, as the election checks it; --force still goes ahead.
#[test]
fn a_manual_failover_without_a_leader_is_checked_against_the_last_leaders_position() {
    let view = View::new()
        .with("n2", record(&standby(1, 1 << 20, None), None))
        .led_last("n1", 1, 20 << 20);
    let failover = |force| failover_request("n2", force, false);
    let refused = switchover::check(&view.0, Lsn(0), &failover(false));
    assert!(
        matches!(
            &refused,
            Err(switchover::Refusal::TargetIneligible {
                why: pgha_core::election::Ineligible::Lagging { .. },
                ..
            })
        ),
        "{refused:?}"
    );
    let refusal = refused.unwrap_err().to_string();
    assert!(refusal.contains("add --force"), "{refusal}");
    assert_eq!(
        switchover::check(&view.0, Lsn(0), &failover(true)),
        Ok(name("n2"))
    );
    // --allow-data-loss (losing acknowledged commits) includes losing the WAL it lags by.
    let losing = failover_request("n2", false, true);
    assert_eq!(switchover::check(&view.0, Lsn(0), &losing), Ok(name("n2")));
}

/// Found by the simulation with whole-cluster stops (seed 49920): the cluster stopped while a
/// switchover from n1 to n2 was pending, n2 stopped before n1's shutdown could send it n1's
/// last WAL. Started again, n2, the target but behind n3 (tagged nofailover), left it to the
/// election, which left out the old leader n1: n2 ran, and n1's last writes were rewound away
/// by a planned switchover, with nothing failed. While the request holds, nobody behind the
/// old leader's final position runs; once its window is over the old leader competes again.
#[test]
fn nobody_behind_a_switchovers_old_leader_runs_for_its_request() {
    let old_leader = standby(1, 328_121, None);
    let target = standby(1, 327_883, None);
    let no_failover = Tags {
        nofailover: true,
        ..Tags::default()
    };
    let mut ahead = record(&standby(1, 328_012, None), None);
    ahead.tags = no_failover.clone();
    let view = View::new()
        .with("n1", record(&old_leader, None))
        .with("n2", record(&target, None))
        .with("n3", ahead)
        .switchover("n1", Some("n2"), 50);
    let d = member("n2").step(&obs(1000, target.clone(), &view, vec![]));
    assert!(!acquires(&d), "n2 took over: {:?}", d.reason);
    assert!(
        matches!(&d.reason, Reason::Behind { best } if best == &name("n1")),
        "{:?}",
        d.reason
    );
    // An old leader that may not be promoted itself (here tagged nofailover) can only hand
    // over: the target runs.
    let mut unpromotable = record(&old_leader, None);
    unpromotable.tags = no_failover;
    let view = view.with("n1", unpromotable);
    let d = member("n2").step(&obs(1000, target, &view, vec![]));
    assert!(acquires(&d), "{:?}", d.reason);
}

/// Found by the simulation once its demotions stopped writing (a calm switchover after the
/// faults), then seen with `pgha switchover` (no `--to`) on a real cluster: the old leader
/// handed over, the election picked n2, and history recorded a *failover* ("n1 stepped down:
/// it handed over for a switchover"), then n2 refused the very request it had carried out as
/// one made before its term. The best candidate takes over for that switchover: recorded as
/// one, and the request cleared once it is promoted.
#[test]
fn a_switchover_without_a_target_is_the_best_candidates_and_recorded_as_one() {
    let (n2_pg, n3_pg) = (standby(1, 1200, None), standby(1, 1100, None));
    let view = View::new()
        .with("n1", record(&standby(1, 1200, None), None))
        .with("n2", record(&n2_pg, None))
        .with("n3", record(&n3_pg, None))
        .switchover("n1", None, 30);
    let mut n2 = member("n2");
    let d = n2.step(&obs(0, n2_pg.clone(), &view, vec![]));
    assert!(acquires(&d), "{:?}", d.reason);
    let mut led = view.clone();
    led.0.leader = View::new().leader("n2", 31).0.leader;
    let d = n2.step(&obs(50, n2_pg, &led, vec![acquired(0, 31)]));
    assert!(
        has(&d, |a| matches!(a, Action::Promote { .. })),
        "{:?}",
        d.actions
    );
    let d = n2.step(&obs(
        300,
        primary(2, 1200),
        &led,
        vec![job_done(JobKind::Promote)],
    ));
    let event = recorded(&d).expect("the promotion in history");
    assert_eq!(event.kind, EventKind::Switchover, "{event:?}");
    assert_eq!(event.from, Some(name("n1")));
    assert!(
        has(&d, |a| *a == Action::ClearSwitchover { revision: 30 }),
        "{:?}",
        d.actions
    );
    assert!(
        !d.actions
            .iter()
            .any(|a| matches!(a, Action::RecordHistory(e)
            if e.kind == EventKind::RequestRefused)),
        "the switchover it carried out refused: {:?}",
        d.actions
    );
}
