//! A job that may make PostgreSQL writable never starts while the fencing deadline cannot be
//! written: the supervisor would not fence a primary whose agent then died or paused.

use std::os::unix::fs::PermissionsExt as _;
use std::sync::Arc;
use std::time::Duration;

use pgha_core::{Action, JobFailure, JobKind, LocalPg, Outcome, StartRole};
use pgha_pg::lease_file::boot_clock_ms;
use pgha_store::{MemoryStore, TokioClock};

use crate::agent::Agent;
use crate::test_spec::{spec, RunningPrimary};

#[tokio::test]
async fn nothing_is_promoted_or_started_as_a_primary_while_the_deadline_cannot_be_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new(Arc::new(TokioClock::new())));
    let (mut agent, _report) = Agent::new(spec(dir.path()), store, Default::default()).unwrap();
    // The lease file's place is taken by a directory: every write of it fails, as on a full
    // or read-only file system.
    let lease = agent.spec.instance.lease_file().path().to_path_buf();
    std::fs::create_dir(&lease).unwrap();
    agent.update_fencing(&LocalPg::default());
    assert!(agent.fence_error.is_some(), "the write did not fail");

    for action in [
        Action::Promote {
            newest_timeline: pgha_core::Timeline(1),
        },
        Action::StartPostgres(StartRole::Primary),
        Action::RestartPostgres(StartRole::Primary),
        Action::Bootstrap,
    ] {
        let kind = action.job().unwrap();
        agent.outcomes.clear();
        agent.start_job(action);
        assert_eq!(agent.jobs.current(), None, "{kind:?} started unfenced");
        assert!(
            matches!(
                agent.outcomes.as_slice(),
                [Outcome::Job { kind: k, result: Err(JobFailure::Unfenced(_)) }] if *k == kind
            ),
            "{kind:?}: {:?}",
            agent.outcomes
        );
    }
    // A standby's jobs do not need the deadline.
    agent.outcomes.clear();
    agent.start_job(Action::StopPostgres(pgha_core::StopMode::Fast));
    assert_eq!(agent.jobs.current(), Some(JobKind::Stop));
    assert!(
        agent
            .jobs
            .cancel_all(std::time::Duration::from_secs(10))
            .await
    );

    // Once it can be written again, nothing is refused.
    std::fs::remove_dir(&lease).unwrap();
    agent.update_fencing(&LocalPg::default());
    assert_eq!(agent.fence_error, None);
}

/// A running standby seen by this agent: in recovery, answering.
fn answering_standby() -> LocalPg {
    LocalPg {
        running: true,
        in_recovery: true,
        ..LocalPg::default()
    }
}

/// Found by review: an agent started beside a running PostgreSQL whose deadline a previous
/// agent armed (it led, asked a promotion that was still replaying, and died) saw a standby,
/// nothing in flight, and disarmed: the promotion then completed with no fence, the lease
/// expired and another member promoted. A deadline this agent did not write stays while a
/// postmaster runs, until it passes.
#[tokio::test]
async fn a_restarted_agent_keeps_the_deadline_a_previous_agent_armed_while_postgres_runs() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let restarted = || {
        let store = Arc::new(MemoryStore::new(Arc::new(TokioClock::new())));
        Agent::new(spec(dir.path()), store, Default::default())
            .unwrap()
            .0
    };
    let mut agent = restarted();
    let postgres = RunningPrimary::start(&agent.spec.instance).await;
    let lease = agent.spec.instance.lease_file();
    let armed = boot_clock_ms() + 60_000;
    lease.arm(armed).unwrap(); // as the previous agent left it

    agent.update_fencing(&answering_standby());
    assert_eq!(
        lease.read(),
        Some(armed),
        "disarmed beside a running postmaster"
    );
    assert!(!agent.known_not_writable);
    // Brought forward by an unanswered renewal of this agent (review): still kept after.
    let sooner = armed - 10_000;
    agent
        .fencing
        .update(crate::fence::FenceState::NoLaterThan(sooner))
        .unwrap();
    agent.update_fencing(&answering_standby());
    assert_eq!(
        lease.read(),
        Some(sooner),
        "disarmed once this agent wrote the file"
    );

    // A deadline that has passed fenced already (or had nobody to): it is not kept.
    let mut agent = restarted();
    lease.arm(boot_clock_ms().saturating_sub(1)).unwrap();
    agent.update_fencing(&answering_standby());
    assert_eq!(lease.read(), None);
    drop(postgres);
}

