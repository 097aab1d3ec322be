//! Who may be promoted in a synchronous mode: the published set decides.

use super::*;

#[test]
fn synchronous_mode_promotes_only_inside_the_published_set() {
    let (a, b) = (standby(1, 5000, None), standby(1, 4000, None));
    let mut view = leaderless(&a, &b, None).config(|c| c.synchronous_mode = SyncMode::On);
    view.0.sync.members.insert(name("n3"));
    view.0.sync.count = 1;
    let d2 = member("n2").step(&obs(0, a, &view, vec![]));
    assert_eq!(
        d2.reason,
        Reason::NotEligible(election::Ineligible::OutsideSyncSet)
    );
    assert!(
        d2.reason
            .to_string()
            .contains("`pgha failover --to NAME --allow-data-loss`"),
        "{}",
        d2.reason
    );
    let d3 = member("n3").step(&obs(0, b, &view, vec![]));
    assert!(acquires(&d3));
}

/// Found by the simulation (seed 2, once it checked that the store's set covers what the
/// primary's PostgreSQL counts): n2 still carries `synchronous_standby_names` from its own
/// earlier term, counting n1, which is outside the published set. Promoted as it is, it would
/// acknowledge commits that only n1 confirmed, and the next failover, choosing inside the set,
/// could lose them. Before promoting it keeps only listed members of the set; strict mode
/// with none left waits on a placeholder.
#[test]
fn a_winner_drops_standbys_outside_the_published_set_before_promoting() {
    for mode in [SyncMode::On, SyncMode::Strict] {
        let mut n2 = member("n2");
        let stale = SyncApplied {
            method: SyncMethod::Priority,
            count: 1,
            names: vec![name("n1"), name("n3")],
        };
        let local = LocalPg {
            sync_applied: stale.clone(),
            ..standby(1, 5000, None)
        };
        let mut mine = View::new()
            .leader("n2", 11)
            .with("n2", record(&local, Some("n2")))
            .config(|c| c.synchronous_mode = mode);
        mine.0.sync = SyncSet {
            leader: Some(name("n1")),
            members: [name("n2"), name("n3")].into(),
            count: 1,
            method: SyncMethod::Priority,
            mode: None,
        };
        let d = n2.step(&obs(200, local.clone(), &mine, vec![acquired(100, 11)]));
        assert!(
            matches!(d.actions.last(), Some(Action::Promote { .. })),
            "{mode:?}: {d:?}"
        );
        let set = d.actions.iter().find_map(|a| match a {
            Action::SetSync(applied) => Some(applied.clone()),
            _ => None,
        });
        assert_eq!(
            set.map(|s| s.names),
            Some(vec![name("n3")]),
            "{mode:?}: n1 must not be counted: {d:?}"
        );

        // Nothing of the stale list in the set: `on` starts asynchronous, strict waits.
        let mut n2 = member("n2");
        mine.0.sync.members = [name("n2")].into();
        let d = n2.step(&obs(200, local.clone(), &mine, vec![acquired(100, 11)]));
        let set = d.actions.iter().find_map(|a| match a {
            Action::SetSync(applied) => Some(applied.clone()),
            _ => None,
        });
        let set = set.expect("the stale list is replaced before promoting");
        match mode {
            SyncMode::On => assert!(set.is_async(), "{d:?}"),
            _ => assert_eq!(set.names, vec![name(sync::NO_STANDBY)], "{d:?}"),
        }
    }
}

/// The leader that published the synchronous set (n1, ahead of n2 by commits whose
/// synchronous wait was cut short) steps aside for the set's members when every one of them is
/// an eligible standby: the best of them holds every acknowledged commit. With a member of the
/// set missing, n1, which has every commit it acknowledged, competes on its position.
#[test]
fn the_sets_old_leader_steps_aside_only_for_a_complete_set() {
    let old_leader = standby(1, 5000, None);
    let member_of_set = standby(1, 4000, None);
    let mut view = View::new()
        .with("n1", record(&old_leader, None))
        .with("n2", record(&member_of_set, None))
        .with("n3", record(&standby(1, 3000, None), None))
        .sync_set("n1", &["n2"]);
    let d1 = member("n1").step(&obs(0, old_leader.clone(), &view, vec![]));
    assert_eq!(d1.reason, Reason::Behind { best: name("n2") }, "{d1:?}");
    let d2 = member("n2").step(&obs(0, member_of_set.clone(), &view, vec![]));
    assert!(acquires(&d2), "{d2:?}");

    // n2 gone: n1 is the only candidate that surely holds every acknowledged commit.
    view.0.members.remove(&name("n2"));
    let d1 = member("n1").step(&obs(0, old_leader, &view, vec![]));
    assert!(acquires(&d1), "{d1:?}");
}

