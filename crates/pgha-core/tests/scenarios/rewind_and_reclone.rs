//! Rewinds and re-clones that change nothing, fail, or were cut short, and what follows.

use super::*;

#[test]
fn a_diverged_former_primary_rewinds_and_recloning_moves_data_aside() {
    let mut n1 = member("n1");
    let view = n2_leads_after(EventKind::Failover);
    // n1 wrote past 5000 on timeline 1 before it died.
    let old = stopped(primary(1, 6000));
    let d = n1.step(&obs(0, old.clone(), &view, vec![]));
    assert_eq!(d.reason, Reason::Rewinding { leader: name("n2") });
    let failed = Outcome::Job {
        kind: JobKind::Rewind,
        result: Err("no common ancestor".into()),
    };
    let d = n1.step(&obs(1000, old, &view, vec![failed]));
    assert_eq!(
        d.actions.last(),
        Some(&Action::Reclone {
            from: name("n2"),
            move_aside: true
        })
    );
}

/// n3, a standby of n1 (timeline 1), promoted by hand behind pgha's back (timeline 2 from
/// 5000) and demoted by its agent: it runs as a standby of n1 again, on timeline 2, and cannot
/// stream. It stops and rewinds; `rewound` is what it looks like once the rewind succeeded.
/// The member, and its decision then (at 1000 ms).
fn promoted_by_hand_then_rewound(rewound: LocalPg) -> (Member, Decision) {
    let mut n3 = member("n3");
    let view = View::led_by("n1", 7, &primary(1, 6000));
    let diverged = LocalPg {
        streaming: false,
        ..standby(2, 5000, Some("n1"))
    };
    let d = n3.step(&obs(0, diverged, &view, vec![]));
    assert_eq!(d.reason, Reason::StoppingForRewind { leader: name("n1") });
    let d = n3.step(&obs(
        500,
        stopped(standby(1, 4000, None)),
        &view,
        vec![job_done(JobKind::Stop)],
    ));
    assert_eq!(d.reason, Reason::Rewinding { leader: name("n1") });
    let d = n3.step(&obs(1000, rewound, &view, vec![job_done(JobKind::Rewind)]));
    (n3, d)
}

/// Found by `faults::impostors::a_standby_promoted_by_hand_takes_no_write_and_rejoins`: pg_rewind
/// of PostgreSQL 15 and older takes the target's timeline from its last checkpoint; a promotion not
/// yet checkpointed (made by hand, then demoted by pgha) reads as "same timeline, no rewind
/// required", and the member came back diverged. It rewound again, and again, twice a second, each
/// time recording "rejoined" in the history, and never streamed. A rewind that brings the member
/// back on the timeline it diverged on, where it cannot stream for the stream timeout, changed
/// nothing: it re-clones (the data moved aside), and records no rejoin until it has one.
#[test]
fn a_rewind_that_changed_nothing_is_followed_by_a_reclone_not_another_rewind() {
    let unchanged = LocalPg {
        streaming: false,
        ..standby(2, 5000, Some("n1"))
    };
    let (mut n3, d) = promoted_by_hand_then_rewound(unchanged.clone());
    assert!(!touches_data(&d), "{d:?}");
    assert_eq!(recorded(&d), None, "a rejoin recorded");
    let view = View::led_by("n1", 7, &primary(1, 6000));
    let timeout = ClusterConfig::default().stream_timeout_ms;
    let d = n3.step(&obs(1000 + timeout, unchanged.clone(), &view, vec![]));
    assert!(!touches_data(&d), "{d:?}");
    let d = n3.step(&obs(1001 + timeout, unchanged, &view, vec![]));
    assert_eq!(
        d.reason,
        Reason::RecloningAfterIneffectiveRewind {
            source: name("n1"),
            timeline: Timeline(2)
        }
    );
    assert!(has(&d, |a| *a
        == Action::Reclone {
            from: name("n1"),
            move_aside: true
        }));
    assert_eq!(recorded(&d), None, "a rejoin recorded");
    // A rewind that worked brings it onto the leader's timeline: it follows, and says so.
    let (_, d) = promoted_by_hand_then_rewound(standby(1, 6000, Some("n1")));
    assert!(!touches_data(&d), "{d:?}");
    let event = recorded(&d).expect("the rejoin in the history");
    assert_eq!(event.kind, EventKind::RejoinRewind);
}

