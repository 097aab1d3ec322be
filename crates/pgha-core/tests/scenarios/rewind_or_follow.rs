//! A former primary or diverged standby rejoining the leader: rewind at once, or just follow.

use super::*;

/// Found by `pgha chaos` (kill -9 of a primary in a synchronous mode): the old primary, back
/// as a standby past the switch point, is stopped to rewind; stopped, it reports its last
/// restartpoint, before the switch point. It must rewind anyway, not follow (and fail to
/// stream for stream_timeout_ms).
#[test]
fn a_member_stopped_for_a_rewind_rewinds_whatever_its_stopped_position_says() {
    let mut n1 = member("n1");
    let view = n2_leads_after(EventKind::Failover);
    let running = standby(1, 6000, None);
    let d = n1.step(&obs(0, running, &view, vec![]));
    assert_eq!(d.reason, Reason::StoppingForRewind { leader: name("n2") });
    let stopped_early = stopped(standby(1, 4500, None));
    let d = n1.step(&obs(
        500,
        stopped_early,
        &view,
        vec![job_done(JobKind::Stop)],
    ));
    assert_eq!(d.reason, Reason::Rewinding { leader: name("n2") });
}

/// Found by `pgha chaos` (a leader's agent paused, asynchronous mode): its supervisor killed
/// PostgreSQL at the lease deadline, after WAL the new leader never received; stopped so, it
/// reports its last checkpoint, before the switch point. It must rewind (which finishes crash
/// recovery first), not follow and fail to stream for stream_timeout_ms.
#[test]
fn a_crashed_former_primary_rewinds_whatever_its_last_checkpoint_says() {
    let mut n1 = member("n1");
    let view = n2_leads_after(EventKind::Failover);
    let killed = LocalPg {
        crashed: true,
        ..stopped(primary(1, 4000))
    };
    let d = n1.step(&obs(0, killed, &view, vec![]));
    assert_eq!(d.reason, Reason::Rewinding { leader: name("n2") });
    // Shut down cleanly at the same position, it just follows.
    let mut n1 = member("n1");
    let d = n1.step(&obs(0, stopped(primary(1, 4000)), &view, vec![]));
    assert_eq!(
        d.actions.last(),
        Some(&Action::Follow { leader: name("n2") })
    );
}

/// Found by `pgha chaos` (distributed, synchronous mode on, kill -9 of the primary): the
/// crashed primary handed the lease over, started as a standby to take part in the election
/// and, probed while it still replayed its own WAL, looked behind the switch point: it
/// followed, and its WAL receiver flapped between streaming and failing without ever reaching
/// stream_timeout_ms. Started from a crash, it must rewind once a leader exists.
#[test]
fn a_crashed_primary_started_to_elect_rewinds_once_a_leader_exists() {
    let mut n1 = member("n1");
    let killed = LocalPg {
        crashed: true,
        ..stopped(primary(1, 4000))
    };
    let d = n1.step(&obs(0, killed, &View::new(), vec![]));
    assert_eq!(d.reason, Reason::StartingToElect);
    let view = n2_leads_after(EventKind::Failover);
    let replaying = LocalPg {
        streaming: false,
        ..standby(1, 4500, None)
    };
    let d = n1.step(&obs(1000, replaying, &view, vec![job_done(JobKind::Start)]));
    assert_eq!(d.reason, Reason::StoppingForRewind { leader: name("n2") });
}

/// Found by `faults::etcd_storage::every_host_loses_power`: a standby that received more of the old
/// primary's WAL than the member promoted (from the old primary, started as a standby to
/// compare after the power came back) is configured for the new leader; its WAL receiver asks,
/// again and again, for the old timeline's WAL past the switch point. That is divergence
/// already: it must rewind now, not wait out stream_timeout_ms (30 s) not streaming.
#[test]
fn a_standby_configured_for_the_leader_past_its_switch_point_rewinds_at_once() {
    let mut n3 = member("n3");
    let view = n2_leads_after(EventKind::Failover);
    let past = LocalPg {
        streaming: false,
        ..standby(1, 6000, Some("n2"))
    };
    let d = n3.step(&obs(0, past, &view, vec![]));
    assert_eq!(d.reason, Reason::StoppingForRewind { leader: name("n2") });
    // Behind the switch point, the same standby waits for its stream as before.
    let mut n3 = member("n3");
    let behind = LocalPg {
        streaming: false,
        ..standby(1, 4000, Some("n2"))
    };
    let d = n3.step(&obs(0, behind, &view, vec![]));
    assert_reason!(d, Reason::NotStreaming { .. });
    assert!(!touches_data(&d));
}