/// The leader n1 published the set [n2, n3] (`FIRST 1`: n2 acknowledged each commit, n3 was
/// potential); n1 is gone, and so is n2's record (its member key expired: its host cut from
/// the store, or down with n1). n2 may hold commits it acknowledged that n3 lacks, and nothing
/// tells how far it got: n3 does not run (before: it took the lease at once, a loss of every
/// commit acknowledged in the moments n3 lagged n2). Once n2's fresh record is back, the
/// better of the two runs; an operator who would rather lose those commits names n3 by hand.
#[test]
fn a_priority_set_member_whose_record_is_gone_keeps_the_others_from_running() {
    let b = standby(1, 4000, None);
    let view = View::new()
        .with("n3", record(&b, None))
        .sync_set("n1", &["n2", "n3"]);
    let mut n3 = member("n3");
    let ttl = ClusterConfig::default().ttl_ms;
    let mut now = 0;
    while now <= 3 * ttl {
        let d = n3.step(&obs(now, b.clone(), &view, vec![]));
        assert!(!acquires(&d), "at {now} ms: {}", d.reason);
        assert_eq!(
            d.reason,
            Reason::QuorumIncomplete {
                confirmed: 1,
                needed: 2,
                replaying: vec![],
            }
        );
        now += 2500;
    }
    // n2 back, behind n3: n3 runs; ahead: n2 does.
    let back = view
        .clone()
        .with("n2", record(&standby(1, 3500, None), None));
    assert!(acquires(&n3.step(&obs(now, b.clone(), &back, vec![]))));
    let ahead = view
        .clone()
        .with("n2", record(&standby(1, 4500, None), None));
    let d = member("n3").step(&obs(now, b.clone(), &ahead, vec![]));
    assert_eq!(d.reason, Reason::Behind { best: name("n2") });
    // By hand: `pgha failover --to n3`.
    let by_hand = view.clone().failover_to("n3");
    let d = member("n3").step(&obs(now, b, &by_hand, vec![]));
    assert!(acquires(&d), "{}", d.reason);
}

/// Found by review: a request was heeded only within `switchover_timeout_ms` of the leader's
/// loss, so `pgha failover --to n3`, the way out of a wait for a set member gone for good,
/// was ignored by a target that had waited longer than that (every test asked a target just
/// started). Its time runs from when the target first saw it.
#[test]
fn a_manual_failover_asked_after_a_long_wait_is_heeded() {
    let b = standby(1, 4000, None);
    let view = View::new()
        .with("n3", record(&b, None))
        .sync_set("n1", &["n2", "n3"]);
    let mut n3 = member("n3");
    let timeout = ClusterConfig::default().switchover_timeout_ms;
    let mut now = 0;
    while now <= 3 * timeout {
        let d = n3.step(&obs(now, b.clone(), &view, vec![]));
        assert!(!acquires(&d), "at {now} ms: {}", d.reason);
        now += 1_000;
    }
    let by_hand = view.clone().failover_to("n3");
    let d = n3.step(&obs(now, b.clone(), &by_hand, vec![]));
    assert!(acquires(&d), "{}", d.reason);
}

