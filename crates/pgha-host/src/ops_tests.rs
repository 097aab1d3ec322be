//! `pgha failover --leader-down` against a store: what it refuses, writes and withdraws.

use std::sync::Arc;

use pgha_core::{FailsafeList, MemberRecord, RequestKind, Ttl};
use pgha_store::{ManualClock, MemoryStore};

use super::*;

const TTL: Ttl = Ttl::from_secs(10);

/// A leaderless store: n1 led with the failsafe list {n1, n2}; n3, left out, runs a standby.
async fn n1_gone_with_its_list() -> MemoryStore {
    let store = MemoryStore::new(Arc::new(ManualClock::new()));
    let list = FailsafeList {
        leader: MemberName::new("n1"),
        members: [MemberName::new("n1"), MemberName::new("n2")].into(),
    };
    let json = serde_json::to_string(&list).unwrap();
    store.put(Key::Failsafe, &json, Guard::Any).await.unwrap();
    put_record(&store, "n3", true).await;
    store
}

async fn put_record(store: &MemoryStore, name: &str, in_recovery: bool) {
    let record = MemberRecord {
        running: true,
        in_recovery,
        ..MemberRecord::default()
    };
    let json = serde_json::to_string(&record).unwrap();
    store.put_member(name, &json, TTL).await.unwrap();
}

fn failover_to_n3() -> SwitchoverRequest {
    SwitchoverRequest {
        from: None,
        to: Some(MemberName::new("n3")),
        kind: RequestKind::Failover {
            force: false,
            allow_data_loss: false,
        },
        at: None,
    }
}

#[tokio::test]
async fn the_list_holding_the_target_back_is_withdrawn_after_the_request_is_written() {
    let store = n1_gone_with_its_list().await;
    let refused = request(&store, failover_to_n3()).await;
    assert!(
        matches!(&refused, Err(OpError::Refused(Refusal::Switchover(_)))),
        "{refused:?}"
    );
    assert_eq!(
        request_leader_down(&store, failover_to_n3()).await.unwrap(),
        "n3"
    );
    let view = view(&store).await.unwrap();
    assert_eq!(view.failsafe, None);
    assert_eq!(view.switchover.map(|p| p.request), Some(failover_to_n3()));
    let recorded = view.history.last().expect("a history entry");
    assert_eq!(recorded.kind, pgha_core::EventKind::FailsafeListWithdrawn);
}

#[tokio::test]
async fn nothing_is_withdrawn_while_a_leader_holds_the_key_or_the_lists_leader_runs_a_primary() {
    let store = n1_gone_with_its_list().await;
    store.acquire_leader("n2", TTL).await.unwrap();
    let refused = request_leader_down(&store, failover_to_n3()).await;
    assert!(
        matches!(&refused, Err(OpError::Refused(Refusal::LeaderHoldsKey(l))) if l.as_str() == "n2"),
        "{refused:?}"
    );
    let store = n1_gone_with_its_list().await;
    put_record(&store, "n1", false).await;
    let refused = request_leader_down(&store, failover_to_n3()).await;
    assert!(
        matches!(&refused, Err(OpError::Refused(Refusal::LeaderStillPrimary(l))) if l.as_str() == "n1"),
        "{refused:?}"
    );
    let view = view(&store).await.unwrap();
    assert!(view.failsafe.is_some() && view.switchover.is_none());
}

/// A list that does not hold the target back (a listed member reads the store: the wait ends
/// within a ttl) stays; the request is written as without the flag.
#[tokio::test]
async fn a_list_that_holds_nobody_back_stays() {
    let store = n1_gone_with_its_list().await;
    put_record(&store, "n2", true).await;
    assert_eq!(
        request_leader_down(&store, failover_to_n3()).await.unwrap(),
        "n3"
    );
    let view = view(&store).await.unwrap();
    assert!(view.failsafe.is_some() && view.switchover.is_some());
    assert!(view.history.is_empty());
}
