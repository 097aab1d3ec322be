//! Carrying out a decision: the store writes, the quick local actions, long jobs started as
//! tasks (the configuration they render: `execute/render.rs`).

use std::time::Duration;

use pgha_core::{Action, JobFailure, Outcome};
use pgha_pg::probe::{drop_slot, ensure_slot, reset_alter_system};
use pgha_store::{Guard, Key, StoreError};
use serde::Serialize;

use crate::action_error::ActionError;
use crate::agent::{Agent, ANNOUNCE_TIMEOUT, SQL_TIMEOUT};
use crate::jobs::{run_job, JobContext};
use pgha_store::{HistoryEntry, HistoryId};

/// `sql` on the local PostgreSQL, given [`SQL_TIMEOUT`] to answer.
async fn within_sql_timeout<T, E>(
    sql: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, ActionError>
where
    ActionError: From<E>,
{
    let answer = tokio::time::timeout(SQL_TIMEOUT, sql).await;
    Ok(answer.map_err(|_| ActionError::SqlTimeout(SQL_TIMEOUT))??)
}

/// History entries kept for another append at most; past it the oldest is dropped.
const UNRECORDED_HISTORY_LIMIT: usize = 32;

impl Agent {
    pub(crate) async fn execute(&mut self, actions: Vec<Action>) {
        // A fencing demotion goes first: entries still to record wait for the next step.
        let fencing = actions
            .iter()
            .any(|a| matches!(a, Action::Demote { fencing: true, .. }));
        if !fencing {
            self.record_unrecorded_history().await;
        }
        let promotes = actions.iter().any(|a| matches!(a, Action::Promote { .. }));
        let mut actions = actions.into_iter().peekable();
        while let Some(action) = actions.next() {
            if let Some(first) = self.routine_write(&action) {
                let mut writes = vec![first];
                while let Some(next) = actions.peek().and_then(|a| self.routine_write(a)) {
                    actions.next();
                    writes.push(next);
                }
                self.write_together(writes).await;
                continue;
            }
            if action.job().is_some() {
                self.start_job(action);
                continue;
            }
            if let Err(e) = self.execute_one(&action).await {
                tracing::warn!("{}: {} failed: {e}", self.spec.name, action_name(&action));
                // What follows relies on it: a promotion in strict mode on the setting, any
                // promotion on the store's set naming this member (`set_at_promotion`).
                // Decide again.
                let promotion_relies = promotes && matches!(action, Action::PublishSync { .. });
                if matches!(action, Action::SetSync(_)) || promotion_relies {
                    // The core counts a job planned as begun: it hears that these were not.
                    let failed = format!("{} failed: {e}", action_name(&action));
                    for kind in actions.filter_map(|a| a.job()) {
                        self.job_done(Outcome::Job {
                            kind,
                            result: Err(JobFailure::NotBegun(failed.clone())),
                        });
                    }
                    break;
                }
            }
        }
    }

    pub(crate) async fn execute_one(&mut self, action: &Action) -> Result<(), ActionError> {
        let name = self.spec.name.as_str();
        let limit = self.store_limit();
        let store = self.store.clone();
        match action {
            Action::AcquireLeader {
                ttl,
                failsafe_revision,
            } => {
                let sent = self.now();
                let acquire = store.acquire_leader_if(name, *ttl, Some(*failsafe_revision));
                let result = timed(self.lease_taking_limit(), acquire)
                    .await
                    .map(|revision| (revision, *ttl));
                self.lease_answered(lease_outcome(result, sent, true));
            }
            Action::ReleaseLeader { revision } => {
                timed(limit, store.release_leader(name, *revision)).await?;
                self.held_term = None;
            }
            Action::WriteInitialize { system_id } => {
                let json = serde_json::to_string(system_id)?;
                timed(limit, store.put(Key::Initialize, &json, Guard::Absent)).await?;
            }
            Action::PublishSync {
                set,
                leader_revision,
                key_revision,
            } => {
                self.put_as_leader(Key::Sync, set, *leader_revision, *key_revision)
                    .await?
            }
            Action::PublishFailsafe {
                list,
                leader_revision,
                key_revision,
            } => {
                self.put_as_leader(Key::Failsafe, list, *leader_revision, *key_revision)
                    .await?
            }
            // sent together by `execute` (see `routine`)
            Action::RenewLeader { .. }
            | Action::PublishMember(_)
            | Action::PublishPosition { .. } => {
                let write = self.routine_write(action).expect("a routine write");
                self.write_together(vec![write]).await;
            }
            Action::ReturnPromises { term } => self.return_promises(*term),
            Action::ClearSwitchover { revision } => {
                timed(
                    limit,
                    store.delete(Key::Switchover, Guard::Revision(*revision)),
                )
                .await?;
            }
            Action::RecordHistory(event) => {
                tracing::info!("{}: history: {event}", self.spec.name);
                let json = serde_json::to_string(&HistoryEntry::now(event.clone()))?;
                let id = HistoryId::fresh();
                if let Err(e) = timed(limit, store.append_history(&id, &json, Guard::Any)).await {
                    if self.unrecorded_history.len() == UNRECORDED_HISTORY_LIMIT {
                        self.unrecorded_history.remove(0);
                    }
                    self.unrecorded_history.push((id, json));
                    return Err(e.into());
                }
            }
            Action::SetSync(applied) => {
                let before = std::mem::replace(&mut self.sync_applied, applied.clone());
                if let Err(e) = self.rewrite_config(true).await {
                    // Not applied: the core must not publish it as if it were.
                    self.sync_applied = before;
                    return Err(e);
                }
                tracing::info!(
                    "{}: synchronous_standby_names = '{applied}'",
                    self.spec.name
                );
            }
            Action::RestartWalReceiver => {
                let client = self.probe.client(&self.spec, SQL_TIMEOUT).await;
                let client = client.ok_or(ActionError::LocalUnreachable)?;
                within_sql_timeout(pgha_pg::probe::restart_wal_receiver(client, name)).await?;
                tracing::info!("{name}: the leader is reachable again: restarted the WAL receiver");
            }
            Action::CreateSlots { names } => {
                let client = self.probe.client(&self.spec, SQL_TIMEOUT).await;
                let client = client.ok_or(ActionError::LocalUnreachable)?;
                for n in names {
                    let slot = pgha_pg::conf::slot_name(n.as_str());
                    within_sql_timeout(ensure_slot(client, name, &slot)).await?;
                }
            }
            Action::DropSlots { names } => {
                let client = self.probe.client(&self.spec, SQL_TIMEOUT).await;
                let client = client.ok_or(ActionError::LocalUnreachable)?;
                for n in names {
                    let slot = pgha_pg::conf::slot_name(n.as_str());
                    if within_sql_timeout(drop_slot(client, name, &slot)).await? {
                        tracing::info!("{name}: dropped replication slot {slot}");
                    }
                }
            }
            Action::UndoAlterSystem { parameters } => {
                // Only names from pgha's own list reach SQL.
                let owned: Vec<&str> = pgha_pg::conf::refused_parameters()
                    .filter(|p| parameters.iter().any(|q| q == p))
                    .collect();
                let client = self.probe.client(&self.spec, SQL_TIMEOUT).await;
                let client = client.ok_or(ActionError::LocalUnreachable)?;
                within_sql_timeout(reset_alter_system(client, name, &owned)).await?;
                self.probe.forget_alter_system();
                tracing::warn!(
                    "{name}: {} set with ALTER SYSTEM, which overrides what pgha sets: reset \
                     (pgha owns it, or it would stop the member's recovery at a chosen point; \
                     cluster-wide settings go through `pgha config set`)",
                    owned.join(", ")
                );
            }
            Action::KillPostgres => self.kill_postgres().await,
            other => return Err(ActionError::NotQuick(action_name(other))),
        }
        Ok(())
    }

    /// Appends the history entries an earlier append failed to write, oldest first, until
    /// one fails again. An append whose answer was lost may have landed: appended again under
    /// the same id, the store records it once.
    async fn record_unrecorded_history(&mut self) {
        while let Some((id, json)) = self.unrecorded_history.first() {
            let append = self.store.append_history(id, json, Guard::Any);
            if let Err(e) = timed(self.store_limit(), append).await {
                tracing::debug!("{}: history still not recorded: {e}", self.spec.name);
                return;
            }
            self.unrecorded_history.remove(0);
        }
    }

    /// Writes `key` only while this member holds the leader key at `revision` and `key` is still
    /// at `key_revision` (0: absent), as the read the write was decided on showed it (one CAS).
    pub(crate) async fn put_as_leader(
        &self,
        key: Key,
        value: &impl Serialize,
        revision: u64,
        key_revision: u64,
    ) -> Result<(), ActionError> {
        let json = serde_json::to_string(value)?;
        let guard = Guard::LeaderAndKey {
            holder: self.spec.name.to_string(),
            revision,
            key_revision,
        };
        timed(self.store_limit(), self.store.put(key, &json, guard)).await?;
        Ok(())
    }

    /// Starts the job `action` once the running one (cancelled for it) has ended.
    pub(crate) fn start_job(&mut self, action: Action) {
        let kind = action.job().expect("a job");
        if let Some(error) = self
            .fence_error
            .clone()
            .filter(|_| action.may_make_writable())
        {
            // Without the deadline its supervisor would not fence a primary this agent no
            // longer renews (dead, paused): I1 rests on it. Reported as the job's failure.
            self.job_done(Outcome::Job {
                kind,
                result: Err(JobFailure::Unfenced(error)),
            });
            return;
        }
        match &action {
            Action::Follow { leader }
            | Action::Rewind { from: leader }
            | Action::Reclone { from: leader, .. } => self.upstream = Some(leader.clone()),
            Action::StartPostgres(pgha_core::StartRole::Standby { upstream })
            | Action::RestartPostgres(pgha_core::StartRole::Standby { upstream }) => {
                self.upstream = upstream.clone()
            }
            _ => self.upstream = None,
        }
        let what = pgha_core::JobWhat::of(&action).unwrap_or(pgha_core::JobWhat::Job(kind));
        let tx = self.job_tx.clone();
        let announce = matches!(action, Action::Demote { .. } | Action::StopPostgres(_))
            .then(|| self.not_writable_record())
            .flatten();
        let store = self.store.clone();
        let ttl = self.ttl();
        // A fencing demotion (lease lost) stops PostgreSQL first and announces meanwhile, even
        // while a cancelled job still winds down; a planned one says "not writable" first, so
        // the proxy stops routing new sessions here before PostgreSQL stops accepting them,
        // but waits a bounded time for the store.
        let fencing = matches!(
            action,
            Action::Demote { fencing: true, .. }
                | Action::StopPostgres(pgha_core::StopMode::Immediate)
        );
        let limit = ANNOUNCE_TIMEOUT.min(self.store_timeout());
        let announce = announce.map(|(name, json)| async move {
            let _ = timed(limit, store.put_member(&name, &json, ttl)).await;
        });
        let announce = match announce {
            Some(put) if fencing => {
                tokio::spawn(put);
                None
            }
            other => other,
        };
        if matches!(action, Action::Promote { .. }) {
            // until that postmaster is gone, whatever becomes of the job
            let holder = self.spec.instance.pid_file_holder();
            let postmaster = self.postmaster_for_fencing(holder);
            self.fencing.promotion_asked_of(postmaster);
        }
        let may_make_writable = action.may_make_writable();
        let spec = self.spec.clone();
        let (peers, dynamic) = (self.peers(), self.dynamic());
        let cancelled = self
            .jobs
            .start(kind, may_make_writable, move |cancelled| async move {
                if let Some(put) = announce {
                    put.await;
                }
                let ctx = JobContext {
                    spec,
                    peers,
                    dynamic,
                    cancelled: cancelled.clone(),
                };
                let result = run_job(ctx, action).await;
                // a cancelled job's outcome is no news: the core runs its successor
                if !cancelled.is_set() {
                    let _ = tx.send(Outcome::Job { kind, result });
                }
            });
        if let Some(running) = cancelled {
            tracing::warn!("{}: cancelling {running:?} for {kind:?}", self.spec.name);
            if running == pgha_core::JobKind::Restart {
                let cancelled = format!("cancelled for {kind:?}");
                self.restart_done(&Err(pgha_core::JobFailure::Failed(cancelled)));
            }
        }
        tracing::info!("{}: starting {what}", self.spec.name);
    }

    /// This member's published record marked as not writable (None when it was not writable),
    /// with why it stepped down when it did.
    pub(crate) fn not_writable_record(&self) -> Option<(String, String)> {
        let record = self.view.as_ref()?.members.get(&self.spec.name)?;
        if record.in_recovery || !record.running {
            return None;
        }
        let record = pgha_core::MemberRecord {
            in_recovery: true,
            stepped_down: self.member.stepped_down(),
            ..record.clone()
        };
        Some((
            self.spec.name.to_string(),
            serde_json::to_string(&record).ok()?,
        ))
    }
}

/// Bounds a store call by `limit`.
pub(crate) async fn timed<T>(
    limit: Duration,
    call: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(limit, call).await.unwrap_or_else(|_| {
        Err(StoreError::Unavailable(format!(
            "no answer within {} ms",
            limit.as_millis()
        )))
    })
}

fn action_name(action: &Action) -> String {
    let text = format!("{action:?}");
    text.split(['(', ' ', '{'])
        .next()
        .unwrap_or("action")
        .to_string()
}

#[path = "execute/kill.rs"]
mod kill;
#[path = "execute/lease_answers.rs"]
mod lease_answers;
#[path = "execute/render.rs"]
mod render;
use lease_answers::lease_outcome;
#[path = "execute/routine.rs"]
mod routine;

#[cfg(test)]
#[path = "execute/fence_tests.rs"]
mod fence_tests;
#[cfg(test)]
#[path = "execute/history_tests.rs"]
mod history_tests;
#[cfg(test)]
#[path = "execute/publish_tests.rs"]
mod publish_tests;