/// Found by review: a promotion whose job gave up (replay stalled) may still complete, but
/// once the job's failure was taken in, the agent, without the lease, saw a standby and
/// nothing in flight, and disarmed. A promotion asked of a postmaster keeps its deadline
/// until that postmaster is gone.
#[tokio::test]
async fn a_promotion_given_up_on_keeps_the_deadline_until_its_postmaster_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let PromotingUnderLease {
        mut agent,
        lease,
        armed,
        outcome,
        postgres,
    } = PromotingUnderLease::start(dir.path(), spec(dir.path())).await;
    // The job fails (here: PostgreSQL is not a standby), as a stalled promotion's does.
    assert!(
        matches!(
            outcome,
            Outcome::Job {
                kind: JobKind::Promote,
                result: Err(_)
            }
        ),
        "{outcome:?}"
    );
    agent.jobs.ended(JobKind::Promote, true);

    agent.update_fencing(&answering_standby());
    assert_eq!(
        lease.read(),
        Some(armed),
        "disarmed under a promotion asked"
    );
    drop(postgres);
    wait_stopped(&agent.spec.instance).await;
    agent.update_fencing(&LocalPg::default());
    assert_eq!(lease.read(), None, "its postmaster gone: nothing to fence");
}

/// An agent beside a running PostgreSQL (a primary: it cannot be promoted), its deadline
/// armed for a lease of its own a minute on, that asked for a promotion and heard its end.
struct PromotingUnderLease {
    agent: Agent,
    lease: pgha_pg::lease_file::LeaseFile,
    armed: u64,
    outcome: Outcome,
    postgres: RunningPrimary,
}

impl PromotingUnderLease {
    /// `dir` holds `node`'s member directory; the PostgreSQL OS user must read it.
    async fn start(dir: &std::path::Path, node: crate::spec::NodeSpec) -> Self {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let store = Arc::new(MemoryStore::new(Arc::new(TokioClock::new())));
        let (mut agent, _report) = Agent::new(node, store, Default::default()).unwrap();
        let postgres = RunningPrimary::start(&agent.spec.instance).await;
        let lease = agent.spec.instance.lease_file();
        let armed = boot_clock_ms() + 60_000;
        agent
            .fencing
            .update(crate::fence::FenceState::LeaseUntil(armed))
            .unwrap();
        agent.start_job(Action::Promote {
            newest_timeline: pgha_core::Timeline(1),
        });
        let outcome = tokio::time::timeout(Duration::from_secs(30), agent.job_rx.recv())
            .await
            .expect("the promotion job ended")
            .expect("an outcome");
        Self {
            agent,
            lease,
            armed,
            outcome,
            postgres,
        }
    }
}

