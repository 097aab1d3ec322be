//! A history append that fails (the store down or slow) is appended again later: no decision
//! goes unexplained because the store missed one write.

use std::sync::Arc;

use pgha_core::{Action, EventKind, HistoryEvent, Lsn, MemberName, Timeline};
use pgha_store::{MemoryStore, Store, TokioClock};

use crate::agent::Agent;
use crate::test_spec::spec;

fn event() -> HistoryEvent {
    HistoryEvent {
        kind: EventKind::RejoinFollow,
        from: Some(MemberName::new("n1")),
        to: Some(MemberName::new("n2")),
        timeline: Timeline(2),
        lsn: Lsn(42),
        reason: "n1 rejoined as a standby of n2".into(),
    }
}

#[tokio::test]
async fn a_history_entry_the_store_missed_is_appended_once_it_answers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new(Arc::new(TokioClock::new())));
    let (mut agent, _report) =
        Agent::new(spec(dir.path()), store.clone(), Default::default()).unwrap();

    store.set_reachable(false);
    agent.execute(vec![Action::RecordHistory(event())]).await;
    store.set_reachable(true);
    assert!(store.snapshot().await.unwrap().history.is_empty());

    // The next decision's actions (none here) come after the missed entry.
    agent.execute(vec![]).await;
    let history = pgha_store::history_entries(&store.snapshot().await.unwrap());
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0].event, event());
    agent.execute(vec![]).await;
    assert_eq!(
        store.snapshot().await.unwrap().history.len(),
        1,
        "appended twice"
    );
}

/// The store took the append but its answer was lost (a reply dropped on the way back, a
/// timeout a moment too short): the agent appends it again, and the store records it once.
#[tokio::test]
async fn a_history_entry_whose_answer_was_lost_is_recorded_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new(Arc::new(TokioClock::new())));
    let (mut agent, _report) =
        Agent::new(spec(dir.path()), store.clone(), Default::default()).unwrap();

    store.set_answers_lost(true);
    agent.execute(vec![Action::RecordHistory(event())]).await;
    store.set_answers_lost(false);
    assert_eq!(store.snapshot().await.unwrap().history.len(), 1);

    agent.execute(vec![]).await;
    agent.execute(vec![]).await;
    let history = pgha_store::history_entries(&store.snapshot().await.unwrap());
    assert_eq!(history.len(), 1, "recorded twice: {history:?}");
    assert_eq!(history[0].event, event());
    assert!(
        agent.unrecorded_history.is_empty(),
        "the retry found it recorded"
    );
}
