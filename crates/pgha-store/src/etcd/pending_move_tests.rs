//! Writes of the leader key whose answers never came. A move to a lease of a new ttl: if it
//! landed, the next renewal keeps the key on its new lease; if not, it can no longer land
//! after that renewal (a key moved onto a lease nobody keeps alive could expire while its
//! holder still trusts it), and its lease is revoked. A release: it cannot land once another
//! process of the member adopted the key.

use pgha_core::Ttl;
use pgha_testkit::EtcdServer;

use super::EtcdStore;
use crate::Store;

async fn store_on(etcd: &EtcdServer) -> EtcdStore {
    EtcdStore::connect(&[etcd.endpoint()], "c", std::time::Duration::from_secs(2))
        .await
        .expect("connect to etcd")
}

/// The leader key's mod revision now.
async fn leader_mod_revision(store: &EtcdStore) -> i64 {
    let resp = store
        .client()
        .kv_client()
        .get(store.leader_path(), None)
        .await
        .unwrap();
    resp.kvs()[0].mod_revision()
}

#[tokio::test]
async fn a_move_whose_answer_was_lost_cannot_land_after_the_next_renewal() {
    let etcd = EtcdServer::start_free();
    let store = store_on(&etcd).await;
    let ttl = Ttl::from_secs(3);
    let revision = store.acquire_leader("n1", ttl).await.unwrap();
    store.renew_leader("n1", revision, ttl).await.unwrap();
    let old = store.leader_lease("n1").expect("the key's lease").id;
    // A ttl change granted a new lease and sent the move; its answer was lost (the write
    // still travels), and the ttl was set back meanwhile.
    let read_at = leader_mod_revision(&store).await;
    let moved = store.grant(10).await.unwrap();
    store.set_pending_move("n1", Some(moved.id));
    store.renew_leader("n1", revision, ttl).await.unwrap();
    // Now the late write arrives: it must not take the key off the lease being kept alive.
    let late = store.move_leader("n1", revision, read_at, moved.id);
    let landed = store.txn(late).await.is_ok_and(|r| r.succeeded());
    assert!(
        !landed,
        "the late move landed after a renewal trusted the old lease"
    );
    store.renew_leader("n1", revision, ttl).await.unwrap();
    assert_eq!(store.leader_lease("n1").map(|l| l.id), Some(old));
}

/// Found by review: the move landed, its answer was lost, and the next renewal revoked the
/// lease it had moved to, deleting the leader key while its holder's PostgreSQL could still
/// write; another member would take the key and promote at once. The renewal keeps the key
/// on the lease it moved to.
#[tokio::test]
async fn a_move_that_landed_without_an_answer_keeps_the_key() {
    let etcd = EtcdServer::start_free();
    let store = store_on(&etcd).await;
    let (ttl, raised) = (Ttl::from_secs(3), Ttl::from_secs(10));
    let revision = store.acquire_leader("n1", ttl).await.unwrap();
    store.renew_leader("n1", revision, ttl).await.unwrap();
    let read_at = leader_mod_revision(&store).await;
    let moved = store.grant(10).await.unwrap();
    store.set_pending_move("n1", Some(moved.id));
    let move_it = store.move_leader("n1", revision, read_at, moved.id);
    assert!(store.txn(move_it).await.unwrap().succeeded(), "the move");
    let renewed = store.renew_leader("n1", revision, raised).await;
    assert_eq!(renewed, Ok(raised), "the renewal after the move");
    let leader = store.snapshot().await.unwrap().leader;
    assert_eq!(
        leader.map(|l| (l.holder, l.revision)),
        Some(("n1".to_string(), revision)),
        "the leader key is gone"
    );
    assert_eq!(store.leader_lease("n1").map(|l| l.id), Some(moved.id));
    assert_eq!(store.pending_move("n1"), None);
}