async fn wait_stopped(instance: &pgha_pg::Instance) {
    for _ in 0..200 {
        if !instance.is_running() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("PostgreSQL did not stop");
}

/// Found by review: the supervisor stops keeping the host's watchdog alive at the fencing
/// deadline, and the watchdog resets the host up to its timeout later (should the supervisor
/// itself stall there). With the margin lowered live to 1.5 s, the deadline half a margin
/// before the store's expiry left a 1 s watchdog 0.25 s too few: PostgreSQL could write after
/// another member could lead. The deadline written leaves the watchdog's timeout before the
/// expiry.
#[tokio::test]
async fn the_deadline_handed_to_the_supervisor_leaves_its_watchdog_room_before_the_expiry() {
    use pgha_core::{
        ClusterConfig, ClusterView, LeaderKey, MemberName, Millis, Observation, StoreView,
    };
    let dir = tempfile::tempdir().unwrap();
    let mut node = spec(dir.path());
    node.instance.watchdog = pgha_pg::supervisor::WatchdogSetting {
        mode: pgha_pg::watchdog::WatchdogMode::Automatic,
        device: dir.path().join("watchdog"),
        timeout_s: 1,
    };
    let store = Arc::new(MemoryStore::new(Arc::new(TokioClock::new())));
    let (mut agent, _report) = Agent::new(node, store, Default::default()).unwrap();
    let config = ClusterConfig {
        ttl_ms: 6_000,
        safety_margin_ms: 1_500,
        loop_wait_ms: 500,
        ..ClusterConfig::default()
    };
    let view = ClusterView {
        leader: Some(LeaderKey {
            holder: MemberName::new("n1"),
            revision: 7,
        }),
        config: config.clone(),
        ..ClusterView::default()
    };
    let primary = LocalPg {
        running: true,
        ..LocalPg::default()
    };
    let acquired = Outcome::LeaderAcquired {
        requested_at: Millis(100),
        revision: 7,
        ttl: config.ttl(),
    };
    let cluster = StoreView::Up(Box::new(view));
    agent.member.step(&Observation::new(
        Millis(100),
        primary.clone(),
        cluster,
        vec![acquired],
    ));
    agent.update_fencing(&primary);
    let armed = agent.spec.instance.lease_file().read().expect("armed");
    let expiry = agent.boot_origin + 100 + 6_000;
    assert_eq!(
        armed,
        expiry - 1_000,
        "armed {} ms before the store may expire the lease",
        expiry - armed
    );
}

/// Found by the whole suite (`pre_promote::a_distributed_cluster_promotes_the_next_candidate_when_pre_promote_vetoes`):
/// a promotion its `pre_promote` callback vetoed was never asked of PostgreSQL, yet counted as
/// asked: the standby's deadline stayed armed and its supervisor stopped it when it passed.
#[tokio::test]
async fn a_vetoed_promotion_was_not_asked_and_keeps_no_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let veto = dir.path().join("pre_promote.sh");
    std::fs::write(&veto, "#!/bin/sh\nexit 3\n").unwrap();
    std::fs::set_permissions(&veto, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut node = spec(dir.path());
    node.callbacks.pre_promote = Some(veto);
    let PromotingUnderLease {
        mut agent,
        lease,
        outcome,
        postgres,
        ..
    } = PromotingUnderLease::start(dir.path(), node).await;
    assert!(
        matches!(
            &outcome,
            Outcome::Job {
                result: Err(JobFailure::Vetoed(_)),
                ..
            }
        ),
        "{outcome:?}"
    );
    agent.job_done(outcome);
    agent.jobs.ended(JobKind::Promote, true);
    agent.update_fencing(&answering_standby());
    assert_eq!(lease.read(), None, "kept armed for a promotion never asked");
    drop(postgres);
}

/// The core decides what to renew and what to publish by the deadline the supervisor holds
/// (a ttl lowered live is renewed with only once that deadline falls before the store's
/// expiry; a resumed leader clears its unfenced mark only once a deadline is held): the
/// observation names it, whoever wrote it, and says it is stuck only when a write failed (at
/// once when none is held).
#[tokio::test]
async fn the_observation_names_the_deadline_the_supervisor_holds() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new(Arc::new(TokioClock::new())));
    let spec = spec(dir.path());
    spec.instance.create_member_dir().unwrap();
    let (mut agent, _report) = Agent::new(spec, store, Default::default()).unwrap();
    let (obs, _) = agent.observe().await;
    assert_eq!((obs.fence_armed_at, obs.fence_stuck_at), (None, None));

    let lease = agent.spec.instance.lease_file();
    lease.arm(boot_clock_ms() + 20_000).unwrap();
    let (obs, _) = agent.observe().await;
    let armed = obs.fence_armed_at.expect("the deadline held");
    let left = armed.0.saturating_sub(obs.now.0);
    assert!((19_000..=20_000).contains(&left), "{left} ms left");
    assert_eq!(obs.fence_stuck_at, None, "no write failed");

    agent.fence_error = Some("No space left on device".into());
    let (obs, _) = agent.observe().await;
    assert_eq!(obs.fence_stuck_at, obs.fence_armed_at);
    assert!(obs.fence_stuck_at.is_some());

    // none held and none can be written: stuck at once (nothing would fence PostgreSQL)
    lease.disarm().unwrap();
    let (obs, _) = agent.observe().await;
    assert_eq!(
        (obs.fence_armed_at, obs.fence_stuck_at),
        (None, Some(obs.now))
    );
    agent.fence_error = None;
    let (obs, _) = agent.observe().await;
    assert_eq!((obs.fence_armed_at, obs.fence_stuck_at), (None, None));
}
