//! A leader's publication of its synchronous set or failsafe list compares the key's revision
//! it was decided on: one whose answer was lost cannot land over a newer one.

use std::sync::Arc;

use pgha_core::Timeline;
use pgha_core::{Action, FailsafeList, LeaderPosition, Lsn, MemberName, SyncMethod, SyncSet};
use pgha_store::{Key, MemoryStore, Store, StoreError, TokioClock};

use crate::action_error::ActionError;
use crate::agent::Agent;
use crate::test_spec::spec;

/// The store refused the write: the key moved since the read it was decided on.
fn refused(result: Result<(), ActionError>) -> bool {
    matches!(result, Err(ActionError::Store(StoreError::Conflict { .. })))
}

fn set(names: &[&str]) -> SyncSet {
    SyncSet {
        leader: Some(MemberName::new("n1")),
        members: names.iter().map(|n| MemberName::new(*n)).collect(),
        count: 1,
        method: SyncMethod::Quorum,
        mode: None,
    }
}

/// An agent of n1 over an embedded store in which n1 took the leader key: the agent, the
/// store, the term.
async fn leading_agent(dir: &std::path::Path) -> (Agent, Arc<MemoryStore>, u64) {
    let store = Arc::new(MemoryStore::new(Arc::new(TokioClock::new())));
    let (agent, _report) = Agent::new(spec(dir), store.clone(), Default::default()).unwrap();
    let term = store
        .acquire_leader("n1", pgha_core::Ttl::from_millis(10_000))
        .await
        .unwrap();
    (agent, store, term)
}

#[tokio::test]
async fn a_publication_decided_on_an_older_read_does_not_land() {
    let dir = tempfile::tempdir().unwrap();
    let (mut agent, store, term) = leading_agent(dir.path()).await;
    let publish = |names: &[&str], key_revision| Action::PublishSync {
        set: set(names),
        leader_revision: term,
        key_revision,
    };
    // Decided on a read without the key: lands.
    agent.execute_one(&publish(&["n2", "n3"], 0)).await.unwrap();
    let first = store.snapshot().await.unwrap();
    let first = first.get(Key::Sync).unwrap().revision;
    // Decided on that same read, arriving after it: refused, the newer set stays.
    assert!(refused(agent.execute_one(&publish(&["n2"], 0)).await));
    // Decided on the read that showed it: lands.
    agent.execute_one(&publish(&["n3"], first)).await.unwrap();
    let read = store.snapshot().await.unwrap();
    let now: SyncSet = serde_json::from_str(&read.get(Key::Sync).unwrap().value).unwrap();
    assert_eq!(now, set(&["n3"]));

    let list = |names: &[&str]| FailsafeList {
        leader: MemberName::new("n1"),
        members: names.iter().map(|n| MemberName::new(*n)).collect(),
    };
    let failsafe = |names: &[&str], key_revision| Action::PublishFailsafe {
        list: list(names),
        leader_revision: term,
        key_revision,
    };
    // Taking the key wrote the list naming n1 alone at the term's revision.
    agent
        .execute_one(&failsafe(&["n1", "n2"], term))
        .await
        .unwrap();
    assert!(refused(
        agent
            .execute_one(&failsafe(&["n1", "n2", "n4"], term))
            .await
    ));
    let read = store.snapshot().await.unwrap();
    let kept: FailsafeList = serde_json::from_str(&read.get(Key::Failsafe).unwrap().value).unwrap();
    assert_eq!(kept, list(&["n1", "n2"]));
}

/// Found by review: the leader's position was written guarded by the leader key alone, so a
/// write whose answer was lost could land after a later one. A paused leader's late unmarked
/// position then erased the mark (`unfenced`) that keeps the others from running beside a
/// PostgreSQL nothing fences. It lands only on the key's revision it was decided on.
#[tokio::test]
async fn a_position_decided_on_an_older_read_does_not_land() {
    let dir = tempfile::tempdir().unwrap();
    let (mut agent, store, term) = leading_agent(dir.path()).await;
    let position = |lsn: u64, unfenced: bool, key_revision| Action::PublishPosition {
        position: LeaderPosition {
            leader: MemberName::new("n1"),
            timeline: Timeline(1),
            lsn: Lsn(lsn),
            term: Some(term),
            unfenced,
        },
        leader_revision: term,
        key_revision,
    };
    let stored = || async {
        let read = store.snapshot().await.unwrap();
        let v = read.get(Key::Position).unwrap().clone();
        (
            serde_json::from_str::<LeaderPosition>(&v.value).unwrap(),
            v.revision,
        )
    };
    // The mark, decided on a read without the key: lands.
    let _ = agent.execute_one(&position(200, true, 0)).await;
    let (marked, at) = stored().await;
    assert!(marked.unfenced && marked.lsn == Lsn(200));
    // An unmarked one decided on that same read, landing after it: refused, the mark stays.
    let _ = agent.execute_one(&position(100, false, 0)).await;
    assert_eq!(stored().await, (marked, at), "the late write landed");
    // Decided on the read that showed the mark: lands.
    let _ = agent.execute_one(&position(300, false, at)).await;
    let (now, _) = stored().await;
    assert!(!now.unfenced && now.lsn == Lsn(300), "{now:?}");
}

/// A promotion relies on the set publication before it in the same decision
/// (`pgha_core::sync::set_at_promotion`): when that write fails (here the member holds no
/// lease, so the store refuses it), the promotion is not begun, and the core hears so (it
/// counts a planned job as running until it hears how it ended).
#[tokio::test]
async fn a_promotion_after_a_failed_set_publication_is_not_begun() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new(Arc::new(TokioClock::new())));
    let (mut agent, _report) = Agent::new(spec(dir.path()), store, Default::default()).unwrap();
    agent
        .execute(vec![
            Action::PublishSync {
                set: set(&["n1", "n2"]),
                leader_revision: 5,
                key_revision: 0,
            },
            Action::Promote {
                newest_timeline: pgha_core::Timeline(1),
            },
        ])
        .await;
    assert_eq!(agent.jobs.current(), None, "the promotion was begun");
    let not_begun = agent.outcomes.iter().any(|o| {
        matches!(
            o,
            pgha_core::Outcome::Job {
                kind: pgha_core::JobKind::Promote,
                result: Err(pgha_core::JobFailure::NotBegun(_)),
            }
        )
    });
    assert!(not_begun, "{:?}", agent.outcomes);
}
