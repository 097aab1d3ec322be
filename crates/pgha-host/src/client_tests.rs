//! The client's wait for a promotion: a refusal recorded after the request ends it at once.

use std::time::{Duration, Instant};

use pgha_core::{EventKind, HistoryEvent, Lsn, MemberName, Timeline};
use pgha_store::HistoryEntry;

use super::{Client, ClientError};
use crate::api::read::ClusterRecord;
use crate::promotion_wait::Awaited;

fn entry(kind: EventKind, to: &str, reason: &str) -> HistoryEntry {
    HistoryEntry {
        at: "2026-12-04T20:00:00Z".into(),
        event: HistoryEvent {
            kind,
            from: Some(MemberName::new("n1")),
            to: Some(MemberName::new(to)),
            timeline: Timeline(1),
            lsn: Lsn(0),
            reason: reason.into(),
        },
    }
}

/// Serves `GET /cluster` answering n1 as the leader with `history`; the API's address.
async fn cluster_with(history: Vec<HistoryEntry>) -> String {
    let record = ClusterRecord {
        leader: Some("n1".into()),
        members: Default::default(),
        config: Default::default(),
        sync: Default::default(),
        history,
    };
    crate::stub_api::serving("/cluster", record).await
}

/// Found in session 26's whole-suite run: `pgha failover --to n3` with a leader that refused
/// it (n3 further behind by the leader's reading than by the API's) waited its whole 120 s
/// and said only "n3 is not the primary"; the refusal was in the leader's log alone. The
/// leader records it in the history, and the wait ends there with its reason.
#[tokio::test]
async fn a_refusal_recorded_after_the_request_ends_the_wait_with_its_reason() {
    let older = entry(EventKind::RequestRefused, "n3", "an earlier refusal");
    let refused = entry(
        EventKind::RequestRefused,
        "n3",
        "manual failover refused by n1: n3 is too far behind",
    );
    let rejoin = entry(EventKind::RejoinFollow, "n2", "a rejoin");
    let address = cluster_with(vec![older, rejoin, refused]).await;
    let client = Client::new([address], None, None);
    let started = Instant::now();
    match client.wait_promoted(&Awaited::Member("n3".into()), 2).await {
        Err(ClientError::Refused { reason }) => {
            assert_eq!(
                reason,
                "manual failover refused by n1: n3 is too far behind"
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// A refusal recorded before the request, or of a request for another member, is not this
/// request's: the wait goes on (here until the test gives up on it).
#[tokio::test]
async fn refusals_of_earlier_or_other_requests_do_not_end_the_wait() {
    let address = cluster_with(vec![
        entry(EventKind::RequestRefused, "n3", "an earlier refusal"),
        entry(EventKind::RequestRefused, "n2", "another member's"),
    ])
    .await;
    let client = Client::new([address], None, None);
    let waited = tokio::time::timeout(
        Duration::from_secs(1),
        client.wait_promoted(&Awaited::Member("n3".into()), 1),
    )
    .await;
    assert!(waited.is_err(), "the wait ended: {waited:?}");
}

/// Found by review: a request re-sent to the next host after the first did not answer in
/// time named no leader, so the first host (paused, then resumed) filled in the leader of
/// its own moment and promoted a second time. The client names the leader it saw: the late
/// copy is refused (`Refusal::LeaderMismatch`).
#[tokio::test]
async fn a_promotion_request_names_the_leader_the_cluster_answered() {
    use std::sync::{Arc, Mutex};

    use crate::api::control::{PromoteRequest, Promoting};

    let record = ClusterRecord {
        leader: Some("n1".into()),
        members: Default::default(),
        config: Default::default(),
        sync: Default::default(),
        history: Vec::new(),
    };
    let sent: Arc<Mutex<Vec<PromoteRequest>>> = Arc::default();
    let seen = sent.clone();
    let app = axum::Router::new()
        .route(
            "/cluster",
            axum::routing::get(move || {
                let record = record.clone();
                async move { axum::Json(record) }
            }),
        )
        .route(
            "/switchover",
            axum::routing::post(move |axum::Json(body): axum::Json<PromoteRequest>| {
                seen.lock().unwrap().push(body);
                async move {
                    axum::Json(Promoting {
                        target: "n2".into(),
                        from: Some("n1".into()),
                        checked_when_due: None,
                    })
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = Client::new([address], None, None);
    let target = client
        .request_promotion(None, pgha_core::RequestKind::Switchover)
        .await
        .unwrap();
    assert_eq!(target, "n2");
    let sent = sent.lock().unwrap();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].from.as_deref(), Some("n1"));
}