/// Found by review: with no leader, `pgha failover --to n3` promoted n3 although n2, of the
/// same set and reporting, was further ahead: commits n2 alone acknowledged were lost without
/// `--allow-data-loss`. Such a target is refused (by the CLI before it writes the request,
/// and by the target itself); with the flag it runs. A member of the set that does not report
/// cannot be compared: naming a target then stays the operator's way out (see above).
#[test]
fn a_manual_failover_to_a_set_member_behind_another_is_refused_without_allow_data_loss() {
    let n3 = standby(1, 4000, None);
    let view = View::new()
        .with("n2", record(&standby(1, 4500, None), None))
        .with("n3", record(&n3, None))
        .sync_set("n1", &["n2", "n3"]);
    let by_hand = view.clone().failover_to("n3");
    let request = by_hand.0.switchover.clone().unwrap().request;
    assert_eq!(
        switchover::check(&by_hand.0, Lsn(0), &request),
        Err(switchover::Refusal::SynchronousMemberAhead {
            target: name("n3"),
            ahead: name("n2"),
        })
    );
    let mut target = member("n3");
    let d = target.step(&obs(0, n3.clone(), &by_hand, vec![]));
    assert!(!acquires(&d), "{}", d.reason);
    assert_eq!(
        d.reason,
        Reason::SwitchoverRefused(switchover::Refusal::SynchronousMemberAhead {
            target: name("n3"),
            ahead: name("n2"),
        })
    );
    // Withdrawn and recorded, once (the CLI's wait ends with the reason, as when a leader
    // refuses; before, it waited 120 s and the request stayed).
    assert!(has(&d, |a| matches!(a, Action::ClearSwitchover { .. })));
    let recorded = |d: &Decision| {
        d.actions
            .iter()
            .filter(
                |a| matches!(a, Action::RecordHistory(e) if e.kind == EventKind::RequestRefused),
            )
            .count()
    };
    assert_eq!(recorded(&d), 1, "{:?}", d.actions);
    let d = target.step(&obs(100, n3.clone(), &by_hand, vec![]));
    assert_eq!(recorded(&d), 0, "{:?}", d.actions);

    let mut losing = by_hand.clone();
    losing.0.switchover.as_mut().unwrap().request.kind = RequestKind::Failover {
        force: false,
        allow_data_loss: true,
    };
    let d = member("n3").step(&obs(0, n3.clone(), &losing, vec![]));
    assert!(acquires(&d), "{}", d.reason);

    // n2 behind or level: n3 runs.
    let level = by_hand.with("n2", record(&standby(1, 4000, None), None));
    let d = member("n3").step(&obs(0, n3, &level, vec![]));
    assert!(acquires(&d), "{}", d.reason);
}

/// Found by review: n2, of the set, restarted as n1 died and reports its replay position, still
/// climbing through WAL of its own (it received nothing since it started): n3 counted it as
/// where n2's WAL ends and ran ahead of it, though n2 may hold commits it alone confirmed. A
/// position so marked is waited for, as a stale one, until replay stops (or until waiting is
/// given up: then it is a lower bound, as a stale one is).
#[test]
fn a_set_member_still_replaying_its_own_wal_is_waited_for() {
    let n3 = standby(1, 4000, None);
    let replaying = MemberRecord {
        replaying_local_wal: true,
        ..record(&standby(1, 3500, None), None)
    };
    let view = View::new()
        .with("n2", replaying)
        .with("n3", record(&n3, None))
        .sync_set("n1", &["n2", "n3"]);
    let d = member("n3").step(&obs(0, n3.clone(), &view, vec![]));
    assert!(!acquires(&d), "{}", d.reason);
    assert_eq!(
        d.reason,
        Reason::WaitingForPositions {
            unconfirmed: vec![name("n2")],
            replaying: vec![name("n2")],
        }
    );
    says_n2_still_replays(&d.reason);
    // Once the wait is given up (a ttl), n2's position is a lower bound that confirms nothing:
    // n3 may lack commits only n2 confirmed, so it still waits, and says why.
    let mut n3_member = member("n3");
    let ttl = ClusterConfig::default().ttl_ms;
    let mut now = 0;
    while now < ttl {
        let d = n3_member.step(&obs(now, n3.clone(), &view, vec![]));
        assert!(!acquires(&d), "at {now} ms: {}", d.reason);
        now += 500;
    }
    let d = n3_member.step(&obs(now, n3.clone(), &view, vec![]));
    assert!(!acquires(&d), "{}", d.reason);
    assert_eq!(
        d.reason,
        Reason::QuorumIncomplete {
            confirmed: 1,
            needed: 2,
            replaying: vec![name("n2")]
        }
    );
    says_n2_still_replays(&d.reason);
    // Replay stopped further on: n2 is the better.
    let settled = view.with("n2", record(&standby(1, 4500, None), None));
    let d = member("n3").step(&obs(0, n3, &settled, vec![]));
    assert_eq!(d.reason, Reason::Behind { best: name("n2") });
}

/// Panics unless `reason` says n2 still replays WAL of its own.
fn says_n2_still_replays(reason: &Reason) {
    let text = reason.to_string();
    assert!(text.contains("n2 still replaying WAL of its own"), "{text}");
}

