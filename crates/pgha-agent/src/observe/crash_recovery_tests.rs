//! The single-user crash recovery an agent runs at start, and the directories it leaves alone.

use std::os::unix::fs::PermissionsExt as _;
use std::sync::Arc;
use std::time::Duration;

use pgha_store::{MemoryStore, TokioClock};

use crate::agent::Agent;
use crate::test_spec::{spec, RunningPrimary};

/// A primary's directory left "in production" (its PostgreSQL quit at once): with `marked`,
/// the marker of a rewind left unfinished beside it. The state the agent's start leaves.
async fn state_after_agent_start(marked: bool) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let node = spec(dir.path());
    let inst = node.instance.clone();
    let primary = RunningPrimary::start(&inst).await;
    drop(primary); // SIGQUIT: no shutdown checkpoint
    let stopped =
        pgha_testkit::wait::poll(Duration::from_secs(10), Duration::from_millis(20), || {
            (!inst.is_running()).then_some(())
        });
    assert!(stopped.is_some(), "the test's PostgreSQL did not quit");
    if marked {
        std::fs::write(inst.rewind_marker(), "").unwrap();
    }
    let store = Arc::new(MemoryStore::new(Arc::new(TokioClock::new())));
    let (agent, _report) = Agent::new(node, store, Default::default()).unwrap();
    agent.finish_crash_recovery().await;
    inst.controldata().await.unwrap().cluster_state
}

/// Found by review: the agent finished crash recovery in single-user mode on any stopped
/// primary's directory, one a rewind left unfinished too (pg_rewind's preparation removes the
/// signal files), though such a directory is never to be started. It is left as it is; an
/// ordinary crashed primary still has its crash recovery finished.
#[tokio::test]
async fn crash_recovery_at_start_leaves_a_half_rewound_directory_alone() {
    assert_eq!(state_after_agent_start(true).await, "in production");
    assert_eq!(state_after_agent_start(false).await, "shut down");
}
