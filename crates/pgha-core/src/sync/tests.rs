//! Unit tests of the synchronous set: choice, rendering and parsing, and the order of changes.

use super::*;
use crate::config::{ClusterConfig, SyncMethod, SyncMode};
use crate::observe::{MemberRecord, ReplicaState};
use crate::types::{Lsn, MemberName, Tags, Timeline};
use std::collections::BTreeMap;

fn record(priority: u32, nosync: bool) -> MemberRecord {
    MemberRecord {
        running: true,
        in_recovery: true,
        timeline: Timeline(1),
        lsn: Lsn(0),
        replay_lsn: Lsn(0),
        streaming_from: Some("n1".into()),
        tags: Tags {
            priority,
            nosync,
            ..Tags::default()
        },
        leader_seen: Some("n1".into()),
        ..MemberRecord::default()
    }
}

fn replica(name: &str) -> ReplicaState {
    ReplicaState {
        name: name.into(),
        streaming: true,
        flush_lsn: Lsn(0),
        replay_lsn: Lsn(0),
    }
}

fn on(count: u32) -> ClusterConfig {
    ClusterConfig {
        synchronous_mode: SyncMode::On,
        synchronous_count: count,
        ..ClusterConfig::default()
    }
}

#[test]
fn picks_by_priority_then_name_and_skips_nosync() {
    let members = BTreeMap::from([
        ("n2".into(), record(1, false)),
        ("n3".into(), record(5, false)),
        ("n4".into(), record(9, true)),
    ]);
    let replicas = [replica("n2"), replica("n3"), replica("n4")];
    let want = desired(
        &on(1),
        &"n1".into(),
        &replicas,
        &members,
        &SyncApplied::default(),
    );
    assert_eq!(
        want.names,
        vec![MemberName::from("n3"), MemberName::from("n2")]
    );
    assert_eq!(want.to_string(), "FIRST 1 (\"n3\", \"n2\")");
}

/// Found by `faults::hosts::leader_host_lossy`: n1, back on a link losing packets, came first by
/// name and took the synchronous role from n3 the moment it streamed; commits then waited on
/// its acknowledgements for 8.8 s. Among equal priorities the standbys already listed keep
/// their places; a standby that (re)joins comes after them.
#[test]
fn a_standby_that_joins_comes_after_those_already_synchronous() {
    let members = BTreeMap::from([
        ("n1".into(), record(1, false)),
        ("n3".into(), record(1, false)),
        ("n4".into(), record(1, false)),
        ("n5".into(), record(2, false)),
    ]);
    let applied = SyncApplied {
        method: SyncMethod::Priority,
        count: 1,
        names: vec!["n4".into(), "n3".into()],
    };
    let replicas = [replica("n1"), replica("n3"), replica("n4")];
    let want = desired(&on(1), &"n2".into(), &replicas, &members, &applied);
    let names = |v: &[&str]| v.iter().map(|n| MemberName::from(*n)).collect::<Vec<_>>();
    assert_eq!(want.names, names(&["n4", "n3", "n1"]));
    // a higher priority still comes first, incumbent or not
    let replicas = [replica("n1"), replica("n3"), replica("n4"), replica("n5")];
    let want = desired(&on(1), &"n2".into(), &replicas, &members, &applied);
    assert_eq!(want.names, names(&["n5", "n4", "n3", "n1"]));
}

#[test]
fn on_degrades_and_strict_keeps_waiting() {
    let applied = SyncApplied {
        method: SyncMethod::Priority,
        count: 1,
        names: vec!["n2".into()],
    };
    let none = BTreeMap::new();
    assert!(desired(&on(1), &"n1".into(), &[], &none, &applied).is_async());
    let strict = ClusterConfig {
        synchronous_mode: SyncMode::Strict,
        ..on(1)
    };
    assert_eq!(
        desired(&strict, &"n1".into(), &[], &none, &applied),
        applied
    );
}

#[test]
fn strict_never_starts_asynchronous() {
    let strict = ClusterConfig {
        synchronous_mode: SyncMode::Strict,
        ..on(1)
    };
    let members = BTreeMap::from([
        ("n1".into(), record(0, false)),
        ("n2".into(), record(0, false)),
        ("n3".into(), record(0, true)),
    ]);
    let want = desired(
        &strict,
        &"n1".into(),
        &[],
        &members,
        &SyncApplied::default(),
    );
    assert_eq!(want.names, vec![MemberName::from("n2")]);
    assert_eq!(want.count, 1);
    // Alone, it waits on a placeholder that is never published as a member.
    let alone = BTreeMap::from([("n1".into(), record(0, false))]);
    let want = desired(&strict, &"n1".into(), &[], &alone, &SyncApplied::default());
    assert_eq!(want.names, vec![MemberName::from(NO_STANDBY)]);
    assert!(!want.is_async());
    assert!(want.as_set().is_empty());
}