/// Found by the fault test `etcd_data_lost` (whole suite, this session): etcd's data went while
/// the leader n3 had just stopped counting n1 (its data directory gone) but still listed it in the
/// store's set, which the others kept deciding with. n3 stepped down; n2, level with it, ranked
/// better (by name), so n3 deferred to n2, and n2 waited for n1's confirmation, which a member
/// without data never gives: nobody led. The set's leader wrote every commit it acknowledged, so
/// a fresh position of it no further than n2's shows n2 holds them all.
#[test]
fn a_member_level_with_the_sets_stepped_down_leader_needs_no_further_quorum() {
    let at = standby(1, 5000, None);
    let mut view = View::new()
        .with("n1", record(&LocalPg::default(), None))
        .with("n2", record(&at, None))
        .with("n3", record(&at, None))
        .sync_set("n3", &["n1", "n2"]);
    let d = member("n3").step(&obs(0, at.clone(), &view, vec![]));
    assert_eq!(d.reason, Reason::Behind { best: name("n2") });
    let d = member("n2").step(&obs(0, at.clone(), &view, vec![]));
    assert!(acquires(&d), "{}", d.reason);
    // The set's leader further than n2: n2 may lack commits n1 confirmed; it waits.
    view = view.with("n3", record(&standby(1, 6000, None), None));
    let d = member("n2").step(&obs(0, at, &view, vec![]));
    assert!(!acquires(&d), "{}", d.reason);
}

/// Found by review: with no leader, a manual failover is held to the last leader's position,
/// and `--force` accepts lag. The set {n3} lost with the leader (no record left), n2, outside
/// the set and 19 MB behind, was refused only as lagging, so `--force` alone promoted it and
/// the commits n3 had confirmed were lost without `--allow-data-loss`. Outside the set is
/// checked first: `--force` is not enough, and its state names `--allow-data-loss`.
#[test]
fn a_member_outside_the_set_and_lagging_needs_allow_data_loss_not_force() {
    let n2_pg = standby(1, 1 << 20, None);
    let view = View::new()
        .with("n2", record(&n2_pg, None))
        .sync_set("n1", &["n3"])
        .led_last("n1", 1, 20 << 20);
    let failover = |force, allow_data_loss| failover_request("n2", force, allow_data_loss);
    let forced = switchover::check(&view.0, Lsn(0), &failover(true, false));
    assert_eq!(
        forced,
        Err(switchover::Refusal::TargetIneligible {
            target: name("n2"),
            why: election::Ineligible::OutsideSyncSet
        })
    );
    let said = forced.unwrap_err().to_string();
    assert!(
        said.contains("--allow-data-loss` promotes it anyway"),
        "{said}"
    );
    assert_eq!(
        switchover::check(&view.0, Lsn(0), &failover(false, true)),
        Ok(name("n2"))
    );
    // its own state, as `pgha status` shows it, names the flag that would work
    let d = member("n2").step(&obs(0, n2_pg, &view, vec![]));
    assert_eq!(
        d.reason,
        Reason::NotEligible(election::Ineligible::OutsideSyncSet)
    );
}

/// A planned switchover to a member outside the set is refused whether or not it lags (it was
/// accepted as merely lagging while lag came first, and then the target refused to take over
/// once the leader had stepped down), and the refusal points to the set, not to a failover
/// losing commits (found by review).
#[test]
fn a_switchover_to_a_member_outside_the_set_is_refused_lagging_or_not() {
    for n3_lsn in [1_000, 1000 << 20] {
        let view = View::led_by("n1", 7, &primary(1, 1000 << 20))
            .with(
                "n2",
                record(&standby(1, 1000 << 20, Some("n1")), Some("n1")),
            )
            .with("n3", record(&standby(1, n3_lsn, Some("n1")), Some("n1")))
            .sync_set("n1", &["n2"]);
        let request = SwitchoverRequest {
            from: Some(name("n1")),
            to: Some(name("n3")),
            kind: RequestKind::Switchover,
            at: None,
        };
        let refused = switchover::check(&view.0, Lsn(1000 << 20), &request);
        assert_eq!(
            refused,
            Err(switchover::Refusal::SwitchoverOutsideSyncSet(name("n3"))),
            "n3 at {n3_lsn}"
        );
        let said = refused.unwrap_err().to_string();
        assert!(
            said.contains("switch over to one of them") && !said.contains("--allow-data-loss"),
            "{said}"
        );
    }
}

