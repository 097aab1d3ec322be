//! The failsafe round of a leader cut off from the store, against members that refuse or
//! confirm: asked again, stopped in time, counted at once.

use std::io::{Read as _, Write as _};
use std::sync::Arc;

use std::time::Duration;

use pgha_core::{
    ClusterView, FailsafeList, LeaderKey, LocalPg, MemberName, MemberRecord, Millis, Observation,
    Outcome, StoreView,
};
use pgha_store::{MemoryStore, TokioClock};

use crate::agent::Agent;
use crate::failsafe::{FailsafeAnswer, ASK_AGAIN_AFTER};
use crate::fence::FenceState;
use crate::test_spec::spec;

/// A member's REST API on a fresh port that refuses the first `refusals` asks (409: its
/// own store read has not failed yet), then confirms n1 in term 7; its address.
fn member_confirming_after(refusals: usize) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for (i, conn) in listener.incoming().enumerate() {
            let Ok(mut conn) = conn else { return };
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let (status, body) = if i < refusals {
                ("409 Conflict", "{}".to_string())
            } else {
                let answer = FailsafeAnswer {
                    member: "n2".into(),
                    confirmed: "n1".into(),
                    term: 7,
                    promised_ms: 3000,
                    promise: 9,
                };
                ("200 OK", serde_json::to_string(&answer).unwrap())
            };
            let reply = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(reply.as_bytes());
        }
    });
    addr
}

/// n1's agent, leading in term 7 (the lease taken `taken_ms_ago`, for the default 10 s)
/// with a failsafe list naming n2, whose API refuses the first `refusals` asks; its store
/// reads fail from now on.
fn leader_asking_n2(dir: &std::path::Path, refusals: usize, taken_ms_ago: u64) -> Agent {
    let store = Arc::new(MemoryStore::new(Arc::new(TokioClock::new())));
    store.set_reachable(false);
    let (mut agent, _report) = Agent::new(spec(dir), store, Default::default()).unwrap();
    // The agent's clock started 20 s ago (a lease taken before it started is one taken
    // by this agent before its step).
    agent.boot_origin = agent.boot_origin.saturating_sub(20_000);
    let api = member_confirming_after(refusals);
    let n2 = MemberRecord {
        addresses: [(crate::spec::API_ADDRESS.to_string(), api)].into(),
        ..MemberRecord::default()
    };
    let view = ClusterView {
        leader: Some(LeaderKey {
            holder: MemberName::new("n1"),
            revision: 7,
        }),
        members: [(MemberName::new("n2"), n2)].into(),
        failsafe: Some(FailsafeList {
            leader: MemberName::new("n1"),
            members: [MemberName::new("n1"), MemberName::new("n2")].into(),
        }),
        // written in this term (the leader key's revision is 7)
        failsafe_revision: 8,
        ..ClusterView::default()
    };
    let now = agent.now();
    let acquired = Outcome::LeaderAcquired {
        requested_at: Millis(now.0 - taken_ms_ago),
        revision: 7,
        ttl: view.config.ttl(),
    };
    agent.member.step(&Observation::new(
        now,
        LocalPg::default(),
        StoreView::Up(Box::new(view.clone())),
        vec![acquired],
    ));
    assert!(agent.member.holds_lease(now));
    agent.view = Some(view);
    agent.failsafe.observe(true, None, Duration::ZERO);
    agent
}

/// The failsafe outcome the round started now reports: (requested at, promised ms).
async fn round_outcome(agent: &mut Agent, within: Duration) -> (Millis, u64) {
    let outcome = tokio::time::timeout(within, agent.rounds.answers.recv())
        .await
        .expect("the failsafe round ends")
        .expect("an outcome");
    match outcome {
        Outcome::FailsafeConfirmed {
            requested_at,
            promised_ms,
        } => (requested_at, promised_ms),
        other => panic!("not a failsafe outcome: {other:?}"),
    }
}

/// Asks a round of `agent` (n2 confirms, for 3 s) and hands it the answer as between steps;
/// when the round was asked.
async fn confirmed_between_steps(agent: &mut Agent) -> Millis {
    agent.ask_failsafe();
    let (requested_at, promised_ms) = round_outcome(agent, Duration::from_secs(2)).await;
    assert_eq!(promised_ms, 3000);
    agent.failsafe_answered(Outcome::FailsafeConfirmed {
        requested_at,
        promised_ms,
    });
    requested_at
}

/// Found by `faults::etcd_stalls::etcd_member_disk_stalled` under load: with etcd's leader
/// stalled, the leader's one round of asks came 13 ms before n3's own store read failed;
/// n3 refused, and no round came again before the leader's lease lapsed (the next one
/// waited for a step, itself waiting on store calls): the leader demoted and n2 took over,
/// although every member would have confirmed it a moment later. A refused round is asked
/// again.
#[tokio::test]
async fn a_round_refused_by_a_member_whose_read_had_not_failed_yet_is_asked_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = leader_asking_n2(dir.path(), 2, 0);
    let asked_at = agent.now();
    agent.ask_failsafe();
    let (requested_at, promised_ms) = round_outcome(&mut agent, Duration::from_secs(5)).await;
    assert_eq!(promised_ms, 3000, "confirmed once n2 confirms");
    let third_round = asked_at.plus(2 * ASK_AGAIN_AFTER.as_millis() as u64);
    assert!(
        requested_at >= third_round,
        "trusted from the round n2 confirmed ({requested_at:?}), not from an earlier one \
         (asked first at {asked_at:?})"
    );
}

