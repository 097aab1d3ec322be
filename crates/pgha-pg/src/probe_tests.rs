//! Unit tests of `probe.rs`: LSN formatting, WAL stall detection, quoting, a real standby's
//! wait for WAL.

use super::*;

#[test]
fn formats_lsns_like_postgres() {
    assert_eq!(format_lsn(0x3000060), "0/3000060");
    assert_eq!(format_lsn((1u64 << 32) | 0xAB), "1/AB");
}

#[test]
fn wal_waits_only_while_a_write_or_sync_is_under_way() {
    let primary = |waits, flush| PgState {
        server_version_num: 150000,
        timeline: Some(1),
        current_lsn: Some(flush),
        flush_lsn: Some(flush),
        wal_io_waits: waits,
        ..PgState::default()
    };
    assert_eq!(primary(0, 0x2000000).wal_waiting_at(), None);
    assert_eq!(primary(2, 0x2000028).wal_waiting_at(), Some(0x2000028));
}

/// A standby whose WAL went past the point where its upstream's new timeline forked fetches
/// that timeline's history file, then restarts a receiver on its old timeline every few
/// hundred ms, each one "streaming" for an instant before the upstream ends it: not streaming
/// (before: each instant restarted the stream timeout, and it never rewound).
#[test]
fn a_receiver_on_an_older_timeline_than_the_standby_knows_is_not_streaming() {
    let standby = |received: Option<u32>, known: u32| PgState {
        in_recovery: true,
        server_version_num: 150000,
        timeline: Some(known),
        receive_lsn: Some(0x5000000),
        replay_lsn: Some(0x506BF10),
        wal_receiver_status: Some("streaming".into()),
        received_timeline: received,
        upstream: Some("10.0.0.2:5432".into()),
        ..PgState::default()
    };
    assert!(!standby(Some(1), 2).is_streaming());
    assert!(standby(Some(2), 2).is_streaming());
    assert!(standby(None, 2).is_streaming());
    let stopped = PgState {
        wal_receiver_status: Some("waiting".into()),
        ..standby(Some(2), 2)
    };
    assert!(!stopped.is_streaming());
    // Its own WAL is on the timeline it receives, not on the newest whose history it holds (found
    // by faults::etcd_storage::every_host_loses_power: taken for timeline 2, it was judged able to
    // follow, and waited out the stream timeout before it rewound); without a receiver, the newest
    // it knows of counts.
    assert_eq!(standby(Some(1), 2).wal_timeline(), Some(1));
    assert_eq!(standby(Some(2), 2).wal_timeline(), Some(2));
    assert_eq!(standby(None, 2).wal_timeline(), Some(2));
}

#[test]
fn quotes() {
    assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
    assert_eq!(quote_literal("it's"), "'it''s'");
}

/// A real standby with nothing more to replay (no upstream, no archive) is seen waiting for
/// WAL: the wait events the probe reads are PostgreSQL's own (a renamed one would leave every
/// restarted standby marked as still replaying its own WAL).
#[tokio::test]
async fn a_standby_at_the_end_of_its_wal_is_seen_waiting_for_more() {
    let standby = crate::test_standby::TestStandby::new("n2").await;
    standby.start().await;
    let client = crate::test_standby::client(&standby.inst).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let state = probe(&client, "n2").await.unwrap();
        assert!(state.in_recovery);
        if state.startup == Some(StartupActivity::WaitingForWal) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never seen waiting for WAL: {state:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    drop(client);
    standby.pg_ctl(&["-m", "fast", "-w", "stop"]).await;
}
