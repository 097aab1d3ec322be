//! Shutting down: stop PostgreSQL, release the leader key, delete the member key (or only detach).

use std::time::Duration;

use crate::execute::timed;
use crate::fence::FenceState;

use super::{Agent, Shutdown, STORE_TIMEOUT};

/// How long leaving waits for a cancelled job to end before it stops PostgreSQL anyway.
const JOBS_END_TIMEOUT: Duration = Duration::from_secs(30);
/// How long each stop of PostgreSQL may take as the agent leaves (the mode asked, then
/// immediate if that failed).
const PG_STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest a leave can take: the cancelled jobs waited for, both stops, and its seven
/// store calls (the record, the promises given back, the read, the `unfenced` mark, the list,
/// the release, the member key), each bounded. What an operator's `pgha stop` waits for at
/// most.
pub const LEAVE_PATIENCE: Duration = Duration::from_secs(
    JOBS_END_TIMEOUT.as_secs() + 2 * PG_STOP_TIMEOUT.as_secs() + 7 * STORE_TIMEOUT.as_secs(),
);

impl Agent {
    /// Leaves the cluster (or only stops the loop): stops PostgreSQL, releases the leader key
    /// of the term this agent held, deletes the member key.
    pub(crate) async fn leave(&mut self, how: Shutdown) {
        self.leave_waiting(how, JOBS_END_TIMEOUT).await
    }

    /// [`Agent::leave`], waiting up to `jobs_end` for a cancelled job to end.
    pub(crate) async fn leave_waiting(&mut self, how: Shutdown, jobs_end: Duration) {
        // a cancelled job may still start PostgreSQL until its task has ended
        let jobs_ended = self.jobs.cancel_all(jobs_end).await;
        if !jobs_ended {
            tracing::warn!(
                "{}: a cancelled job has not ended after {} ms; leaving anyway",
                self.spec.name,
                jobs_end.as_millis()
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
        if let Err(e) = inst.stop(mode, PG_STOP_TIMEOUT).await {
            tracing::warn!("{name}: stop failed ({e}); stopping immediately");
            let _ = inst
                .stop(pgha_pg::StopMode::Immediate, PG_STOP_TIMEOUT)
                .await;
        }
        if !jobs_ended && self.jobs.may_make_writable() {
            // The job may still start PostgreSQL as a primary once its blocked call returns:
            // as with a stop that failed, the fence stays armed and the keys stay.
            tracing::error!(
                "{name}: a job that may start PostgreSQL writable has not ended: the leader \
                 key, if held, and the member key are kept until their leases expire; the \
                 supervisor stops PostgreSQL at its fencing deadline"
            );
            return;
        }
        if inst.is_running() {
            // A key given up now would let another member promote while this PostgreSQL may
            // still write: the keys stay, and expire as an agent's that died (the lease after
            // the supervisor's deadline).
            tracing::error!(
                "{name}: PostgreSQL is still running (its stop failed): the leader key, if held, \
                 and the member key are kept until their leases expire; the supervisor stops \
                 PostgreSQL at its fencing deadline"
            );
            return;
        }
        let _ = self.fencing.update(FenceState::NothingWritable);
        // Nothing it writes relies on the members' failsafe promises any more: given back
        // before the key goes, so that the next leader need not wait them out.
        if let Some(giving) = self
            .held_term
            .and_then(|term| self.promises_given_back(term, "its PostgreSQL stopped as it leaves"))
        {
            let _ = tokio::time::timeout(STORE_TIMEOUT, giving).await;
        }
        if !ours {
            tracing::info!(
                "{name}: left without touching the store: its name is another agent's there"
            );
            return;
        }
        if let Ok(Ok(snapshot)) = tokio::time::timeout(STORE_TIMEOUT, self.store.snapshot()).await {
            self.clear_unfenced_mark(&snapshot).await;
            let held = |l: &&pgha_store::LeaderRecord| {
                l.holder == name && Some(l.revision) == self.held_term
            };
            if let Some(leader) = snapshot.leader.as_ref().filter(held) {
                self.list_only_itself(&snapshot, leader.revision).await;
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

impl Agent {
    /// A leader whose PostgreSQL stopped leaves a failsafe list naming only itself: it can no
    /// longer write on anyone's confirmations, and a member outside its list would otherwise
    /// wait for a listed one to read the store for a ttl, forever if every listed member has
    /// left too (stopped one after the other by an operator). Written as the leader, before the
    /// key is released, on the revision of the list read.
    async fn list_only_itself(&self, snapshot: &pgha_store::Snapshot, term: u64) {
        let me = self.spec.name.clone();
        let Ok(view) = pgha_store::cluster_view(snapshot) else {
            return;
        };
        let Some(list) = view.failsafe.filter(|l| l.leader == me) else {
            return;
        };
        if list.confirmers().next().is_none() {
            return;
        }
        let alone = pgha_core::FailsafeList {
            leader: me.clone(),
            members: [me.clone()].into(),
        };
        let Ok(json) = serde_json::to_string(&alone) else {
            return;
        };
        let guard = pgha_store::Guard::LeaderAndKey {
            holder: me.to_string(),
            revision: term,
            key_revision: view.failsafe_revision,
        };
        let put = self.store.put(pgha_store::Key::Failsafe, &json, guard);
        if let Ok(Ok(_)) = tokio::time::timeout(STORE_TIMEOUT, put).await {
            tracing::info!("{me}: leaving: its failsafe list names only itself now");
        }
    }

    /// A leader that stopped its PostgreSQL while paused says so as it leaves: the position it
    /// published as unfenced would otherwise keep every other member from taking over
    /// (`Reason::FormerLeaderUnfenced`), and its record goes with it. Written only if nobody
    /// wrote the position since it was read, whether or not this member still holds the key
    /// (a slow stop may outlast its lease).
    async fn clear_unfenced_mark(&self, snapshot: &pgha_store::Snapshot) {
        let name = self.spec.name.as_str();
        let (Some(stored), Ok(view)) = (
            snapshot.get(pgha_store::Key::Position),
            pgha_store::cluster_view(snapshot),
        ) else {
            return;
        };
        let Some(mut position) = view.leader_position else {
            return;
        };
        if !position.unfenced || position.leader.as_str() != name {
            return;
        }
        position.unfenced = false;
        let Ok(json) = serde_json::to_string(&position) else {
            return;
        };
        let guard = pgha_store::Guard::Revision(stored.revision);
        let put = self.store.put(pgha_store::Key::Position, &json, guard);
        match tokio::time::timeout(STORE_TIMEOUT, put).await {
            Ok(Ok(_)) => {
                tracing::info!("{name}: PostgreSQL stopped: its fencing off no longer matters")
            }
            Ok(Err(e)) => {
                tracing::warn!("{name}: cannot publish that its PostgreSQL stopped ({e})")
            }
            Err(_) => tracing::warn!("{name}: publishing that its PostgreSQL stopped timed out"),
        }
    }
}

#[cfg(test)]
#[path = "leave_tests.rs"]
mod tests;
