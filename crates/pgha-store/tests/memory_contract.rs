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

/// Durable keys and the leader key outlive a restart of the process embedding the store;
/// member keys do not. The leader key comes back held for a whole ttl from the restart, the
/// last one its holder asked for (as etcd extends its leases when it starts again): before,
/// it came back absent, and a restarted `pgha up` could let another member win an election
/// while the old leader's PostgreSQL still took writes until its supervisor's deadline.
#[tokio::test]
async fn durable_keys_and_the_leader_key_survive_a_restart_but_member_keys_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("store.json");
    let clock = Arc::new(ManualClock::new());
    let (last_revision, term) = {
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
        let term = store
            .acquire_leader("n2", Ttl::from_secs(10))
            .await
            .unwrap();
        // The ttl raised live: the restart holds the key for the new one.
        store
            .renew_leader("n2", term, Ttl::from_secs(30))
            .await
            .unwrap();
        store
            .put_member("n2", "{}", Ttl::from_secs(10))
            .await
            .unwrap();
        (store.snapshot().await.unwrap().revision, term)
    };
    clock.advance(Duration::from_secs(60));
    let store = MemoryStore::persistent(clock.clone(), &file).unwrap();
    let snap = store.snapshot().await.unwrap();
    assert_eq!(snap.get(Key::Initialize).unwrap().value, "6999");
    assert_eq!(snap.get(Key::Config).unwrap().value, "{\"ttl_ms\":3000}");
    assert_eq!(snap.history.len(), 1);
    let held = snap
        .leader
        .as_ref()
        .map(|l| (l.holder.as_str(), l.revision));
    assert_eq!(held, Some(("n2", term)));
    assert!(snap.members.is_empty());
    clock.advance(Duration::from_secs(29));
    assert!(
        store
            .acquire_leader("n1", Ttl::from_secs(10))
            .await
            .is_err(),
        "another member took the key within the ttl its holder last asked for"
    );
    store
        .renew_leader("n2", term, Ttl::from_secs(30))
        .await
        .expect("the holder renews the key it held before the restart");
    store.release_leader("n2", term).await.unwrap();
    let rev = store
        .acquire_leader("n1", Ttl::from_secs(10))
        .await
        .unwrap();
    assert!(rev > term && snap.revision <= last_revision + 1);
    assert!(store
        .put(Key::Initialize, "1", Guard::Absent)
        .await
        .is_err());

    // Held at the next restart, and released: the one after finds no leader.
    let restarted = MemoryStore::persistent(clock.clone(), &file).unwrap();
    let leader = restarted.snapshot().await.unwrap().leader;
    assert_eq!(
        leader.map(|l| (l.holder, l.revision)),
        Some(("n1".to_string(), rev))
    );
    restarted.release_leader("n1", rev).await.unwrap();
    let again = MemoryStore::persistent(clock, &file).unwrap();
    assert_eq!(again.snapshot().await.unwrap().leader, None);
}

/// A write the embedded store acknowledged survives the host losing power right after it:
/// `pgha up` keeps the cluster's configuration, synchronous set and history in this file.
/// Before the directory was synced after the rename, the file came back as the write before.
#[tokio::test]
async fn an_acknowledged_write_survives_a_power_loss() {
    let dir = tempfile::tempdir().unwrap();
    let mut disk = LoopDisk::mount(&dir.path().join("img"), &dir.path().join("disk"), 32);
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