/// Found by the simulation: a `nofailover` standby as the only synchronous one leaves no
/// member that may be promoted in a synchronous mode.
#[test]
fn a_nofailover_standby_is_never_synchronous() {
    let mut members = BTreeMap::new();
    members.insert(MemberName::new("n2"), record(1, false));
    let mut pinned = record(5, false);
    pinned.tags.nofailover = true;
    members.insert(MemberName::new("n3"), pinned);
    let want = desired(
        &on(1),
        &MemberName::new("n1"),
        &[replica("n2"), replica("n3")],
        &members,
        &SyncApplied::default(),
    );
    assert_eq!(want.names, vec![MemberName::new("n2")]);
}

#[test]
fn reads_back_what_it_renders() {
    for applied in [
        SyncApplied::default(),
        SyncApplied {
            method: SyncMethod::Priority,
            count: 1,
            names: vec!["n2".into(), "n3".into()],
        },
        SyncApplied {
            method: SyncMethod::Quorum,
            count: 2,
            names: vec!["n2".into(), "n3".into(), "n4".into()],
        },
    ] {
        assert_eq!(SyncApplied::parse(&applied.to_string()), Some(applied));
    }
    assert_eq!(SyncApplied::parse("*"), None);
    assert_eq!(SyncApplied::parse("FIRST x (n2)"), None);
}

/// Issue 9, item 7: the store's set never lacks a standby PostgreSQL counts.
#[test]
fn the_store_covers_what_postgresql_counts_at_every_step() {
    let old = SyncApplied {
        method: SyncMethod::Priority,
        count: 1,
        names: vec!["n2".into()],
    };
    let new = SyncApplied {
        names: vec!["n3".into()],
        ..old.clone()
    };
    let published = SyncSet {
        leader: Some("n1".into()),
        members: ["n2".into()].into(),
        count: 1,
        method: SyncMethod::Priority,
        mode: None,
    };
    // n3 joins the store first (while PostgreSQL still counts n2 only).
    let SyncStep::Publish(both) = next_step(&"n1".into(), &new, &old, &published) else {
        panic!("an addition must reach the store first");
    };
    assert_eq!(both.members, ["n2".into(), "n3".into()].into());
    // Then PostgreSQL switches to n3, and only then n2 leaves the store.
    assert_eq!(
        next_step(&"n1".into(), &new, &old, &both),
        SyncStep::Apply(new.clone())
    );
    let SyncStep::Publish(only_new) = next_step(&"n1".into(), &new, &new, &both) else {
        panic!("the removal is published once PostgreSQL applied it");
    };
    assert_eq!(only_new.members, ["n3".into()].into());
    assert_eq!(
        next_step(&"n1".into(), &new, &new, &only_new),
        SyncStep::Settled
    );
}

#[test]
fn a_count_change_publishes_the_lower_count_while_under_way() {
    let two = SyncApplied {
        method: SyncMethod::Quorum,
        count: 2,
        names: vec!["n2".into(), "n3".into()],
    };
    let one = SyncApplied {
        count: 1,
        ..two.clone()
    };
    let published = SyncSet {
        leader: Some("n1".into()),
        members: ["n2".into(), "n3".into()].into(),
        count: 2,
        method: SyncMethod::Quorum,
        mode: None,
    };
    // Lowering: ANY 1 needs more members compared at failover: published before applied.
    let SyncStep::Publish(lowered) = next_step(&"n1".into(), &one, &two, &published) else {
        panic!("a lower quorum count reaches the store first");
    };
    assert_eq!(lowered.count, 1);
    assert_eq!(
        next_step(&"n1".into(), &one, &two, &lowered),
        SyncStep::Apply(one.clone())
    );
    assert_eq!(
        next_step(&"n1".into(), &one, &one, &lowered),
        SyncStep::Settled
    );
    // Raising: applied first, published after.
    assert_eq!(
        next_step(&"n1".into(), &two, &one, &lowered),
        SyncStep::Apply(two.clone())
    );
    let SyncStep::Publish(raised) = next_step(&"n1".into(), &two, &two, &lowered) else {
        panic!("the higher count is published once applied");
    };
    assert_eq!(raised.count, 2);
}

