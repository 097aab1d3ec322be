//! Unit tests of `probe.rs`: LSN formatting, WAL stall detection, quoting.

use super::*;

#[test]
fn formats_lsns_like_postgres() {
    assert_eq!(format_lsn(0x3000060), "0/3000060");
    assert_eq!(format_lsn((1u64 << 32) | 0xAB), "1/AB");
}

#[test]
fn wal_waits_only_while_a_write_or_sync_is_under_way() {
    let primary = |waits, flush| PgState {
        in_recovery: false,
        server_version_num: 150000,
        system_identifier: String::new(),
        timeline: Some(1),
        current_lsn: Some(flush),
        flush_lsn: Some(flush),
        wal_io_waits: waits,
        receive_lsn: None,
        replay_lsn: None,
        wal_receiver_status: None,
        upstream: None,
        replication: Vec::new(),
        sync_names: String::new(),
    };
    assert_eq!(primary(0, 0x2000000).wal_waiting_at(), None);
    assert_eq!(primary(2, 0x2000028).wal_waiting_at(), Some(0x2000028));
}

#[test]
fn quotes() {
    assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
    assert_eq!(quote_literal("it's"), "'it''s'");
}
