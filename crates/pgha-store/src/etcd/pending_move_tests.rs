//! A move of the leader key to a lease of a new ttl whose answer never came cannot land after
//! a later renewal has trusted the old lease (a key moved onto a lease nobody keeps alive
//! could expire while its holder still trusts it).

use pgha_core::Ttl;
use pgha_testkit::EtcdServer;

use super::EtcdStore;
use crate::Store;

#[tokio::test]
async fn a_move_whose_answer_was_lost_cannot_land_after_the_next_renewal() {
    let etcd = EtcdServer::start_free();
    let store = EtcdStore::connect(&[etcd.endpoint()], "c", std::time::Duration::from_secs(2))
        .await
        .expect("connect to etcd");
    let ttl = Ttl::from_secs(3);
    let revision = store.acquire_leader("n1", ttl).await.unwrap();
    store.renew_leader("n1", revision, ttl).await.unwrap();
    let old = store.leader_lease("n1").expect("the key's lease").id;
    // A ttl change granted a new lease and sent the move; its answer was lost (the write
    // still travels), and the ttl was set back meanwhile.
    let moved = store.grant(10).await.unwrap();
    store.set_pending_move("n1", Some(moved.id));
    store.renew_leader("n1", revision, ttl).await.unwrap();
    // Now the late write arrives: it must not take the key off the lease being kept alive.
    let late = store.put_leader_if(store.leader_is("n1", revision), "n1", moved.id);
    let landed = store.txn(late).await.is_ok_and(|r| r.succeeded());
    assert!(
        !landed,
        "the late move landed after a renewal trusted the old lease"
    );
    store.renew_leader("n1", revision, ttl).await.unwrap();
    assert_eq!(store.leader_lease("n1").map(|l| l.id), Some(old));
}
