use super::*;

/// Found by review: a standby restarted just as its leader died reports its replay
/// position, still climbing through its own WAL, and an election counted it as where its
/// WAL ends (a member with less could win over commits only it confirmed). Such a position
/// is marked a lower bound until replay stops moving.
#[test]
fn a_standby_replaying_its_own_wal_is_marked_until_replay_stops() {
    let restarted = PgState {
        in_recovery: true,
        receive_lsn: None,
        replay_lsn: Some(4_000),
        ..PgState::default()
    };
    assert!(replaying_local_wal(&restarted, None, false), "first probe");
    assert!(
        replaying_local_wal(&restarted, Some(3_000), false),
        "moving"
    );
    assert!(
        !replaying_local_wal(&restarted, Some(4_000), false),
        "stopped"
    );
    assert!(replaying_local_wal(&restarted, Some(4_000), true), "held");
    let streaming = PgState {
        receive_lsn: Some(4_500),
        ..restarted.clone()
    };
    assert!(!replaying_local_wal(&streaming, None, false), "received");
    let primary = PgState {
        in_recovery: false,
        ..restarted
    };
    assert!(!replaying_local_wal(&primary, None, false));
}

/// Replay held (a delay, a query in conflict with it) stands still between probes short
/// of the WAL the standby holds: it was taken for the end, and a member with less WAL won
/// the election over commits only this one confirmed
/// (`faults::replay::a_synchronous_standby_restarted_with_its_replay_held_is_waited_for`).
/// Held, it stays marked however still; waiting for WAL, it is at its end. Neither (a slow
/// `restore_command` between the retries): the replay's movement decides, so a member
/// that is at its end is not marked for good (found by review).
#[test]
fn a_standby_whose_replay_is_held_is_marked_however_still() {
    let held = PgState {
        in_recovery: true,
        receive_lsn: None,
        replay_lsn: Some(4_000),
        startup: Some(StartupActivity::Held),
        ..PgState::default()
    };
    assert!(replaying_local_wal(&held, Some(4_000), false), "held");
    let at_end = PgState {
        startup: Some(StartupActivity::WaitingForWal),
        ..held.clone()
    };
    assert!(!replaying_local_wal(&at_end, None, false), "first probe");
    assert!(!replaying_local_wal(&at_end, Some(3_000), false), "moved");
    let restoring = PgState {
        startup: Some(StartupActivity::Other),
        ..held.clone()
    };
    assert!(replaying_local_wal(&restoring, Some(3_000), false), "moved");
    assert!(
        !replaying_local_wal(&restoring, Some(4_000), false),
        "still"
    );
    let streaming = PgState {
        receive_lsn: Some(4_500),
        ..held
    };
    assert!(!replaying_local_wal(&streaming, None, false), "received");
}