/// Found by `pgha chaos` (seed 1203): a primary crashed on timeline 36, another took over on
/// 37. Rewound, it started and replayed its timeline 36 up to the point where 37 forked, its
/// WAL receiver still on 36 (not streaming yet); the first look after the start took that for
/// a rewind that changed nothing, and it re-cloned at once, its data moved aside. The second
/// time it happened it kept two moved-aside directories and refused to re-clone again: out of
/// the cluster for good. A rewind is judged ineffective only once the member could not stream
/// for the stream timeout; one that streams the leader's timeline soon after rejoined.
#[test]
fn a_rewound_member_replaying_its_old_timeline_to_the_fork_is_not_recloned() {
    let mut n1 = member("n1");
    // n2 took over on timeline 2 from 5000; n1, the old primary, wrote on to 6000 before it
    // crashed, and was started again as a standby of n2.
    let view = n2_leads_after(EventKind::Failover);
    let diverged = LocalPg {
        streaming: false,
        ..standby(1, 6000, Some("n2"))
    };
    let d = n1.step(&obs(0, diverged, &view, vec![]));
    assert_eq!(d.reason, Reason::StoppingForRewind { leader: name("n2") });
    let stopped_n1 = stopped(standby(1, 6000, None));
    let d = n1.step(&obs(500, stopped_n1, &view, vec![job_done(JobKind::Stop)]));
    assert_eq!(d.reason, Reason::Rewinding { leader: name("n2") });
    // Rewound and started: it replays timeline 1 up to the fork, its receiver on timeline 1.
    let replaying = LocalPg {
        streaming: false,
        ..standby(1, 4000, Some("n2"))
    };
    let rewound = vec![job_done(JobKind::Rewind)];
    let d = n1.step(&obs(1000, replaying.clone(), &view, rewound));
    assert!(
        !touches_data(&d),
        "re-cloned while replaying to the fork: {d:?}"
    );
    assert_eq!(recorded(&d), None, "a rejoin recorded before it streams");
    let d = n1.step(&obs(2000, replaying, &view, vec![]));
    assert!(
        !touches_data(&d),
        "re-cloned while replaying to the fork: {d:?}"
    );
    // Past the fork it streams n2's timeline: rejoined.
    let d = n1.step(&obs(2500, standby(2, 9000, Some("n2")), &view, vec![]));
    assert!(!touches_data(&d), "{d:?}");
    let event = recorded(&d).expect("the rejoin in the history");
    assert_eq!(event.kind, EventKind::RejoinRewind);
}

/// Found by `faults::disk_full::leader_data_disk_full`: the old primary's disk is full, so its
/// rewind fails and the re-clone that follows finds no room for a copy beside the data it would
/// move aside. A full disk is no divergence: the data stays in place, the member says why and waits
/// a ttl, then tries the rewind again, not a re-clone.
#[test]
fn a_reclone_without_room_keeps_the_data_in_place_and_rewinds_later() {
    let mut n1 = member("n1");
    let view = n2_leads_after(EventKind::Failover);
    let old = stopped(primary(1, 6000));
    n1.step(&obs(0, old.clone(), &view, vec![]));
    let failed = Outcome::Job {
        kind: JobKind::Rewind,
        result: Err("could not write lock file: No space left on device".into()),
    };
    let d = n1.step(&obs(1000, old.clone(), &view, vec![failed]));
    assert!(has(&d, |a| matches!(
        a,
        Action::Reclone {
            move_aside: true,
            ..
        }
    )));
    let why = "not re-cloning: no room".to_string();
    let no_room = Outcome::Job {
        kind: JobKind::Reclone,
        result: Err(JobFailure::NoRoom(why.clone())),
    };
    let d = n1.step(&obs(2000, old.clone(), &view, vec![no_room]));
    assert_eq!(d.reason, Reason::WaitingForRoom { why: why.clone() });
    assert!(
        d.actions.iter().all(|a| a.job().is_none()),
        "{:?}",
        d.actions
    );
    let ttl = ClusterConfig::default().ttl_ms;
    assert!(d.wake_at <= Millis(2000 + ttl));
    let d = n1.step(&obs(2000 + ttl - 1, old.clone(), &view, vec![]));
    assert_eq!(d.reason, Reason::WaitingForRoom { why });
    let d = n1.step(&obs(2000 + ttl, old, &view, vec![]));
    assert_eq!(d.reason, Reason::Rewinding { leader: name("n2") });
}