/// Found by `faults::etcd_stalls::etcd_member_stalled` under load: with etcd's leader
/// stalled, every member confirmed the leader 110 ms after its step, but its report kept
/// the lease trust of that step until the next one: `/primary` answered 503 for 200 ms
/// while it went on writing. A confirmation answered between steps shows at once.
#[tokio::test]
async fn a_confirmation_between_steps_shows_in_the_report_at_once() {
    let dir = tempfile::tempdir().unwrap();
    // Taken 7.4 s ago for 10 s with a 2.5 s margin: trusted 100 ms more.
    let mut agent = leader_asking_n2(dir.path(), 0, 7_400);
    let trusted_until = agent.instant_of(agent.member.lease_deadline().unwrap());
    agent.report.send_modify(|r| {
        r.observed = Some(crate::report::Observed {
            at: tokio::time::Instant::now(),
            stale_after: Duration::from_secs(3),
            local: LocalPg::default(),
            leader: None,
            leader_lsn: None,
            initialized: false,
            lease_until: Some(trusted_until),
            synchronous: false,
            store_reachable: false,
        })
    });
    let requested_at = confirmed_between_steps(&mut agent).await;
    let reported = agent.report.borrow().observed.as_ref().unwrap().lease_until;
    let reported = reported.expect("a lease trusted");
    // Trusted until the promise's end less the margin: 500 ms past the round's ask, 400
    // ms past the trust before it (the instants are taken a few microseconds apart).
    let confirmed_until = agent.instant_of(requested_at.plus(500));
    let off = reported.max(confirmed_until) - reported.min(confirmed_until);
    assert!(
        off < Duration::from_millis(20),
        "{reported:?} {confirmed_until:?}"
    );
    assert!(
        reported > trusted_until + Duration::from_millis(300),
        "reported {reported:?}, trusted before {trusted_until:?}"
    );
}

/// Found by `faults::etcd_stalls::etcd_disk_stalled` with a ttl of 3 s and a margin of 1 s:
/// the first confirmation of an outage counted only in the step after the one that asked
/// (which waits out its store read's bound first), and the supervisor's fast stop, a quarter
/// second before the deadline the last step armed, came first in 1 run of 4. A confirmation
/// answered between steps moves the armed deadline at once.
#[tokio::test]
async fn a_confirmation_between_steps_moves_the_fencing_deadline_at_once() {
    let dir = tempfile::tempdir().unwrap();
    // Taken 7.4 s ago for 10 s with a 2.5 s margin: trusted 100 ms more.
    let mut agent = leader_asking_n2(dir.path(), 0, 7_400);
    let after_trust = Millis(pgha_pg::supervisor::STOP_FAST_BEFORE.as_millis() as u64);
    let armed = agent.member.fence_deadline_leaving(Millis(0), after_trust);
    let armed = agent.boot_origin + armed.expect("a lease").0;
    let lease_file = agent.spec.instance.lease_file();
    agent.fencing.update(FenceState::LeaseUntil(armed)).unwrap();
    let requested_at = confirmed_between_steps(&mut agent).await;
    // Halfway between the trust's end (the promise's end less the 2.5 s margin) and the
    // promise's end: 1,750 ms past the round's ask.
    let moved = lease_file.read().expect("armed");
    assert_eq!(moved, agent.boot_origin + requested_at.0 + 1_750);
    assert!(moved > armed + 300, "armed {armed}, now {moved}");
}

/// Found by `faults::etcd_stalls::etcd_member_disk_stalled` under load: with etcd's leader
/// stalled, every member confirmed the leader 9 ms after the step that asked them, but the
/// next step had begun observing already (its store read bounded by the trust it had) and
/// decided without the confirmation, past that trust: it demoted, and another member took
/// over. A confirmation that comes while a step observes counts in that step.
#[tokio::test]
async fn a_confirmation_that_comes_while_a_step_observes_counts_in_that_step() {
    let dir = tempfile::tempdir().unwrap();
    // Taken 7.4 s ago for 10 s with a 2.5 s margin: trusted 100 ms more.
    let mut agent = leader_asking_n2(dir.path(), 0, 7_400);
    agent.ask_failsafe();
    // A step begins observing (it took what had come in so far: nothing); the round ends,
    // and so does the trust the step began with.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (obs, _) = agent.observe().await;
    assert!(matches!(obs.cluster, StoreView::Down { .. }));
    let decision = agent.member.step(&obs);
    assert!(
        agent.member.holds_lease(obs.now),
        "the confirmation did not count: {}",
        decision.reason
    );
}

/// Once a read of the leader's is answered, its rounds stop: that read may show a list
/// naming members the round does not ask (the next step's round asks them).
#[tokio::test]
async fn the_rounds_stop_once_a_read_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = leader_asking_n2(dir.path(), usize::MAX, 0);
    agent.ask_failsafe();
    tokio::time::sleep(Duration::from_millis(250)).await;
    agent.failsafe.observe(false, None, Duration::ZERO);
    let (requested_at, _) = round_outcome(&mut agent, Duration::from_secs(2)).await;
    assert_eq!(requested_at, Millis(0), "no confirmation");
}

/// The rounds stop at the lease deadline they were started under (past it the leader
/// demotes: asking on would only keep the members promising for nothing).
#[tokio::test]
async fn the_rounds_stop_at_the_lease_deadline() {
    let dir = tempfile::tempdir().unwrap();
    // Taken 7.2 s ago for 10 s with a 2.5 s margin: trusted 300 ms more.
    let mut agent = leader_asking_n2(dir.path(), usize::MAX, 7_200);
    agent.ask_failsafe();
    let (requested_at, _) = round_outcome(&mut agent, Duration::from_secs(2)).await;
    assert_eq!(requested_at, Millis(0), "no confirmation");
}