/// Found by review: a set left from asynchronous times (leader n1, no member: published in
/// `off`, where failovers never publish one again) restricted a cluster switched to `strict`
/// to that set's leader: n1, a standby behind, was the one member eligible, and n2 and n3
/// would have rewound away what they held beyond it. A set published in `off`, or in `on`
/// with commits waiting for no standby, promises nothing: every standby may run and the most
/// advanced wins. One published in `strict` (or by an older pgha, which did not say) still
/// leaves its leader alone eligible.
#[test]
fn a_set_left_from_asynchronous_times_keeps_nobody_out_in_strict_mode() {
    let n1 = standby(1, 1000, None);
    let (n2, n3) = (standby(1, 5000, None), standby(1, 4000, None));
    for (published_in, promises) in [
        (Some(SyncMode::Off), false),
        (Some(SyncMode::On), false),
        (Some(SyncMode::Strict), true),
        (None, true),
    ] {
        let mut view = leaderless(&n2, &n3, None)
            .with("n1", record(&n1, None))
            .config(|c| c.synchronous_mode = SyncMode::Strict);
        view.0.sync = SyncSet {
            leader: Some(name("n1")),
            members: Default::default(),
            count: 1,
            method: SyncMethod::Priority,
            mode: published_in,
        };
        let d2 = member("n2").step(&obs(0, n2.clone(), &view, vec![]));
        let d1 = member("n1").step(&obs(0, n1.clone(), &view, vec![]));
        if promises {
            assert_eq!(
                d2.reason,
                Reason::NotEligible(election::Ineligible::OutsideSyncSet),
                "{published_in:?}"
            );
            assert!(acquires(&d1), "{published_in:?}: {d1:?}");
        } else {
            assert!(acquires(&d2), "{published_in:?}: {d2:?}");
            assert!(!acquires(&d1), "{published_in:?}: n1 is behind: {d1:?}");
        }
    }
}

/// The leader key gone while its holder may still write (etcd revoked its lease early as its
/// stalled leader resumed, etcd-io/etcd#15247, or a hand deletion: found by
/// `faults::etcd_stalls::etcd_member_disk_stalled`, one acknowledged write lost), `FIRST 1
/// (n2, n3)`: n2 ahead, n3 read in the vacancy but still streaming. Had n2 won on n3's
/// position then, the old primary, as n2's receiver stopped to promote, would have moved the
/// synchronous role to n3 and had commits acknowledged there that n2 lacks. Each standby stops
/// streaming before its position counts, and the election waits until the others' have.
#[test]
fn positions_count_in_a_synchronous_election_only_once_their_streams_are_stopped() {
    let set = |view: &mut View| {
        view.0.sync.members = [name("n2"), name("n3")].into();
        view.0.sync.count = 1;
    };
    let n3_streaming = standby(1, 4000, Some("n1"));
    let mut view = leaderless(&standby(1, 5000, Some("n1")), &n3_streaming, None)
        .config(|c| c.synchronous_mode = SyncMode::On);
    set(&mut view);
    let mut n2 = member("n2");
    let d = n2.step(&obs(0, standby(1, 5000, Some("n1")), &view, vec![]));
    assert_reason!(d, Reason::StoppingStream);
    assert!(has(&d, |a| *a == Action::StopStreaming), "{:?}", d.actions);
    assert!(!acquires(&d));
    // its own stream stopped, n3's still running: n3 could still confirm commits past 4000
    let d = n2.step(&obs(
        100,
        standby(1, 5000, None),
        &view,
        vec![job_done(JobKind::StopStreaming)],
    ));
    assert!(!acquires(&d), "{:?}", d.reason);
    assert!(
        matches!(&d.reason, Reason::WaitingForPositions { unconfirmed, .. } if *unconfirmed == vec![name("n3")]),
        "{:?}",
        d.reason
    );
    // n3's stream stopped: its position is final, and n2's is further
    let mut stopped = leaderless(&standby(1, 5000, None), &standby(1, 4000, None), None)
        .config(|c| c.synchronous_mode = SyncMode::On);
    set(&mut stopped);
    let d = n2
        .clone()
        .step(&obs(200, standby(1, 5000, None), &stopped, vec![]));
    assert!(acquires(&d), "{:?}", d.reason);
    // n3's stream never stops (its receiver frozen: the job cannot end it): 1.2 ttl and a loop
    // into the vacancy, any old primary has stopped writing, and its position counts as read.
    let defaults = ClusterConfig::default();
    let window = defaults.ttl_ms * 6 / 5 + defaults.loop_wait_ms;
    for at in (1..window / 1_000).map(|s| s * 1_000).chain([window - 1]) {
        let d = n2.step(&obs(at, standby(1, 5000, None), &view, vec![]));
        assert!(!acquires(&d), "at {at}: {:?}", d.reason);
    }
    let d = n2.step(&obs(window, standby(1, 5000, None), &view, vec![]));
    assert!(acquires(&d), "{:?}", d.reason);
    // An agent older than the report (no `stream_stopped` in its record) is judged as before.
    let mut old = record(&n3_streaming, None);
    old.stream_stopped = None;
    let mut view = View::new()
        .with("n2", record(&standby(1, 5000, None), None))
        .with("n3", old)
        .config(|c| c.synchronous_mode = SyncMode::On);
    set(&mut view);
    let d = member("n2").step(&obs(0, standby(1, 5000, None), &view, vec![]));
    assert!(acquires(&d), "{:?}", d.reason);
    // Asynchronous mode keeps no such promise: the stream goes on, the election as before.
    let view = leaderless(&standby(1, 5000, Some("n1")), &n3_streaming, None);
    let d = member("n2").step(&obs(0, standby(1, 5000, Some("n1")), &view, vec![]));
    assert!(!has(&d, |a| *a == Action::StopStreaming), "{:?}", d.actions);
    assert!(acquires(&d), "{:?}", d.reason);
}

