//! Synchronous sets sent without an answer: what PostgreSQL may count until a read shows them.

use super::*;

/// A set published by n1: `ANY 1` over `names`.
fn set(names: &[&str]) -> SyncSet {
    SyncSet {
        leader: Some(name("n1")),
        members: names.iter().map(|n| name(n)).collect(),
        count: 1,
        method: SyncMethod::Quorum,
        mode: None,
    }
}

/// What PostgreSQL counts: `ANY 1` over `names`.
fn counting(names: &[&str]) -> SyncApplied {
    SyncApplied {
        method: SyncMethod::Quorum,
        count: 1,
        names: names.iter().map(|n| name(n)).collect(),
    }
}

/// n1 as primary at 5000: n2 streaming, n3 streaming or not, PostgreSQL counting `counted`.
fn pg(n3_streams: bool, counted: &[&str]) -> LocalPg {
    let replica = |n: &str, streaming: bool| ReplicaState {
        name: name(n),
        streaming,
        flush_lsn: Lsn(5000),
        replay_lsn: Lsn(5000),
    };
    LocalPg {
        replicas: vec![replica("n2", true), replica("n3", n3_streams)],
        sync_applied: counting(counted),
        ..primary(1, 5000)
    }
}

fn counts_n3(d: &Decision) -> bool {
    has(
        d,
        |a| matches!(a, Action::SetSync(applied) if applied.names.contains(&name("n3"))),
    )
}

/// Whether `d` publishes `names`, compared against the `sync` key's revision 10 (the read it
/// was decided on: a write whose answer is lost lands only while the key is still there, so
/// once a read shows it moved, nothing sent before can land any more; found by the simulation,
/// seed 11047: an earlier write of the same set, landing late, was taken for the last one, and
/// the set sent between them landed after it).
fn publishes(d: &Decision, names: &[&str]) -> bool {
    has(d, |a| {
        matches!(a, Action::PublishSync { set: s, key_revision: 10, .. }
            if SyncSet { mode: None, ..s.clone() } == set(names))
    })
}

/// n1 leads (term 7) over {n2, n3} as the store's set (revision 10); n3 stops streaming, so
/// PostgreSQL stops counting it and n1 sends {n2}, twice, neither answered (up to 4500).
fn n3_dropped_without_an_answer() -> (Member, View) {
    let mut n1 = member("n1");
    let mut view = quorum_leader_view(5000, 1);
    view.0.sync = set(&["n2", "n3"]);
    view.0.sync_revision = 10;
    n1.step(&obs(
        0,
        pg(true, &["n2", "n3"]),
        &view,
        vec![acquired(0, 7)],
    ));
    // n3 stops streaming: PostgreSQL stops counting it, then the store drops it once n2,
    // which stays, holds the primary's position.
    let d = n1.step(&obs(1000, pg(false, &["n2", "n3"]), &view, vec![]));
    assert!(
        has(&d, |a| *a == Action::SetSync(counting(&["n2"]))),
        "{d:?}"
    );
    let mut sent = Vec::new();
    for t in [2000, 3000, 3500, 4500] {
        let d = n1.step(&obs(t, pg(false, &["n2"]), &view, vec![]));
        sent.push(publishes(&d, &["n2"]));
    }
    // Sent once n2 held the position, and again (after the same wait) while no read shows it
    // landed: the write may have failed for good, and the store would keep n3 in the set.
    assert_eq!(
        sent,
        [false, true, false, true],
        "the smaller set is sent until it shows"
    );
    (n1, view)
}

/// Found by review (2026-12-03): a publication of a smaller synchronous set whose answer was
/// lost may still land. Meanwhile the leader, reading the old set, let PostgreSQL count a
/// member that set lacks (n3, streaming again); when the late write landed, the store's set
/// no longer covered a standby PostgreSQL counted, and a commit n3 alone confirmed could be
/// lost to a failover choosing inside the set. Until a read shows the key moved past the
/// revision its sets were sent on, the leader counts only members every one of them names.
#[test]
fn a_set_published_without_an_answer_still_bounds_what_postgresql_may_count() {
    let (mut n1, view) = n3_dropped_without_an_answer();
    // Its answer was lost: the store still shows both when n3 streams again.
    let d = n1.step(&obs(5000, pg(true, &["n2"]), &view, vec![]));
    assert!(
        !counts_n3(&d),
        "n3 counted while a set without it may still land: {d:?}"
    );
    assert!(publishes(&d, &["n2", "n3"]), "{d:?}");
    n3_counted_once_the_key_moved(n1, view);
}

/// `n1`, which sent {n2, n3} on the key's revision 10 with PostgreSQL counting {n2}: reads
/// showing the same revision tell nothing (a late write may come); once a read shows the key
/// moved (the set it sent, written since), nothing sent on revision 10 can land any more, and
/// PostgreSQL may count n3 again.
fn n3_counted_once_the_key_moved(mut n1: Member, mut view: View) {
    let d = n1.step(&obs(6000, pg(true, &["n2"]), &view, vec![]));
    assert!(!counts_n3(&d), "{d:?}");
    view.0.sync = set(&["n2", "n3"]);
    view.0.sync_revision = 12;
    let d = n1.step(&obs(7000, pg(true, &["n2"]), &view, vec![]));
    assert!(counts_n3(&d), "{d:?}");
}

/// Found by review (2026-12-03): the sets sent without an answer were remembered only by the
/// agent that sent them. Restarted within the ttl, the agent adopted the same term (whose
/// guard the late write still passes), read {n2, n3} and let PostgreSQL count n3 again; the
/// {n2} its former process sent could land after that. An agent adopting its term takes the
/// sets it may have sent to be what PostgreSQL counts, until a read shows the key moved.
#[test]
fn a_restarted_leader_counts_no_member_a_set_its_former_agent_sent_may_lack() {
    let (_before_restart, view) = n3_dropped_without_an_answer();
    let mut n1 = member("n1");
    // The key still names n1 (term 7): the new agent renews it to adopt the lease.
    let d = n1.step(&obs(5000, pg(true, &["n2"]), &view, vec![]));
    assert_eq!(d.reason, Reason::AdoptingLease { new_cluster: false });
    assert!(!counts_n3(&d), "{d:?}");
    let renewal = Outcome::LeaderRenewed {
        requested_at: Millis(5000),
        revision: 7,
        ttl: ClusterConfig::default().ttl(),
    };
    let d = n1.step(&obs(5100, pg(true, &["n2"]), &view, vec![renewal]));
    assert!(
        !counts_n3(&d),
        "n3 counted while a set its former agent sent without it may still land: {d:?}"
    );
    assert!(publishes(&d, &["n2", "n3"]), "{d:?}");
    n3_counted_once_the_key_moved(n1, view);
}
