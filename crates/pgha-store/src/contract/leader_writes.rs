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
/// listed member to read the store again, and none ever would. Taking the key deletes the
/// list in the same write; a release leaves it (the leaving leader's own list stays).
pub async fn taking_the_leader_key_deletes_the_failsafe_list(h: &dyn Harness) {
    let store = h.fresh_store().await;
    let term = store.acquire_leader("n1", lease(h.ttl())).await.unwrap();
    let guard = Guard::LeaderAndKey {
        holder: "n1".into(),
        revision: term,
        key_revision: 0,
    };
    let listed = store.put(Key::Failsafe, "[n1, n2]", guard).await.unwrap();
    store.release_leader("n1", term).await.unwrap();
    let snap = store.snapshot().await.unwrap();
    assert_eq!(
        snap.get(Key::Failsafe)
            .map(|v| (v.value.as_str(), v.revision)),
        Some(("[n1, n2]", listed))
    );
    // Found by review: an acquisition decided before that list was written (its answer lost,
    // landing late) must not delete it: it lands only while the key is as it was read.
    assert!(is_conflict(
        store.acquire_leader_if("n2", lease(h.ttl()), Some(0)).await
    ));
    let next = store
        .acquire_leader_if("n2", lease(h.ttl()), Some(listed))
        .await
        .unwrap();
    let snap = store.snapshot().await.unwrap();
    assert_eq!(snap.get(Key::Failsafe), None, "the earlier term's list");
    assert_eq!(snap.leader.map(|l| l.revision), Some(next));
    // The new leader writes its own list as for a key never written.
    let guard = Guard::LeaderAndKey {
        holder: "n2".into(),
        revision: next,
        key_revision: 0,
    };
    let mine = store.put(Key::Failsafe, "[n2, n3]", guard).await.unwrap();
    // A refused acquisition leaves the live leader's list alone.
    assert!(is_conflict(
        store.acquire_leader("n3", lease(h.ttl())).await
    ));
    assert!(is_conflict(
        store
            .acquire_leader_if("n3", lease(h.ttl()), Some(mine))
            .await
    ));
    let snap = store.snapshot().await.unwrap();
    assert_eq!(
        snap.get(Key::Failsafe)
            .map(|v| (v.value.as_str(), v.revision)),
        Some(("[n2, n3]", mine))
    );
}
