//! Unit tests of what the CLI prints: tables, history, settings, topology.

use super::*;
use crate::topology::render_topology;
use pgha_core::{ClusterConfig, EventKind, HistoryEvent, Lsn, MemberName, Timeline};
use pgha_host::status::{MemberStatus, ProxyStatus, Role, State};

/// Issue 14: the history's columns line up whatever the members are called.
#[test]
fn history_columns_line_up_with_long_member_names() {
    let entry = |from: &str, to: &str| HistoryEntry {
        at: "2026-12-01T03:00:00Z".into(),
        event: HistoryEvent {
            kind: EventKind::Failover,
            from: Some(MemberName::new(from)),
            to: Some(MemberName::new(to)),
            timeline: Timeline(12),
            lsn: Lsn(0x3000_0000),
            reason: "lease expired".into(),
        },
    };
    let text = render_history(&[
        entry("n1", "db_eu_west_2_replica"),
        entry("db_eu_west_2_replica", "n1"),
    ]);
    let why: Vec<Option<usize>> = text
        .lines()
        .map(|l| l.find("WHY").or_else(|| l.find("lease expired")))
        .collect();
    assert_eq!(why.len(), 3, "{text}");
    assert!(why.iter().all(|w| w.is_some() && *w == why[0]), "{text}");
    assert!(text.lines().all(|l| l == l.trim_end()), "{text}");
}

fn cascade() -> ClusterStatus {
    let member = |name: &str, role: Role, upstream: Option<&str>, sysid: &str| MemberStatus {
        timeline: Some(1),
        server_version: Some("17.2".into()),
        system_identifier: Some(sysid.into()),
        upstream: upstream.map(String::from),
        ..MemberStatus::new(
            name,
            "127.0.0.1",
            1,
            role,
            if role == Role::Primary {
                State::Running
            } else {
                State::Streaming
            },
        )
    };
    ClusterStatus {
        cluster: "c".into(),
        switchover: None,
        leader: Some("n1".into()),
        managed: true,
        paused: false,
        members: vec![
            member("n1", Role::Primary, None, "42"),
            member("n2", Role::Standby, Some("n1"), "42"),
            member("n3", Role::Standby, Some("n2"), "42"),
            member("n4", Role::Standby, None, "42"),
        ],
        proxy: ProxyStatus {
            rw: String::new(),
            ro: String::new(),
            listeners: None,
        },
        synchronous: None,
    }
}

/// Issue 14: `pgha status --topology` draws who streams from whom under the leader.
#[test]
fn topology_is_a_tree_under_the_leader() {
    let text = render_topology(&cascade());
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "n1 (primary, running)", "{text}");
    assert_eq!(lines[1], "└── n2 (standby, streaming)", "{text}");
    assert_eq!(lines[2], "    └── n3 (standby, streaming)", "{text}");
    assert!(
        lines[3].starts_with("n4 (standby, streaming) — not streaming"),
        "{text}"
    );
}

/// Issue 14: the header names the PostgreSQL version and system identifier, and warns
/// when the members disagree.
#[test]
fn the_header_names_the_version_and_warns_on_disagreement() {
    let mut status = cascade();
    let text = render_table(&status);
    assert!(
        text.lines()
            .next()
            .unwrap()
            .ends_with("PostgreSQL 17.2, system 42"),
        "{text}"
    );
    status.members[3].system_identifier = Some("7".into());
    let text = render_table(&status);
    assert!(text.contains("WARNING: the members differ"), "{text}");
    assert!(text.contains("n4 17.2 (7)"), "{text}");
}

/// A rolling upgrade: the members' agents publish different pgha versions (an older one
/// publishes none); the table says which runs what, and nothing when they agree.
#[test]
fn agents_of_different_pgha_versions_are_named() {
    let mut status = cascade();
    for m in &mut status.members {
        m.tags = Some(pgha_core::Tags::default());
        m.pgha_version = Some("0.2.0".into());
    }
    assert!(!render_table(&status).contains("pgha agents differ"));
    status.members[1].pgha_version = None;
    status.members[2].pgha_version = Some("0.1.0".into());
    let text = render_table(&status);
    assert!(
        text.contains(
            "pgha agents differ (a rolling upgrade?): n1 0.2.0, n2 older (no version \
             published), n3 0.1.0, n4 0.2.0"
        ),
        "{text}"
    );
    // a member that publishes no record (stopped, its agent gone) says nothing
    status.members[1].tags = None;
    status.members[2].pgha_version = Some("0.2.0".into());
    assert!(!render_table(&status).contains("pgha agents differ"));
}

#[test]
fn settings_print_one_per_line() {
    let text = render_config(&ClusterConfig::default());
    assert!(text.contains("synchronous_mode"), "{text}");
    assert!(text.lines().all(|l| l.contains(" = ")), "{text}");
}

#[test]
fn human_bytes_reads_well() {
    assert_eq!(human_bytes(0), "0 B");
    assert_eq!(human_bytes(2048), "2.0 kB");
    assert_eq!(human_bytes(5 * 1024 * 1024), "5.0 MB");
}

/// Issue 14: `pgha switchover --at` reads instants and delays, and refuses the rest.
#[test]
fn scheduled_instants_are_read_or_refused() {
    assert_eq!(parse_when("2026-12-01T03:00:00Z").unwrap(), 1_796_094_000);
    assert_eq!(utc(1_796_094_000), "2026-12-01T03:00:00Z");
    let soon = parse_when("+30m").unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!((now + 1799..=now + 1801).contains(&soon), "{soon} vs {now}");
    assert!(parse_when("tomorrow").is_err());
    assert!(parse_when("+soon").is_err());
}
