//! PostgreSQL restarted in place, restarted after a crash, or handed over instead.

use super::*;

/// Issue 14: `pgha restart --in-place` on the leader restarts its PostgreSQL in one job and
/// keeps renewing the lease while it is down: no release, no restart of its own, no failover.
#[test]
fn a_leader_restarted_in_place_keeps_renewing_its_lease() {
    let (mut n1, view) = established_leader();
    let asked = Observation {
        restart_requested: true,
        ..obs(1000, primary(1, 1100), &view, vec![])
    };
    let d = n1.step(&asked);
    assert_eq!(
        d.reason,
        Reason::RestartingInPlace {
            role: StartRole::Primary
        }
    );
    assert!(has(&d, |a| *a == Action::RestartPostgres(StartRole::Primary)));
    // Down while the job runs, past two renewal intervals: renewed, nothing else.
    for now in [2_000, 4_000, 6_000] {
        let d = n1.step(&obs(
            now,
            stopped(primary(1, 1100)),
            &view,
            vec![renewed(now - 1000)],
        ));
        assert!(
            matches!(d.reason, Reason::JobRunning { .. }),
            "{}",
            d.reason
        );
        assert!(
            has(&d, |a| matches!(a, Action::RenewLeader { .. })),
            "{now}: {:?}",
            d.actions
        );
        assert!(
            !has(&d, |a| matches!(
                a,
                Action::ReleaseLeader { .. } | Action::StartPostgres(_) | Action::Demote { .. }
            )),
            "{now}: {:?}",
            d.actions
        );
        assert!(n1.holds_lease(Millis(now)));
    }
    let done = job_done(JobKind::Restart);
    let d = n1.step(&obs(6_500, primary(1, 1200), &view, vec![done]));
    assert_eq!(d.reason, Reason::Leading { standbys: 0 });
}

/// ... and on a streaming standby it restarts it as a standby of the same leader.
#[test]
fn a_streaming_standby_restarted_in_place_follows_the_same_leader() {
    let mut n2 = member("n2");
    let view = View::led_by("n1", 7, &primary(1, 1000));
    let asked = Observation {
        restart_requested: true,
        ..obs(0, standby(1, 1000, Some("n1")), &view, vec![])
    };
    let d = n2.step(&asked);
    let role = StartRole::Standby {
        upstream: Some(name("n1")),
    };
    assert_eq!(d.reason, Reason::RestartingInPlace { role: role.clone() });
    assert!(has(&d, |a| *a == Action::RestartPostgres(role.clone())));
}

/// A standby whose replay PostgreSQL paused because the primary now runs with a higher
/// `max_connections` (raised, and the primary restarted first) replays nothing, and would shut
/// down if promoted: it is restarted, as a standby of the same leader, and says why. Once it
/// replays again it is left alone.
#[test]
fn a_standby_whose_replay_waits_for_the_primarys_settings_is_restarted() {
    let mut n2 = member("n2");
    let view = View::led_by("n1", 7, &primary(1, 1000));
    let mut held = standby(1, 1000, Some("n1"));
    held.replay_held_by = vec!["max_connections".into()];
    let d = n2.step(&obs(0, held, &view, vec![]));
    assert_eq!(
        d.reason,
        Reason::RestartingForPrimarySettings {
            settings: vec!["max_connections".into()]
        }
    );
    let role = StartRole::Standby {
        upstream: Some(name("n1")),
    };
    assert!(has(&d, |a| *a == Action::RestartPostgres(role.clone())));
    assert!(
        d.reason.to_string().contains("max_connections"),
        "{}",
        d.reason
    );
    let done = job_done(JobKind::Restart);
    let d = n2.step(&obs(2000, standby(1, 1000, Some("n1")), &view, vec![done]));
    assert_eq!(d.reason, Reason::Streaming { leader: name("n1") });
    assert!(!has(&d, |a| matches!(a, Action::RestartPostgres(_))));
}

#[test]
fn a_crashed_primary_is_restarted_then_given_up() {
    let (mut n1, view) = established_leader();
    let down = stopped(primary(1, 1000));
    let d = n1.step(&obs(100, down.clone(), &view, vec![]));
    assert_eq!(
        d.actions.last(),
        Some(&Action::StartPostgres(StartRole::Primary))
    );
    let failed = Outcome::Job {
        kind: JobKind::Start,
        result: Err("boom".into()),
    };
    let renewed = renewed(5000);
    let d = n1.step(&obs(5200, down, &view, vec![failed, renewed]));
    assert!(has(&d, |a| matches!(a, Action::ReleaseLeader { .. })));
    assert!(matches!(d.reason, Reason::PrimaryNotRestartable { .. }));
}

#[test]
fn a_crashed_synchronous_primary_hands_over_instead_of_restarting() {
    let mut n1 = member("n1");
    let n2 = standby(1, 1000, Some("n1"));
    let view = View::led_by("n1", 7, &primary(1, 1000))
        .with("n2", record(&n2, Some("n1")))
        .sync_set("n1", &["n2"]);
    n1.step(&obs(0, primary(1, 1000), &view, vec![acquired(0, 7)]));
    let d = n1.step(&obs(100, stopped(primary(1, 1000)), &view, vec![]));
    assert_eq!(d.reason, Reason::SyncPrimaryDownHandingOver);
    assert!(!has(&d, |a| matches!(a, Action::StartPostgres(_))));
    // Its PostgreSQL down, the failsafe promises of its term are given back before the key
    // goes, as on a switchover (found by a distributed campaign, for a stop: the next leader
    // waited a promise out).
    gives_back_promises_then_releases(&d, 7);

    // With no synchronous standby alive there is nobody to hand over to: restart.
    let mut n1 = member("n1");
    let lonely = View(ClusterView {
        members: BTreeMap::new(),
        ..view.0.clone()
    })
    .with("n1", record(&primary(1, 1000), Some("n1")));
    n1.step(&obs(0, primary(1, 1000), &lonely, vec![acquired(0, 7)]));
    let d = n1.step(&obs(100, stopped(primary(1, 1000)), &lonely, vec![]));
    assert_eq!(
        d.actions.last(),
        Some(&Action::StartPostgres(StartRole::Primary))
    );
}
