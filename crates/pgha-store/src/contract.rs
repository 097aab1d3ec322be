//! The store contract: one suite every backend must pass (in-memory and etcd).
//!
//! A backend's test file implements [`Harness`] and calls [`crate::store_contract_tests!`], which
//! generates one `#[tokio::test]` per case.

use crate::error::StoreError;
use crate::history_id::HistoryId;
use crate::model::{Guard, Key, Snapshot};
use crate::store::Store;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

mod leader_writes;
pub use leader_writes::{
    leader_only_writes, leader_writes_compare_the_key_read,
    taking_the_leader_key_replaces_the_failsafe_list,
};

/// What the suite needs from a backend.
#[async_trait]
pub trait Harness: Send + Sync {
    /// A new, empty store (e.g. a fresh cluster prefix).
    async fn fresh_store(&self) -> Arc<dyn Store>;
    /// Lets `by` pass for the store's leases (advance a manual clock, or really sleep).
    async fn pass(&self, by: Duration);
    /// A lease TTL the backend honours precisely enough for the suite.
    fn ttl(&self) -> Duration;
    /// How long past its TTL an expired lease's keys may still be visible: zero for a store
    /// that expires exactly on its clock; etcd's lessor checks leases every 500 ms and then
    /// commits the revocation through raft.
    fn expiry_grace(&self) -> Duration {
        Duration::ZERO
    }
}

/// `d` as the TTL of a lease (the harness speaks of time passing in `Duration`s).
fn lease(d: Duration) -> pgha_core::Ttl {
    pgha_core::Ttl::from_millis(d.as_millis() as u64)
}

/// Once a lease's TTL has passed: lets up to the backend's expiry grace pass, in small steps,
/// until `expired` holds on a fresh snapshot, and returns that snapshot.
async fn expiry_settled(
    h: &dyn Harness,
    store: &dyn Store,
    what: &str,
    expired: impl Fn(&Snapshot) -> bool,
) -> Snapshot {
    let grace = h.expiry_grace();
    let step = (grace / 20).max(Duration::from_millis(10));
    let mut waited = Duration::ZERO;
    loop {
        let snap = store.snapshot().await.unwrap();
        if expired(&snap) {
            return snap;
        }
        assert!(
            waited < grace,
            "{what}: still there {waited:?} past the TTL (grace {grace:?}): {snap:?}"
        );
        h.pass(step).await;
        waited += step;
    }
}

fn is_conflict<T: std::fmt::Debug>(result: Result<T, StoreError>) -> bool {
    match result {
        Err(e @ StoreError::Conflict { .. }) => !e.is_retryable(),
        _ => false,
    }
}

/// Wait for a watch event, with a bound so a broken backend fails instead of hanging.
async fn next_change(watch: &mut Box<dyn crate::store::Watch>) -> u64 {
    tokio::time::timeout(Duration::from_secs(10), watch.changed())
        .await
        .expect("watch did not fire")
        .expect("watch failed")
}

pub async fn leader_is_exclusive(h: &dyn Harness) {
    let store = h.fresh_store().await;
    let rev = store.acquire_leader("n1", lease(h.ttl())).await.unwrap();
    assert!(is_conflict(
        store.acquire_leader("n2", lease(h.ttl())).await
    ));
    let snap = store.snapshot().await.unwrap();
    let leader = snap.leader.expect("leader key");
    assert_eq!((leader.holder.as_str(), leader.revision), ("n1", rev));
}

pub async fn renewal_keeps_the_lease_and_the_term(h: &dyn Harness) {
    let store = h.fresh_store().await;
    let ttl = h.ttl();
    let rev = store.acquire_leader("n1", lease(ttl)).await.unwrap();
    for _ in 0..3 {
        h.pass(ttl / 2).await;
        store.renew_leader("n1", rev, lease(ttl)).await.unwrap();
    }
    let leader = store
        .snapshot()
        .await
        .unwrap()
        .leader
        .expect("still leader");
    assert_eq!(
        leader.revision, rev,
        "renewal must not change the term revision"
    );
}

/// A live ttl change reaches the store: renewing with another TTL re-grants the lease (same
/// term), so the key lives as long as the holder was told it may trust it, and no longer.
pub async fn renewal_with_a_new_ttl_regrants_the_lease(h: &dyn Harness) {
    let store = h.fresh_store().await;
    let ttl = h.ttl();
    let rev = store.acquire_leader("n1", lease(ttl)).await.unwrap();
    assert_eq!(
        store.renew_leader("n1", rev, lease(ttl)).await.unwrap(),
        lease(ttl)
    );
    let longer = ttl * 2;
    assert_eq!(
        store.renew_leader("n1", rev, lease(longer)).await.unwrap(),
        lease(longer),
        "the renewal reports the TTL the lease now has"
    );
    h.pass(ttl + ttl / 2).await;
    let snap = store.snapshot().await.unwrap();
    let leader = snap
        .leader
        .expect("the key outlives the old TTL on the new lease");
    assert_eq!(leader.revision, rev, "same term after the re-grant");
    assert_eq!(
        store.renew_leader("n1", rev, lease(longer)).await.unwrap(),
        lease(longer)
    );
    h.pass(longer).await;
    expiry_settled(h, &*store, "leader key past the new TTL", |s| {
        s.leader.is_none()
    })
    .await;
}

