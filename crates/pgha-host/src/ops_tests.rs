//! Requests against a store: what `pgha failover --leader-down` refuses, writes and withdraws;
//! what a scheduled switchover is written despite.

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
        request_leader_down(&store, failover_to_n3())
            .await
            .unwrap()
            .target
            .as_str(),
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
        request_leader_down(&store, failover_to_n3())
            .await
            .unwrap()
            .target
            .as_str(),
        "n3"
    );
    let view = view(&store).await.unwrap();
    assert!(view.failsafe.is_some() && view.switchover.is_some());
    assert!(view.history.is_empty());
}

/// n1 leads; n3 runs a standby not streaming this moment (restarting, reconnecting).
async fn n1_leading_n3_not_streaming() -> MemoryStore {
    let store = MemoryStore::new(Arc::new(ManualClock::new()));
    store.acquire_leader("n1", TTL).await.unwrap();
    put_record(&store, "n1", false).await;
    put_record(&store, "n3", true).await;
    store
}

fn switchover_to(name: &str, at: Option<u64>) -> SwitchoverRequest {
    SwitchoverRequest {
        from: None,
        to: Some(MemberName::new(name)),
        kind: RequestKind::Switchover,
        at,
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A switchover scheduled an hour ahead to a standby not streaming this moment is written,
/// with the refusal of the moment (the leader checks it again when it is due); asked for now,
/// it is refused; a member that does not exist is refused however far ahead (before: the
/// scheduled one was refused as the immediate one is).
#[tokio::test]
async fn a_scheduled_switchover_is_not_refused_for_a_target_not_streaming_this_moment() {
    use pgha_core::switchover::Refusal as Core;
    let store = n1_leading_n3_not_streaming().await;
    let now = request(&store, switchover_to("n3", None)).await;
    assert!(
        matches!(&now, Err(OpError::Refused(Refusal::Switchover(Core::TargetNotStreaming(t)))) if t.as_str() == "n3"),
        "{now:?}"
    );
    assert!(view(&store).await.unwrap().switchover.is_none());

    let at = unix_now() + 3600;
    let later = request(&store, switchover_to("n3", Some(at)))
        .await
        .unwrap();
    assert_eq!(later.target.as_str(), "n3");
    assert!(
        matches!(&later.checked_when_due, Some(Core::TargetNotStreaming(t)) if t.as_str() == "n3"),
        "{later:?}"
    );
    let pending = view(&store).await.unwrap().switchover.unwrap().request;
    assert_eq!(pending.at, Some(at));
    assert_eq!(pending.from, Some(MemberName::new("n1")));
    cancel_request(&store).await.unwrap();

    let unknown = request(&store, switchover_to("n9", Some(at))).await;
    assert!(
        matches!(
            &unknown,
            Err(OpError::Refused(Refusal::Switchover(Core::UnknownTarget(
                _
            ))))
        ),
        "{unknown:?}"
    );
    // A failover is not scheduled (`pgha failover` has no --at): one sent with an instant
    // through the API is judged as now.
    let mut failover = switchover_to("n3", Some(at));
    failover.kind = RequestKind::Failover {
        force: false,
        allow_data_loss: false,
    };
    let failover = request(&store, failover).await;
    assert!(
        matches!(
            &failover,
            Err(OpError::Refused(Refusal::Switchover(
                Core::TargetNotStreaming(_)
            )))
        ),
        "{failover:?}"
    );
    // Without a named target nobody can be named for later: refused as now.
    let mut best = switchover_to("n3", Some(at));
    best.to = None;
    let best = request(&store, best).await;
    assert!(
        matches!(&best, Err(OpError::Refused(Refusal::Switchover(_)))),
        "{best:?}"
    );
    assert!(view(&store).await.unwrap().switchover.is_none());
}

/// A configuration that fails validation (written around `pgha config set`) is unreadable to
/// the agents, but `pgha config show` and `edit` still open it as stored, and a change mends
/// it (`update_config` starts from the stored value; `pgha config set` validates the result).
#[tokio::test]
async fn a_configuration_that_fails_validation_is_shown_and_mended() {
    let store = MemoryStore::new(Arc::new(ManualClock::new()));
    let bad = r#"{"ttl_ms": 3000, "safety_margin_ms": 3000}"#;
    store.put(Key::Config, bad, Guard::Any).await.unwrap();
    assert!(view(&store).await.is_err(), "the agents' view takes it");
    let shown = stored_config(&store).await.unwrap();
    assert_eq!((shown.ttl_ms, shown.safety_margin_ms), (3000, 3000));
    let mended = update_config(&store, |c| {
        c.safety_margin_ms = 1000;
        c.loop_wait_ms = 500;
        Ok(())
    })
    .await
    .unwrap();
    assert_eq!(mended.ttl_ms, 3000);
    assert!(view(&store).await.is_ok(), "not mended");
}

/// Found by review (2026-12-07): a switchover scheduled for later, then a failover: the
/// request, void in the new term (no member carries it out), stayed until its instant and
/// refused every request meanwhile, `pgha failover --to` included. A new request withdraws it.
#[tokio::test]
async fn a_request_made_in_an_earlier_term_does_not_hold_back_a_new_one() {
    let store = n1_leading_n3_not_streaming().await;
    put_record(&store, "n2", true).await;
    let at = unix_now() + 3600;
    request(&store, switchover_to("n3", Some(at)))
        .await
        .unwrap();
    let pending = view(&store).await.unwrap().switchover.unwrap();
    // n1 fails; n2 leads in a later term
    let term = view(&store).await.unwrap().leader.unwrap().revision;
    store.release_leader("n1", term).await.unwrap();
    store.acquire_leader("n2", TTL).await.unwrap();
    put_record(&store, "n2", false).await;
    let written = request(&store, switchover_to("n3", Some(at + 60))).await;
    assert!(written.is_ok(), "{written:?}");
    let now = view(&store).await.unwrap().switchover.unwrap();
    assert!(now.revision > pending.revision);
    assert_eq!(now.request.at, Some(at + 60));
    assert_eq!(now.request.from, Some(MemberName::new("n2")));
    // said in the history, as the leader records a request it refuses
    let history = view(&store).await.unwrap().history;
    let said = history.iter().any(|e| {
        e.kind == pgha_core::EventKind::RequestRefused
            && e.reason.contains("made in an earlier term")
            && e.to == Some(MemberName::new("n3"))
    });
    assert!(said, "{history:?}");
    // one of this term is not withdrawn
    let again = request(&store, switchover_to("n3", Some(at))).await;
    assert!(
        matches!(again, Err(OpError::Refused(Refusal::AlreadyPending))),
        "{again:?}"
    );
}

/// Found by review (2026-12-07): `--cancel` deleted whatever request was pending when its
/// delete landed: another operator's, written after the cancel read the store, went unseen.
/// Only the request read is withdrawn.
#[tokio::test]
async fn a_cancel_withdraws_only_the_request_it_read() {
    let store = n1_leading_n3_not_streaming().await;
    let at = unix_now() + 3600;
    request(&store, switchover_to("n3", Some(at)))
        .await
        .unwrap();
    let withdrawn = cancel_request(&store).await.unwrap();
    assert_eq!(withdrawn.map(|r| r.at), Some(Some(at)));
    assert!(cancel_request(&store).await.unwrap().is_none());
    // a cancel that read one request, and finds another written since
    request(&store, switchover_to("n3", Some(at)))
        .await
        .unwrap();
    let read = view(&store).await.unwrap().switchover.unwrap();
    store.delete(Key::Switchover, Guard::Any).await.unwrap();
    request(&store, switchover_to("n3", Some(at + 60)))
        .await
        .unwrap();
    let late = withdraw_request(&store, read).await;
    assert!(matches!(late, Err(OpError::RequestChanged)), "{late:?}");
    let still = view(&store).await.unwrap().switchover.unwrap();
    assert_eq!(still.request.at, Some(at + 60));
}

/// Found by review (2026-12-07): a request whose answer was lost (a paused API, a cut link) is
/// sent again to the next host by the CLI; that copy found the first written and was refused
/// as "a request is pending" while the switchover went ahead. The same request pending is the
/// one asked: written; another is still refused.
#[tokio::test]
async fn the_same_request_sent_twice_is_written_once_and_answered_twice() {
    let store = n1_leading_n3_not_streaming().await;
    let at = unix_now() + 3600;
    let first = request(&store, switchover_to("n3", Some(at)))
        .await
        .unwrap();
    let again = request(&store, switchover_to("n3", Some(at))).await;
    assert!(
        again.as_ref().is_ok_and(|r| r.target == first.target),
        "{again:?}"
    );
    let other = request(&store, switchover_to("n3", Some(at + 60))).await;
    assert!(
        matches!(other, Err(OpError::Refused(Refusal::AlreadyPending))),
        "{other:?}"
    );
}