/// Found by review of the stop above: `pgha failover --to n2` while n1's key was removed and
/// n1 may write on, `FIRST 1 (n2, n3)`. n3, of the set, still streams: the failover waits for
/// its stream to stop (it could confirm commits past its published position), unless the loss
/// is accepted. The named target keeps its own stream (what it confirmed is on it), and a
/// member that is not the target stops its own while the request is pending (it would
/// otherwise hold up an election its target falls back on).
#[test]
fn a_manual_failover_in_a_synchronous_mode_waits_for_the_sets_streams_to_stop() {
    let set = |view: View| {
        let mut view = view
            .config(|c| c.synchronous_mode = SyncMode::On)
            .failover_to("n2");
        view.0.sync.members = [name("n2"), name("n3")].into();
        view.0.sync.count = 1;
        view
    };
    let n2 = standby(1, 5000, Some("n1"));
    let view = set(leaderless(&n2, &standby(1, 4000, Some("n1")), None));
    let d = member("n2").step(&obs(0, n2.clone(), &view, vec![]));
    assert!(!has(&d, |a| *a == Action::StopStreaming), "{:?}", d.actions);
    assert!(!acquires(&d), "{:?}", d.reason);
    assert!(
        matches!(&d.reason, Reason::WaitingForPositions { unconfirmed, .. } if *unconfirmed == vec![name("n3")]),
        "{:?}",
        d.reason
    );
    let d = member("n3").step(&obs(0, standby(1, 4000, Some("n1")), &view, vec![]));
    assert!(has(&d, |a| *a == Action::StopStreaming), "{:?}", d.actions);
    let mut losing = view.clone();
    losing.0.switchover.as_mut().unwrap().request.kind = RequestKind::Failover {
        force: false,
        allow_data_loss: true,
    };
    let d = member("n2").step(&obs(0, n2.clone(), &losing, vec![]));
    assert!(acquires(&d), "{:?}", d.reason);
    let view = set(leaderless(&n2, &standby(1, 4000, None), None));
    let d = member("n2").step(&obs(0, n2, &view, vec![]));
    assert!(acquires(&d), "{:?}", d.reason);
}