/// Found by review: the move had not landed and the ttl was still the new one, so after
/// settling the lost move the renewal moved the key again, comparing the revision it read
/// before its own write to settle: refused, the holder was told it lost the key. The move
/// compares the key's revision after that write.
#[tokio::test]
async fn a_renewal_that_settled_a_lost_move_moves_the_key_again() {
    let etcd = EtcdServer::start_free();
    let store = store_on(&etcd).await;
    let (ttl, raised) = (Ttl::from_secs(3), Ttl::from_secs(10));
    let revision = store.acquire_leader("n1", ttl).await.unwrap();
    store.renew_leader("n1", revision, ttl).await.unwrap();
    let moved = store.grant(10).await.unwrap();
    store.set_pending_move("n1", Some(moved.id));
    let renewed = store.renew_leader("n1", revision, raised).await;
    assert_eq!(renewed, Ok(raised));
    let lease = store.leader_lease("n1").expect("the key's lease");
    assert_eq!(lease.ttl, 10);
    assert_ne!(lease.id, moved.id, "the settled lease was revoked");
    assert_eq!(store.pending_move("n1"), None);
}

/// Found by review: the move whose answer was lost came from an earlier process of the member
/// (its agent killed since), so the process adopting the key knew of no move pending; its
/// renewal only read the key, leaving the move's compare true, and the move could land after
/// the renewal trusted the key's lease: the key on a shorter lease nobody keeps alive. A
/// renewal that adopts the key writes it again where it is first.
#[tokio::test]
async fn a_move_sent_by_an_earlier_process_cannot_land_after_an_adopting_renewal() {
    let etcd = EtcdServer::start_free();
    let earlier = store_on(&etcd).await;
    let ttl = Ttl::from_secs(10);
    let revision = earlier.acquire_leader("n1", ttl).await.unwrap();
    // A ttl change: a shorter lease granted and the move sent; no answer came, and the
    // process was killed.
    let read_at = leader_mod_revision(&earlier).await;
    let moved = earlier.grant(3).await.unwrap();
    let late = earlier.move_leader("n1", revision, read_at, moved.id);
    drop(earlier);
    let adopting = store_on(&etcd).await;
    assert_eq!(adopting.renew_leader("n1", revision, ttl).await, Ok(ttl));
    let kept = adopting.leader_lease("n1").expect("the key's lease").id;
    let landed = adopting.txn(late).await.is_ok_and(|r| r.succeeded());
    assert!(
        !landed,
        "the late move landed after a renewal trusted the key's lease"
    );
    let resp = adopting
        .client()
        .kv_client()
        .get(adopting.leader_path(), None)
        .await
        .unwrap();
    assert_eq!(
        resp.kvs()[0].lease(),
        kept,
        "the key left the lease kept alive"
    );
}

/// Found by the simulation (seeds 71219 and 81633): an agent cut off from etcd, its lease
/// lapsed, sent the release of its term's key (unseen: no answer came); its process died,
/// the next one adopted the key (same member, same term) and promoted, and then the release
/// landed and deleted the key under a writable primary: another member could take it and
/// promote beside it. A release compares the key as its process last wrote it, and adopting
/// writes the key again: a release from an earlier process can no longer land.
#[tokio::test]
async fn a_release_from_an_earlier_process_cannot_land_after_another_adopted_the_key() {
    let etcd = EtcdServer::start_free();
    let (earlier, later) = (store_on(&etcd).await, store_on(&etcd).await);
    let ttl = Ttl::from_secs(3);
    let revision = earlier.acquire_leader("n1", ttl).await.unwrap();
    earlier.renew_leader("n1", revision, ttl).await.unwrap();
    // The later process adopts the key (it knows no lease of it), and renews it since.
    later.renew_leader("n1", revision, ttl).await.unwrap();
    later.renew_leader("n1", revision, ttl).await.unwrap();
    // The earlier process's release, as it was sent, lands only now.
    let late = earlier.release_leader("n1", revision).await;
    assert!(
        matches!(late, Err(crate::StoreError::Conflict { .. })),
        "a late release from the earlier process: {late:?}"
    );
    let leader = later.snapshot().await.unwrap().leader;
    assert_eq!(
        leader.map(|l| (l.holder, l.revision)),
        Some(("n1".to_string(), revision)),
        "the adopted key is gone"
    );
    assert_eq!(later.renew_leader("n1", revision, ttl).await, Ok(ttl));
    // The adopting process releases it as usual.
    assert_eq!(later.release_leader("n1", revision).await, Ok(()));
    assert!(later.snapshot().await.unwrap().leader.is_none());
}
