//! Replication slots kept or dropped, and settings pgha owns reset.

use super::*;

/// Issue 9, item 6: the slot of a member whose key expired (its host rebooting for longer than
/// a ttl) is kept for `member_slots_ttl_ms`, so it resumes from its WAL instead of rewinding.
#[test]
fn the_leader_keeps_an_absent_members_slot_for_member_slots_ttl() {
    let (mut n1, view) = established_leader();
    let with_slot = LocalPg {
        slots: vec![name("n2")],
        ..primary(1, 1000)
    };
    let ttl = ClusterConfig::default().member_slots_ttl_ms;
    let mut now = 1000;
    while now < 1000 + ttl {
        let d = n1.step(&obs(now, with_slot.clone(), &view, vec![renewed(now)]));
        assert!(
            !has(&d, |a| matches!(a, Action::DropSlots { .. })),
            "dropped at {now} ms"
        );
        now += 60_000;
    }
    let d = n1.step(&obs(
        1000 + ttl,
        with_slot,
        &view,
        vec![renewed(1000 + ttl)],
    ));
    assert!(has(&d, |a| *a
        == Action::DropSlots {
            names: vec![name("n2")]
        }));
}

/// A former primary streaming from the new leader drops the slots it made while it led:
/// nobody streams from a standby, so they would hold its WAL until its disk is full.
#[test]
fn a_streaming_standby_drops_the_slots_it_made_as_leader() {
    let mut n1 = member("n1");
    let view = View::led_by("n2", 9, &primary(2, 2000));
    let demoted = LocalPg {
        slots: vec![name("n2"), name("n3")],
        ..standby(2, 2000, Some("n2"))
    };
    let d = n1.step(&obs(0, demoted.clone(), &view, vec![]));
    assert!(
        has(&d, |a| *a
            == Action::DropSlots {
                names: vec![name("n2"), name("n3")]
            }),
        "{:?}",
        d.actions
    );
    // Not yet streaming (it may still rewind or be promoted): nothing is dropped.
    let not_streaming = LocalPg {
        streaming: false,
        ..demoted
    };
    let d = member("n1").step(&obs(0, not_streaming, &view, vec![]));
    assert!(!has(&d, |a| matches!(a, Action::DropSlots { .. })));
}

/// A parameter pgha owns set with `ALTER SYSTEM` (postgresql.auto.conf, read after pgha's own
/// file) is reset, on a leader as on a standby; not while the cluster is paused, nor while
/// PostgreSQL is down.
#[test]
fn a_setting_pgha_owns_changed_by_alter_system_is_reset() {
    let undo = |d: &Decision| {
        d.actions
            .iter()
            .find_map(|a| match a {
                Action::UndoAlterSystem { parameters } => Some(parameters.clone()),
                _ => None,
            })
            .unwrap_or_default()
    };
    let altered = |pg: LocalPg| LocalPg {
        altered_by_alter_system: vec!["synchronous_commit".into()],
        ..pg
    };
    let (mut n1, view) = established_leader();
    let d = n1.step(&obs(100, altered(primary(1, 1000)), &view, vec![]));
    assert_eq!(undo(&d), ["synchronous_commit"]);
    let mut n2 = member("n2");
    let standby_view = View::led_by("n1", 7, &primary(1, 1000));
    let d = n2.step(&obs(
        0,
        altered(standby(1, 900, Some("n1"))),
        &standby_view,
        vec![],
    ));
    assert_eq!(undo(&d), ["synchronous_commit"]);
    let d = n2.step(&obs(
        1000,
        altered(stopped(standby(1, 900, None))),
        &standby_view,
        vec![],
    ));
    assert!(undo(&d).is_empty(), "{:?}", d.actions);
    let mut paused = standby_view.clone();
    paused.0.config.paused = true;
    let d = member("n3").step(&obs(
        0,
        altered(standby(1, 900, Some("n1"))),
        &paused,
        vec![],
    ));
    assert!(undo(&d).is_empty(), "{:?}", d.actions);
}