pub async fn lease_expires_without_renewal(h: &dyn Harness) {
    let store = h.fresh_store().await;
    let rev = store.acquire_leader("n1", lease(h.ttl())).await.unwrap();
    h.pass(h.ttl()).await;
    expiry_settled(h, &*store, "unrenewed leader key", |s| s.leader.is_none()).await;
    assert!(is_conflict(
        store.renew_leader("n1", rev, lease(h.ttl())).await
    ));
    let next = store.acquire_leader("n2", lease(h.ttl())).await.unwrap();
    assert!(next > rev, "a new term has a greater revision");
}

pub async fn renew_and_release_compare_holder_and_revision(h: &dyn Harness) {
    let store = h.fresh_store().await;
    let rev = store.acquire_leader("n1", lease(h.ttl())).await.unwrap();
    assert!(is_conflict(
        store.renew_leader("n2", rev, lease(h.ttl())).await
    ));
    assert!(is_conflict(
        store.renew_leader("n1", rev + 1000, lease(h.ttl())).await
    ));
    assert!(is_conflict(store.release_leader("n2", rev).await));
    store.release_leader("n1", rev).await.unwrap();
    assert_eq!(store.snapshot().await.unwrap().leader, None);
    assert!(is_conflict(store.release_leader("n1", rev).await));
}

pub async fn members_live_by_their_own_lease(h: &dyn Harness) {
    let store = h.fresh_store().await;
    let ttl = h.ttl();
    store
        .put_member("n1", "{\"a\":1}", lease(ttl))
        .await
        .unwrap();
    store
        .put_member("n2", "{\"b\":2}", lease(ttl))
        .await
        .unwrap();
    h.pass(ttl / 2).await;
    store
        .put_member("n1", "{\"a\":3}", lease(ttl))
        .await
        .unwrap();
    h.pass(ttl / 2).await;
    // n2's TTL has passed, n1's restarted lease has half of it left.
    let snap = expiry_settled(h, &*store, "member n2", |s| !s.members.contains_key("n2")).await;
    let names: Vec<&str> = snap.members.keys().map(String::as_str).collect();
    assert_eq!(names, ["n1"], "n2 expired, n1 was refreshed");
    assert_eq!(snap.members["n1"].value, "{\"a\":3}");
    store.delete_member("n1").await.unwrap();
    assert!(store.snapshot().await.unwrap().members.is_empty());
}

pub async fn guarded_writes(h: &dyn Harness) {
    let store = h.fresh_store().await;
    let r1 = store.put(Key::Config, "v1", Guard::Absent).await.unwrap();
    assert!(is_conflict(
        store.put(Key::Config, "v0", Guard::Absent).await
    ));
    let r2 = store
        .put(Key::Config, "v2", Guard::Revision(r1))
        .await
        .unwrap();
    assert!(is_conflict(
        store.put(Key::Config, "v3", Guard::Revision(r1)).await
    ));
    assert_eq!(
        store
            .snapshot()
            .await
            .unwrap()
            .get(Key::Config)
            .unwrap()
            .value,
        "v2"
    );
    assert!(is_conflict(
        store.delete(Key::Config, Guard::Revision(r1)).await
    ));
    store
        .delete(Key::Config, Guard::Revision(r2))
        .await
        .unwrap();
    assert!(store.snapshot().await.unwrap().get(Key::Config).is_none());
    store.delete(Key::Switchover, Guard::Any).await.unwrap();
}

pub async fn initialize_is_create_if_absent(h: &dyn Harness) {
    let store = h.fresh_store().await;
    store
        .put(Key::Initialize, "7001", Guard::Absent)
        .await
        .unwrap();
    assert!(is_conflict(
        store.put(Key::Initialize, "7002", Guard::Absent).await
    ));
    let snap = store.snapshot().await.unwrap();
    assert_eq!(snap.get(Key::Initialize).unwrap().value, "7001");
}

pub async fn history_keeps_append_order(h: &dyn Harness) {
    let store = h.fresh_store().await;
    for entry in ["a", "b", "c"] {
        store
            .append_history(&HistoryId::fresh(), entry, Guard::Any)
            .await
            .unwrap();
    }
    let history = store.snapshot().await.unwrap().history;
    let values: Vec<&str> = history.iter().map(|v| v.value.as_str()).collect();
    assert_eq!(values, ["a", "b", "c"]);
    assert!(history.windows(2).all(|w| w[0].revision < w[1].revision));
}

