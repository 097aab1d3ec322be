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

/// Found by review: with TLS to IP addresses, a standby's conninfo names its upstream member
/// as `host` (for the certificate) and the IP as `hostaddr`, and PostgreSQL reports the sender
/// as `n2:5432`: it matched no member's address, so an agent restarted beside a streaming
/// standby never learned its upstream (a needless reconfiguration, or none at all while paused,
/// and a record saying it streams from nobody). An address still wins over a name.
#[test]
fn the_sender_is_found_by_address_or_by_the_member_name_tls_connects_to() {
    let with_address = |address: &str| pgha_core::MemberRecord {
        addresses: [(
            crate::spec::POSTGRES_ADDRESS.to_string(),
            address.to_string(),
        )]
        .into(),
        ..pgha_core::MemberRecord::default()
    };
    let mut view = ClusterView::default();
    view.members
        .insert("n1".into(), with_address("10.0.0.1:5432"));
    view.members
        .insert("n2".into(), with_address("10.0.0.2:5432"));
    let at =
        |view: &ClusterView, address: &str| member_at(Some(view), address).map(|n| n.to_string());
    assert_eq!(at(&view, "10.0.0.2:5432").as_deref(), Some("n2"));
    assert_eq!(
        at(&view, "n2:5432").as_deref(),
        Some("n2"),
        "TLS: host=n2 hostaddr=10.0.0.2"
    );
    assert_eq!(at(&view, "n2:5433"), None, "another port");
    assert_eq!(at(&view, "n9:5432"), None);
    // A member whose name is another's host name: the address decides.
    view.members.insert("n3".into(), with_address("n1:5432"));
    assert_eq!(at(&view, "n1:5432").as_deref(), Some("n3"));
}