/// A rewind that failed because the member's disk is full (found by the whole suite: the disk
/// was freed between that failure and the re-clone it led to, which then found room and moved
/// the intact data aside) is no divergence either: no re-clone, wait a ttl, rewind again.
#[test]
fn a_rewind_that_failed_on_a_full_disk_is_tried_again_not_replaced_by_a_reclone() {
    let mut n1 = member("n1");
    let view = n2_leads_after(EventKind::Failover);
    let old = stopped(primary(1, 6000));
    let d = n1.step(&obs(0, old.clone(), &view, vec![]));
    assert_eq!(d.reason, Reason::Rewinding { leader: name("n2") });
    let why = "pg_rewind could not run with /m full".to_string();
    let full = Outcome::Job {
        kind: JobKind::Rewind,
        result: Err(JobFailure::NoRoom(why.clone())),
    };
    let d = n1.step(&obs(1000, old.clone(), &view, vec![full]));
    assert_eq!(d.reason, Reason::WaitingForRoom { why });
    assert!(
        d.actions.iter().all(|a| a.job().is_none()),
        "{:?}",
        d.actions
    );
    let ttl = ClusterConfig::default().ttl_ms;
    let d = n1.step(&obs(1000 + ttl, old, &view, vec![]));
    assert_eq!(d.reason, Reason::Rewinding { leader: name("n2") });
    assert!(!has(&d, |a| matches!(a, Action::Reclone { .. })));
}

/// Found by `faults::hosts::leader_host_lossy`: the old primary, on a host losing 30 % of its
/// packets, could not connect to its rewind source within 5 s; that rewind failure led to a
/// re-clone (over the same lossy link), the intact data moved aside. A source that cannot be
/// reached says nothing of this member's data: no re-clone, the rewind is tried again.
#[test]
fn a_rewind_whose_source_could_not_be_reached_is_tried_again_not_replaced_by_a_reclone() {
    let mut n1 = member("n1");
    let view = n2_leads_after(EventKind::Failover);
    let old = stopped(primary(1, 6000));
    let d = n1.step(&obs(0, old.clone(), &view, vec![]));
    assert_eq!(d.reason, Reason::Rewinding { leader: name("n2") });
    for at in [1000, 7000] {
        let unreachable = Outcome::Job {
            kind: JobKind::Rewind,
            result: Err(JobFailure::SourceUnreachable(
                "connect to n2 timed out after 5 s".into(),
            )),
        };
        let d = n1.step(&obs(at, old.clone(), &view, vec![unreachable]));
        assert_eq!(d.reason, Reason::Rewinding { leader: name("n2") });
        assert!(
            has(&d, |a| matches!(a, Action::Rewind { .. })),
            "{:?}",
            d.actions
        );
        assert!(!has(&d, |a| matches!(a, Action::Reclone { .. })));
    }
    // a rewind that ran and failed is another matter: the data may be half rewound
    let failed = Outcome::Job {
        kind: JobKind::Rewind,
        result: Err("pg_rewind exited with 1".into()),
    };
    let d = n1.step(&obs(13000, old, &view, vec![failed]));
    assert!(has(&d, |a| matches!(
        a,
        Action::Reclone {
            move_aside: true,
            ..
        }
    )));
}

