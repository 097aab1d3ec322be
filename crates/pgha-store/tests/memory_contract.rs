//! The store contract run against the in-memory backend on a manual clock, plus its own
//! persistence and partition behaviour.

use async_trait::async_trait;
use pgha_core::Ttl;
use pgha_store::contract::Harness;
use pgha_store::{Guard, HistoryId, Key, ManualClock, MemoryStore, Store, StoreError};
use pgha_testkit::LoopDisk;
use std::sync::Arc;
use std::time::Duration;

struct Memory {
    clock: Arc<ManualClock>,
}

impl Memory {
    fn new() -> Self {
        Memory {
            clock: Arc::new(ManualClock::new()),
        }
    }
}

#[async_trait]
impl Harness for Memory {
    async fn fresh_store(&self) -> Arc<dyn Store> {
        Arc::new(MemoryStore::new(self.clock.clone()))
    }
    async fn pass(&self, by: Duration) {
        self.clock.advance(by);
        tokio::task::yield_now().await;
    }
    fn ttl(&self) -> Duration {
        Duration::from_secs(10)
    }
}

pgha_store::store_contract_tests!(Memory::new());

#[tokio::test]
async fn durable_keys_survive_a_restart_but_leases_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("store.json");
    let clock = Arc::new(ManualClock::new());
    let last_revision = {
        let store = MemoryStore::persistent(clock.clone(), &file).unwrap();
        store
            .put(Key::Initialize, "6999", Guard::Absent)
            .await
            .unwrap();
        store
            .put(Key::Config, "{\"ttl_ms\":3000}", Guard::Any)
            .await
            .unwrap();
        store
            .append_history(&HistoryId::fresh(), "failover n1 -> n2", Guard::Any)
            .await
            .unwrap();
        store
            .acquire_leader("n2", Ttl::from_secs(10))
            .await
            .unwrap();
        store
            .put_member("n2", "{}", Ttl::from_secs(10))
            .await
            .unwrap();
        store.snapshot().await.unwrap().revision
    };
    let store = MemoryStore::persistent(clock, &file).unwrap();
    let snap = store.snapshot().await.unwrap();
    assert_eq!(snap.get(Key::Initialize).unwrap().value, "6999");
    assert_eq!(snap.get(Key::Config).unwrap().value, "{\"ttl_ms\":3000}");
    assert_eq!(snap.history.len(), 1);
    assert_eq!(snap.leader, None);
    assert!(snap.members.is_empty());
    let rev = store
        .acquire_leader("n1", Ttl::from_secs(10))
        .await
        .unwrap();
    assert!(rev > 0 && snap.revision <= last_revision + 1);
    assert!(store
        .put(Key::Initialize, "1", Guard::Absent)
        .await
        .is_err());
}

/// A write the embedded store acknowledged survives the host losing power right after it:
/// `pgha up` keeps the cluster's configuration, synchronous set and history in this file.
/// Before the directory was synced after the rename, the file came back as the write before.
#[tokio::test]
async fn an_acknowledged_write_survives_a_power_loss() {
    let dir = tempfile::tempdir().unwrap();
    let mut disk = LoopDisk::mount(&dir.path().join("img"), &dir.path().join("disk"), "32M");
    let file = disk.path().join("store.json");
    let clock = Arc::new(ManualClock::new());
    {
        let store = MemoryStore::persistent(clock.clone(), &file).unwrap();
        store.put(Key::Config, "before", Guard::Any).await.unwrap();
        // Every write so far on the disk for good: only the next one is at stake.
        let synced = std::process::Command::new("sync").status().unwrap();
        assert!(synced.success());
        store.put(Key::Config, "after", Guard::Any).await.unwrap();
    }
    disk.lose_power();
    let store = MemoryStore::persistent(clock, &file).unwrap();
    let snap = store.snapshot().await.unwrap();
    assert_eq!(snap.get(Key::Config).unwrap().value, "after");
}

#[tokio::test]
async fn a_partition_is_unavailable_and_retryable() {
    let store = MemoryStore::new(Arc::new(ManualClock::new()));
    store.set_reachable(false);
    let err = store.snapshot().await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)) && err.is_retryable());
    store.set_reachable(true);
    store.snapshot().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn tokio_clock_expires_leases_in_real_time() {
    let store = MemoryStore::new(Arc::new(pgha_store::TokioClock::new()));
    let shared: Arc<dyn Store> = Arc::new(store);
    shared
        .acquire_leader("n1", Ttl::from_secs(3))
        .await
        .unwrap();
    let mut watch = shared.watch().await.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    watch.changed().await.unwrap();
    assert_eq!(shared.snapshot().await.unwrap().leader, None);
}

/// A durable write the file could not take is refused and not kept: a retry (an initialise
/// with `Guard::Absent`, a history append) must not find it done, and nobody may act on a
/// value the next start would not have (before: kept in memory, reported failed).
#[tokio::test]
async fn a_write_the_file_cannot_take_is_not_kept() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("store.json");
    let store = MemoryStore::persistent(Arc::new(ManualClock::new()), &file).unwrap();
    store.put(Key::Config, "x", Guard::Any).await.unwrap();
    std::fs::remove_dir_all(dir.path()).unwrap();
    let refused = store.put(Key::Initialize, "7", Guard::Absent).await;
    assert!(
        matches!(refused, Err(StoreError::Persistence(_))),
        "{refused:?}"
    );
    let appended = store
        .append_history(&HistoryId::fresh(), "failover", Guard::Any)
        .await;
    assert!(appended.is_err(), "{appended:?}");
    let snap = store.snapshot().await.unwrap();
    assert!(
        snap.get(Key::Initialize).is_none(),
        "the refused write was kept"
    );
    assert!(snap.history.is_empty(), "the refused append was kept");
    assert_eq!(snap.get(Key::Config).unwrap().value, "x");
}
