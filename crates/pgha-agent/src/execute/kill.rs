//! `Action::KillPostgres`: SIGKILL to every server process of the local PostgreSQL, for a
//! demoted primary whose stop did not take (see `pgha_pg::killed`).

use std::time::Duration;

use crate::agent::Agent;

/// The longest the agent waits for the kill (it blocks up to about half a second; more means
/// `/proc` itself is slow).
const KILL_TIMEOUT: Duration = Duration::from_secs(2);

impl Agent {
    /// Kills the processes of the last postmaster seen alive (its tree while it lives, and
    /// what it left), saying how many could still run.
    pub(super) async fn kill_postgres(&self) {
        let name = self.spec.name.as_str();
        let Some(instance) = self.probe.instance().cloned() else {
            tracing::debug!("{name}: no postmaster seen alive: nothing to kill by");
            return;
        };
        let postmaster = self.spec.instance.postmaster_pid();
        let kill = tokio::task::spawn_blocking(move || instance.kill(postmaster));
        match tokio::time::timeout(KILL_TIMEOUT, kill).await {
            Ok(Ok(0)) => tracing::debug!("{name}: no process of PostgreSQL left to kill"),
            Ok(Ok(n)) => tracing::warn!(
                "{name}: SIGKILL to {n} PostgreSQL processes (postmaster {postmaster:?}): its \
                 demotion's stop did not take; one blocked on the disk ends as its I/O returns"
            ),
            _ => tracing::warn!("{name}: killing PostgreSQL's processes did not end in time"),
        }
    }
}