/// Found by the simulation (seed 141133): n3 confirmed commits while synchronous, was tagged
/// `nosync`, and the set was emptied once n3 (still streaming) held them: every standby then
/// eligible, the most advanced winning. n1 came back far behind and the set {n1} was published
/// at once: n3 became ineligible, and when the leader died n1 won without those commits. (A
/// first fix made the first members of an empty set wait in mode `on` only; a review found
/// the same loss after a live switch to `strict`, where an empty set leaves only its leader
/// eligible, and the wait starving a set whose standby never caught up.) The first members of
/// a set naming nobody but its leader come with every standby that may hold what was
/// acknowledged, with a count of 1; they leave, and the count rises, by the ordinary wait (a
/// review of this form: a count kept at 2 let two new records elect one of them without the
/// holder's; a holder restarting at that moment was left out).
#[test]
fn the_first_members_of_a_set_naming_only_its_leader_come_with_every_standby() {
    let empty = SyncSet {
        leader: Some("n2".into()),
        members: Default::default(),
        count: 0,
        method: SyncMethod::Priority,
        mode: None,
    };
    let with_n1 = SyncSet {
        members: ["n1".into()].into(),
        count: 1,
        ..empty.clone()
    };
    let nosync = record(1, true);
    let stopped = MemberRecord {
        running: false,
        ..record(1, false)
    };
    let no_data = MemberRecord {
        running: false,
        in_recovery: false,
        ..record(1, false)
    };
    let mut nofailover = record(1, false);
    nofailover.tags.nofailover = true;
    let members = BTreeMap::from([
        ("n1".into(), record(1, false)),
        ("n2".into(), record(1, false)),
        ("n3".into(), nosync),
        ("n4".into(), stopped),
        ("n5".into(), nofailover),
        ("n6".into(), no_data),
    ]);
    let names =
        |set: &SyncSet| -> Vec<String> { set.members.iter().map(|m| m.to_string()).collect() };
    let widened = with_possible_holders(with_n1.clone(), &empty, &members);
    assert_eq!(
        names(&widened),
        ["n1", "n3", "n4"],
        "n2 leads; n4, stopped, may hold them too; n5 not electable; n6 has no data"
    );
    assert_eq!(widened.count, 1);
    // With `synchronous_count` 2, the widened set still needs every record at an election
    // (the last member to leave alone may hold the commits): the count rises later.
    let two = SyncSet {
        count: 2,
        members: ["n1".into(), "n3".into()].into(),
        ..with_n1.clone()
    };
    assert_eq!(with_possible_holders(two, &empty, &members).count, 1);
    // A set naming only its leader (a winner's, before its first standby) is the same.
    let leader_only = SyncSet {
        members: ["n2".into()].into(),
        ..with_n1.clone()
    };
    let mut joining = with_n1.clone();
    joining.members.insert("n2".into());
    let widened = with_possible_holders(joining, &leader_only, &members);
    assert_eq!(names(&widened), ["n1", "n2", "n3", "n4"]);
    // Once a standby is named, additions are published as they are.
    let mut more = with_n1.clone();
    more.members.insert("n5".into());
    assert_eq!(
        with_possible_holders(more.clone(), &with_n1, &members),
        more
    );
    // Emptying is not widened either.
    assert_eq!(
        with_possible_holders(empty.clone(), &with_n1, &members),
        empty
    );
}

/// Found by review: with `synchronous_method = quorum`, the leader asked for asynchronous
/// (mode `off`, or `on` with no standby streaming) as `ANY 0 ()`, and PostgreSQL's empty setting
/// read back as the default method: the two never matched, so the leader applied it again at
/// every step and never published the emptied set (`pgha config set synchronous_mode=off` then
/// failed, the set kept naming a stopped standby). Every asynchronous value is the same.
#[test]
fn an_asynchronous_setting_read_back_matches_the_one_asked_for_in_quorum_mode() {
    let quorum_off = ClusterConfig {
        synchronous_method: SyncMethod::Quorum,
        ..ClusterConfig::default()
    };
    let quorum_on = ClusterConfig {
        synchronous_mode: SyncMode::On,
        ..quorum_off.clone()
    };
    let leader = MemberName::new("n1");
    let members: BTreeMap<MemberName, MemberRecord> =
        [("n2".into(), record(0, false))].into_iter().collect();
    let read_back = SyncApplied::parse("").unwrap();
    let published = SyncSet {
        leader: Some(leader.clone()),
        members: ["n2".into()].into(),
        count: 1,
        method: SyncMethod::Quorum,
        mode: None,
    };
    for config in [&quorum_off, &quorum_on] {
        let want = desired(config, &leader, &[], &members, &read_back);
        assert!(want.is_async(), "{want:?}");
        assert_eq!(want, read_back);
        // Applied: the emptied set is published next, then all is settled.
        let step = next_step(&leader, &want, &read_back, &published);
        let SyncStep::Publish(emptied) = step else {
            panic!(
                "{:?}: {step:?}, not the emptied set",
                config.synchronous_mode
            );
        };
        assert!(emptied.members.is_empty(), "{emptied:?}");
        assert_eq!(
            next_step(&leader, &want, &read_back, &emptied),
            SyncStep::Settled
        );
    }
    let counting = SyncApplied::parse("ANY 1 (\"n2\")").unwrap();
    assert_ne!(counting, read_back);
    assert_ne!(
        counting,
        SyncApplied::parse("FIRST 1 (\"n2\")").unwrap(),
        "a method still tells non-empty settings apart"
    );
}