/// An append retried with the same id (its first answer lost) records the entry once; the
/// same id with another entry is refused.
pub async fn a_retried_history_append_records_once(h: &dyn Harness) {
    let store = h.fresh_store().await;
    let term = store.acquire_leader("n1", lease(h.ttl())).await.unwrap();
    let guard = Guard::Leader {
        holder: "n1".into(),
        revision: term,
    };
    let (first, second) = (HistoryId::fresh(), HistoryId::fresh());
    let at = store
        .append_history(&first, "a", guard.clone())
        .await
        .unwrap();
    store
        .append_history(&second, "b", Guard::Any)
        .await
        .unwrap();
    assert_eq!(
        store.append_history(&first, "a", guard).await.unwrap(),
        at,
        "a retry answers with the revision the entry was recorded at"
    );
    assert_eq!(
        store.append_history(&first, "a", Guard::Any).await.unwrap(),
        at
    );
    let refused = store.append_history(&second, "c", Guard::Any).await;
    assert!(
        matches!(refused, Err(StoreError::Invalid(_))),
        "the same id with another entry: {refused:?}"
    );
    let history = store.snapshot().await.unwrap().history;
    let values: Vec<&str> = history.iter().map(|v| v.value.as_str()).collect();
    assert_eq!(values, ["a", "b"]);
}

pub async fn watch_wakes_on_writes_and_expiry(h: &dyn Harness) {
    let store = h.fresh_store().await;
    let mut watch = store.watch().await.unwrap();
    let rev = store.put(Key::Config, "x", Guard::Any).await.unwrap();
    assert!(next_change(&mut watch).await >= rev);
    store.acquire_leader("n1", lease(h.ttl())).await.unwrap();
    next_change(&mut watch).await;
    h.pass(h.ttl()).await;
    let seen = next_change(&mut watch).await;
    let snap = store.snapshot().await.unwrap();
    assert_eq!(snap.leader, None, "expiry is a change the watch reports");
    assert!(seen <= snap.revision);
}

/// A lease that a read finds expired (nobody watching when its time came) is still a change
/// the watch reports: the in-memory store once expired it inside the read and told nobody,
/// so a failover waited for the agents' loop instead of the watch.
pub async fn an_expiry_found_by_a_read_wakes_the_watch(h: &dyn Harness) {
    let store = h.fresh_store().await;
    let mut watch = store.watch().await.unwrap();
    store.acquire_leader("n1", lease(h.ttl())).await.unwrap();
    next_change(&mut watch).await;
    h.pass(h.ttl()).await;
    store.snapshot().await.unwrap();
    next_change(&mut watch).await;
    assert_eq!(store.snapshot().await.unwrap().leader, None);
}

/// Every case, sequentially (for backends tested from one test function).
pub async fn run_all(h: &dyn Harness) {
    leader_is_exclusive(h).await;
    renewal_keeps_the_lease_and_the_term(h).await;
    renewal_with_a_new_ttl_regrants_the_lease(h).await;
    lease_expires_without_renewal(h).await;
    renew_and_release_compare_holder_and_revision(h).await;
    members_live_by_their_own_lease(h).await;
    guarded_writes(h).await;
    leader_only_writes(h).await;
    leader_writes_compare_the_key_read(h).await;
    initialize_is_create_if_absent(h).await;
    history_keeps_append_order(h).await;
    a_retried_history_append_records_once(h).await;
    watch_wakes_on_writes_and_expiry(h).await;
    an_expiry_found_by_a_read_wakes_the_watch(h).await;
}

/// Generates one `#[tokio::test]` per contract case for the harness built by `$make`.
#[macro_export]
macro_rules! store_contract_tests {
    ($make:expr) => {
        $crate::store_contract_tests!(@cases $make;
            leader_is_exclusive,
            renewal_keeps_the_lease_and_the_term,
            renewal_with_a_new_ttl_regrants_the_lease,
            lease_expires_without_renewal,
            renew_and_release_compare_holder_and_revision,
            members_live_by_their_own_lease,
            guarded_writes,
            leader_only_writes,
            leader_writes_compare_the_key_read,
            taking_the_leader_key_replaces_the_failsafe_list,
            initialize_is_create_if_absent,
            history_keeps_append_order,
            a_retried_history_append_records_once,
            watch_wakes_on_writes_and_expiry,
            an_expiry_found_by_a_read_wakes_the_watch
        );
    };
    (@cases $make:expr; $($case:ident),*) => {
        $(
            #[tokio::test]
            async fn $case() {
                let harness = $make;
                $crate::contract::$case(&harness).await;
            }
        )*
    };
}
