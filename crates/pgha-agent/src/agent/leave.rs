//! Shutting down: stop PostgreSQL, release the leader key, delete the member key (or only detach).

use std::time::Duration;

use crate::execute::timed;
use crate::fence::FenceState;

use super::{Agent, Shutdown, STORE_TIMEOUT};

/// How long leaving waits for a cancelled job to end before it stops PostgreSQL anyway.
const JOBS_END_TIMEOUT: Duration = Duration::from_secs(30);

impl Agent {
    /// Leaves the cluster (or only stops the loop): stops PostgreSQL, releases the leader key
    /// if held, deletes the member key.
    pub(crate) async fn leave(&mut self, how: Shutdown) {
        // a cancelled job may still start PostgreSQL until its task has ended
        if !self.jobs.cancel_all(JOBS_END_TIMEOUT).await {
            tracing::warn!(
                "{}: a cancelled job has not ended after {} s; leaving anyway",
                self.spec.name,
                JOBS_END_TIMEOUT.as_secs()
            );
        }
        let Shutdown::Leave(mode) = how else { return };
        let name = self.spec.name.to_string();
        // Under a name the store gives to another agent, the record, the key and the lease
        // there are that agent's: PostgreSQL is stopped, the store left as it is.
        let ours = !self
            .view
            .as_ref()
            .is_some_and(|view| self.member.name_used_elsewhere(view));
        if let Some((me, json)) = self.not_writable_record().filter(|_| ours) {
            let _ = timed(
                self.store_timeout(),
                self.store.put_member(&me, &json, self.ttl()),
            )
            .await;
        }
        let inst = &self.spec.instance;
        if let Err(e) = inst.stop(mode, Duration::from_secs(60)).await {
            tracing::warn!("{name}: stop failed ({e}); stopping immediately");
            let _ = inst
                .stop(pgha_pg::StopMode::Immediate, Duration::from_secs(60))
                .await;
        }
        if !inst.is_running() {
            let _ = self.fencing.update(FenceState::NothingWritable);
        }
        if !ours {
            tracing::info!(
                "{name}: left without touching the store: its name is another agent's there"
            );
            return;
        }
        if let Ok(Ok(snapshot)) = tokio::time::timeout(STORE_TIMEOUT, self.store.snapshot()).await {
            if let Some(leader) = snapshot.leader.filter(|l| l.holder == name) {
                let _ = tokio::time::timeout(
                    STORE_TIMEOUT,
                    self.store.release_leader(&name, leader.revision),
                )
                .await;
                tracing::info!("{name}: released the leader key");
            }
        }
        let _ = tokio::time::timeout(STORE_TIMEOUT, self.store.delete_member(&name)).await;
        tracing::info!("{name}: PostgreSQL stopped, left the cluster");
    }
}
