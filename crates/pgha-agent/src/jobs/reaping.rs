//! A dead postmaster's zombie, waited for (bounded) until its parent reaps it.

use std::time::{Duration, Instant};

use pgha_pg::pid_file::PidFileHolder;

/// How long a dead postmaster may stay an unreaped zombie before PostgreSQL is started
/// anyway. A zombie is no running PostgreSQL and the supervisor has PostgreSQL disregard its
/// pid, but its parent reaps it within moments unless that parent never reaps (pgha as a
/// container's pid 1, which adopts the postmaster of a killed supervisor), and meanwhile the
/// killed postmaster's backends finish dying (PostgreSQL refuses to start beside them).
const REAP_WAIT: Duration = Duration::from_secs(2);

/// Waits (bounded) until a dead postmaster's zombie is gone.
pub(super) async fn wait_reaped(inst: &pgha_pg::Instance) {
    let deadline = Instant::now() + REAP_WAIT;
    while matches!(inst.pid_file_holder(), PidFileHolder::Zombie(_)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