/// Found by review: a vacancy's window runs from when this member saw it, not from an earlier
/// one. n2 saw a vacancy, then n1 led again while n2's PostgreSQL did not answer (its steps
/// took the unresponsive way, which returned before anything noted the leader); 20 s later
/// n1's key is removed early while n1 writes on. n3 still streams: n2 must wait for it, not
/// count it as if the vacancy were 21 s old.
#[test]
fn a_vacancy_is_timed_from_when_it_is_seen_not_from_an_earlier_one() {
    let set = |mut view: View| {
        view.0.sync.members = [name("n2"), name("n3")].into();
        view.0.sync.count = 1;
        view.config(|c| c.synchronous_mode = SyncMode::On)
    };
    let mut n2 = member("n2");
    let n3_streaming = standby(1, 4000, Some("n1"));
    let vacancy = set(leaderless(&standby(1, 5000, None), &n3_streaming, None));
    n2.step(&obs(0, standby(1, 5000, None), &vacancy, vec![]));
    let led = set(View::led_by("n1", 9, &primary(1, 6000))
        .with("n2", record(&standby(1, 5000, Some("n1")), Some("n1")))
        .with("n3", record(&n3_streaming, Some("n1"))));
    let unanswering = LocalPg {
        unresponsive: true,
        ..standby(1, 5000, Some("n1"))
    };
    for at in (1..=20).map(|s| s * 1_000) {
        n2.step(&obs(at, unanswering.clone(), &led, vec![]));
    }
    let d = n2.step(&obs(21_000, standby(1, 5000, None), &vacancy, vec![]));
    assert!(!acquires(&d), "{:?}", d.reason);
    assert!(
        matches!(&d.reason, Reason::WaitingForPositions { unconfirmed, .. } if *unconfirmed == vec![name("n3")]),
        "{:?}",
        d.reason
    );
}

/// What design.md called not covered, found since by the simulation's early removals with
/// receivers that cannot be ended (seed 3349: the ttl lowered live from 10 s to 3 s, the
/// leader's renewals unanswered, then its key removed): its last answered renewal was on the
/// longer ttl, so it may write on for most of 10 s after its key went, while a standby whose
/// receiver cannot be ended confirms its commits. The window counts by that ttl for a vacancy
/// begun within two of them after the change, or while it is under way; a later one counts by
/// the new ttl.
#[test]
fn a_ttl_lowered_live_keeps_the_window_of_the_longer_one() {
    let set = |mut view: View, ttl: u64, margin: u64| {
        view.0.sync.members = [name("n2"), name("n3")].into();
        view.0.sync.count = 1;
        view.config(|c| c.synchronous_mode = SyncMode::On)
            .ttl(ttl, margin)
    };
    let n3_streaming = standby(1, 4000, Some("n1"));
    let led = |ttl, margin| {
        set(
            View::led_by("n1", 9, &primary(1, 6000))
                .with("n2", record(&standby(1, 5000, Some("n1")), Some("n1")))
                .with("n3", record(&n3_streaming, Some("n1"))),
            ttl,
            margin,
        )
    };
    let vacancy = |ttl, margin| {
        set(
            leaderless(&standby(1, 5000, None), &n3_streaming, None),
            ttl,
            margin,
        )
    };
    // Acquires once the window of `ttl` ms from the vacancy seen at `from` is over, not before.
    let first_acquisition = |n2: &mut Member, from: u64, view: &View| {
        (from..from + 20_000)
            .step_by(500)
            .find(|at| acquires(&n2.step(&obs(*at, standby(1, 5000, None), view, vec![]))))
            .map(|at| at - from)
    };
    let following = standby(1, 5000, Some("n1"));
    // lowered while n1 leads, its key removed a second later
    let mut n2 = member("n2");
    n2.step(&obs(0, following.clone(), &led(10_000, 2_000), vec![]));
    n2.step(&obs(1_000, following.clone(), &led(3_000, 600), vec![]));
    let waited = first_acquisition(&mut n2, 2_000, &vacancy(3_000, 600));
    assert_eq!(waited, Some(13_000), "10 s * 1.2 and a loop");
    // lowered once the vacancy is under way
    let mut n2 = member("n2");
    n2.step(&obs(0, following.clone(), &led(10_000, 2_000), vec![]));
    n2.step(&obs(
        1_000,
        standby(1, 5000, None),
        &vacancy(10_000, 2_000),
        vec![],
    ));
    let waited = first_acquisition(&mut n2, 2_000, &vacancy(3_000, 600));
    assert_eq!(waited, Some(12_000), "counted from the vacancy seen at 1 s");
    // a vacancy begun two of the old ttls after the change counts by the new one
    let mut n2 = member("n2");
    n2.step(&obs(0, following.clone(), &led(10_000, 2_000), vec![]));
    for at in (1..=21).map(|s| s * 1_000) {
        n2.step(&obs(at, following.clone(), &led(3_000, 600), vec![]));
    }
    let waited = first_acquisition(&mut n2, 22_000, &vacancy(3_000, 600));
    assert_eq!(
        waited,
        Some(5_000),
        "3 s * 1.2 and a loop, in steps of 500 ms"
    );
}