#[test]
fn a_former_primary_behind_the_switch_point_just_follows() {
    let mut n1 = member("n1");
    let view = n2_leads_after(EventKind::Switchover);
    let d = n1.step(&obs(0, stopped(standby(1, 5000, None)), &view, vec![]));
    assert_eq!(
        d.actions.last(),
        Some(&Action::Follow { leader: name("n2") })
    );
}

#[test]
fn a_standby_does_not_rewind_from_a_leader_that_is_merely_down() {
    let mut n2 = member("n2");
    let mut leader = record(&primary(1, 9000), Some("n1"));
    leader.running = false;
    let view = View::new().leader("n1", 5).with("n1", leader);
    let not_streaming = LocalPg {
        streaming: false,
        ..standby(1, 9000, Some("n1"))
    };
    n2.step(&obs(0, not_streaming.clone(), &view, vec![]));
    let d = n2.step(&obs(120_000, not_streaming, &view, vec![]));
    assert_reason!(d, Reason::NotStreaming { .. });
    assert!(!touches_data(&d));
}

/// Issue 9, item 6: a standby whose link to a healthy primary is cut (the store still
/// answers) waits however long the cut lasts; only a leader it can reach and that still
/// refuses its stream makes it rewind.
#[test]
fn a_standby_that_cannot_reach_a_healthy_leader_waits_instead_of_rewinding() {
    let leader = record(&primary(1, 9000), Some("n1"));
    let view = View::new().leader("n1", 5).with("n1", leader);
    let not_streaming = LocalPg {
        streaming: false,
        ..standby(1, 9000, Some("n1"))
    };
    let at = |now: u64, reachable: Option<bool>| Observation {
        leader_reachable: reachable,
        ..obs(now, not_streaming.clone(), &view, vec![])
    };
    let mut n2 = member("n2");
    n2.step(&at(0, Some(false)));
    for now in [1_000, 31_000, 120_000, 600_000] {
        let d = n2.step(&at(now, Some(false)));
        assert_reason!(d, Reason::LeaderUnreachable { .. });
        assert!(!touches_data(&d));
    }
    // The link is back: a fresh WAL receiver now (the old one may sit in TCP retries for
    // minutes), and a whole stream timeout for it (found by the standby-link fault test: it
    // rewound right after the heal).
    let d = n2.step(&at(601_000, Some(true)));
    assert_reason!(d, Reason::NotStreaming { .. });
    assert!(has(&d, |a| *a == Action::RestartWalReceiver));
    let d = n2.step(&at(620_000, Some(true)));
    assert!(!has(&d, |a| matches!(
        a,
        Action::StopPostgres(_) | Action::Rewind { .. } | Action::RestartWalReceiver
    )));
    // Reachable and still refused past the stream timeout: treated as diverged.
    let d = n2.step(&at(632_000, Some(true)));
    assert_eq!(d.reason, Reason::StoppingForRewind { leader: name("n1") });
}

#[test]
fn no_rewind_is_decided_against_a_leader_still_promoting() {
    let mut n1 = member("n1");
    // The new leader n3 still reports a stale, older timeline while it promotes.
    let promoting = record(&standby(2, 9000, None), None);
    let view = View::new().leader("n3", 30).with("n3", promoting);
    let d = n1.step(&obs(0, stopped(standby(3, 9500, None)), &view, vec![]));
    assert_eq!(
        d.reason,
        Reason::WaitingForLeaderToPromote { leader: name("n3") }
    );
    assert!(!has(&d, |a| matches!(
        a,
        Action::Rewind { .. } | Action::StopPostgres(_)
    )));
}

#[test]
fn a_restarted_former_primary_that_follows_records_its_rejoin() {
    let mut n1 = member("n1");
    let view = n2_leads_after(EventKind::Failover);
    // A fresh agent finds a stopped primary's data directory (no standby.signal).
    let d = n1.step(&obs(0, stopped(primary(1, 5000)), &view, vec![]));
    assert_eq!(
        d.actions.last(),
        Some(&Action::Follow { leader: name("n2") })
    );
    let done = job_done(JobKind::Follow);
    let d = n1.step(&obs(500, standby(2, 9000, Some("n2")), &view, vec![done]));
    assert!(
        has(
            &d,
            |a| matches!(a, Action::RecordHistory(e) if e.kind == EventKind::RejoinFollow)
        ),
        "{:?}",
        d.actions
    );
}