/// A pg_rewind of n2's data directory began and did not finish (the agent was killed
/// meanwhile; the restarted agent finds the marker): its files may mix two histories, and its
/// position means nothing. With a leader it re-clones, moving the directory aside (or stays
/// stopped when re-cloning is not allowed); it never starts that directory.
#[test]
fn an_incomplete_rewind_is_recloned_moved_aside_and_never_started() {
    let leader_pg = primary(2, 9_000);
    let mine = LocalPg {
        rewind_incomplete: true,
        ..stopped(standby(1, 8_000, None))
    };
    let view = View::led_by("n1", 7, &leader_pg);
    let d = member("n2").step(&obs(1_000, mine.clone(), &view, vec![]));
    assert!(
        has(&d, |a| *a
            == Action::Reclone {
                from: name("n1"),
                move_aside: true
            }),
        "{:?}: {:?}",
        d.reason,
        d.actions
    );
    let no_reclone = view.config(|c| c.allow_reclone = false);
    let d = member("n2").step(&obs(1_000, mine, &no_reclone, vec![]));
    assert_reason!(d, Reason::RewindFailedRecloneDisabled);
    assert!(
        d.actions.iter().all(|a| a.job().is_none()),
        "{:?}",
        d.actions
    );
}

/// The same directory without a leader: it is not started to compare positions (its position
/// means nothing), and it does not run for leader; it waits for a leader to re-clone from.
#[test]
fn without_a_leader_an_incomplete_rewind_neither_starts_nor_runs() {
    let mine = LocalPg {
        rewind_incomplete: true,
        ..stopped(standby(1, 8_000, None))
    };
    let other = standby(1, 7_000, None);
    let view = View::new()
        .with("n2", record(&mine, None))
        .with("n3", record(&other, None));
    let mut n2 = member("n2");
    for now in [1_000, 40_000] {
        let d = n2.step(&obs(now, mine.clone(), &view, vec![]));
        assert_reason!(d, Reason::RewindIncompleteWaitingForLeader);
        assert!(!acquires(&d), "{:?}", d.actions);
        assert!(
            d.actions.iter().all(|a| a.job().is_none()),
            "{:?}",
            d.actions
        );
    }
}

/// Found by review: a standby (never a primary) whose data could not rejoin was re-cloned,
/// its data moved aside, and the history said nothing of it (only a former primary's re-clone
/// was recorded). Moving a member's data aside is a decision the history explains; a first
/// clone into an empty directory is no rejoin and is not recorded.
#[test]
fn a_standby_recloned_over_its_data_is_recorded_and_a_first_clone_is_not() {
    let leader_pg = primary(2, 9_000);
    let view = View::led_by("n1", 7, &leader_pg);
    let mine = LocalPg {
        rewind_incomplete: true,
        ..stopped(standby(1, 8_000, None))
    };
    let mut n2 = member("n2");
    let d = n2.step(&obs(1_000, mine, &view, vec![]));
    assert!(
        has(&d, |a| *a
            == Action::Reclone {
                from: name("n1"),
                move_aside: true
            }),
        "{:?}",
        d.actions
    );
    let streaming = standby(2, 9_000, Some("n1"));
    let d = n2.step(&obs(
        3_000,
        streaming.clone(),
        &view,
        vec![job_done(JobKind::Reclone)],
    ));
    let event = recorded(&d).expect("the re-clone recorded");
    assert_eq!(event.kind, EventKind::RejoinReclone, "{event:?}");
    assert_eq!(event.from, Some(name("n2")));

    let empty = LocalPg {
        data: DataDir::Missing,
        ..stopped(standby(1, 0, None))
    };
    let mut n3 = member("n3");
    let d = n3.step(&obs(1_000, empty, &view, vec![]));
    assert!(
        has(&d, |a| *a
            == Action::Reclone {
                from: name("n1"),
                move_aside: false
            }),
        "{:?}",
        d.actions
    );
    let d = n3.step(&obs(
        3_000,
        streaming,
        &view,
        vec![job_done(JobKind::Reclone)],
    ));
    assert_eq!(recorded(&d), None, "a first clone recorded as a rejoin");
}
