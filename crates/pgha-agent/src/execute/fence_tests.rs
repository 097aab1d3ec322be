//! A job that may make PostgreSQL writable never starts while the fencing deadline cannot be
//! written: the supervisor would not fence a primary whose agent then died or paused.

use std::sync::Arc;

use pgha_core::{Action, JobFailure, JobKind, LocalPg, Outcome, StartRole};
use pgha_store::{MemoryStore, TokioClock};

use crate::agent::Agent;
use crate::test_spec::spec;

#[tokio::test]
async fn nothing_is_promoted_or_started_as_a_primary_while_the_deadline_cannot_be_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new(Arc::new(TokioClock::new())));
    let (mut agent, _report) = Agent::new(spec(dir.path()), store, Default::default());
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
