//! Writes only the leader may make: under its term, and under the key's revision it read.

use super::{is_conflict, lease, Harness};
use crate::history_id::HistoryId;
use crate::model::{Guard, Key};

pub async fn leader_only_writes(h: &dyn Harness) {
    let store = h.fresh_store().await;
    let term = store.acquire_leader("n1", lease(h.ttl())).await.unwrap();
    let as_leader = |holder: &str, revision| Guard::Leader {
        holder: holder.into(),
        revision,
    };
    store
        .put(Key::Sync, "[n2]", as_leader("n1", term))
        .await
        .unwrap();
    assert!(is_conflict(
        store.put(Key::Sync, "[n3]", as_leader("n2", term)).await
    ));
    store
        .append_history(&HistoryId::fresh(), "e1", as_leader("n1", term))
        .await
        .unwrap();
    store.release_leader("n1", term).await.unwrap();
    assert!(is_conflict(
        store.put(Key::Sync, "[n3]", as_leader("n1", term)).await
    ));
    assert!(is_conflict(
        store
            .append_history(&HistoryId::fresh(), "e2", as_leader("n1", term))
            .await
    ));
    let snap = store.snapshot().await.unwrap();
    assert_eq!(snap.get(Key::Sync).unwrap().value, "[n2]");
    assert_eq!(snap.history.len(), 1);
}

/// A leader's write guarded by the key's revision it read lands only while the key is still
/// there: once anything was written since (its own earlier write whose answer was lost, say),
/// it is refused, so a late write never overwrites a newer one.
pub async fn leader_writes_compare_the_key_read(h: &dyn Harness) {
    let store = h.fresh_store().await;
    let term = store.acquire_leader("n1", lease(h.ttl())).await.unwrap();
    let guard = |holder: &str, key_revision| Guard::LeaderAndKey {
        holder: holder.into(),
        revision: term,
        key_revision,
    };
    // Absent: revision 0.
    let r1 = store.put(Key::Sync, "[n2]", guard("n1", 0)).await.unwrap();
    assert!(is_conflict(
        store.put(Key::Sync, "[n3]", guard("n1", 0)).await
    ));
    assert!(is_conflict(
        store.put(Key::Sync, "[n3]", guard("n2", r1)).await
    ));
    let r2 = store
        .put(Key::Sync, "[n2, n3]", guard("n1", r1))
        .await
        .unwrap();
    assert!(r2 > r1);
    // A write decided on the first read comes late: refused.
    assert!(is_conflict(
        store.put(Key::Sync, "[n2]", guard("n1", r1)).await
    ));
    store.release_leader("n1", term).await.unwrap();
    assert!(is_conflict(
        store.put(Key::Sync, "[n3]", guard("n1", r2)).await
    ));
    let snap = store.snapshot().await.unwrap();
    assert_eq!(snap.get(Key::Sync).unwrap().value, "[n2, n3]");
    assert_eq!(snap.get(Key::Sync).unwrap().revision, r2);
}

/// Found by review (2026-12-04): n1, leading with the failsafe list {n1, n2}, was killed; n2
/// took over and was stopped before its own list landed; n3, outside n1's list, waited for a
/// listed member to read the store again, and none ever would. Taking the key makes the list
/// name its new holder alone, in the same write; a release leaves it (the leaving leader's
/// own list stays). And an acquisition lands only while the list is as its candidate read
/// it: one whose answer was lost, landing late, must not delete a newer leader's list, nor
/// promote its member on an election decided before a term it never saw.
pub async fn taking_the_leader_key_replaces_the_failsafe_list(h: &dyn Harness) {
    let store = h.fresh_store().await;
    let ttl = lease(h.ttl());
    let before_n1 = store.snapshot().await.unwrap();
    let read_before_n1 = before_n1.get(Key::Failsafe).map_or(0, |v| v.revision);
    let term = store.acquire_leader("n1", ttl).await.unwrap();
    let alone = |snap: &crate::model::Snapshot, holder: &str, revision| {
        let view = crate::view::cluster_view(snap).unwrap();
        let list = view.failsafe.expect("a list");
        assert_eq!(list.leader.as_str(), holder);
        assert!(list.confirmers().next().is_none(), "{list:?}");
        assert_eq!(view.failsafe_revision, revision);
    };
    alone(&store.snapshot().await.unwrap(), "n1", term);
    let guard = Guard::LeaderAndKey {
        holder: "n1".into(),
        revision: term,
        key_revision: term,
    };
    let listed_value = r#"{"leader":"n1","members":["n1","n2"]}"#;
    let listed = store.put(Key::Failsafe, listed_value, guard).await.unwrap();
    store.release_leader("n1", term).await.unwrap();
    let snap = store.snapshot().await.unwrap();
    assert_eq!(
        snap.get(Key::Failsafe)
            .map(|v| (v.value.as_str(), v.revision)),
        Some((listed_value, listed))
    );
    // Decided before n1's term (or before its list): refused.
    for read in [read_before_n1, term] {
        assert!(is_conflict(
            store.acquire_leader_if("n2", ttl, Some(read)).await
        ));
    }
    let next = store
        .acquire_leader_if("n2", ttl, Some(listed))
        .await
        .unwrap();
    alone(&store.snapshot().await.unwrap(), "n2", next);
    // A refused acquisition leaves the live leader's list alone.
    assert!(is_conflict(store.acquire_leader("n3", ttl).await));
    assert!(is_conflict(
        store.acquire_leader_if("n3", ttl, Some(next)).await
    ));
    alone(&store.snapshot().await.unwrap(), "n2", next);
}
