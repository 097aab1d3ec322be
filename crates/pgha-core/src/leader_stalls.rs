//! The leader's synchronous standbys that stopped confirming: another standby takes the role of
//! each, never fewer counted, and history says why.

use crate::action::Action;
use crate::config::CommitLevel;
use crate::history::{EventKind, HistoryEvent};
use crate::machine::{Member, Plan};
use crate::observe::{ClusterView, Observation, ReplicaState};
use crate::sync::{self, SyncApplied};

impl Member {
    /// The synchronous configuration the leader wants now, the replication it judged by, and
    /// the standbys found to have stopped confirming (see [`sync::StandbyStalls`]).
    ///
    /// A stalled standby is left out only while the standbys that remain are enough for the
    /// count: commits then move to a standby that confirms. It is never a reason to count
    /// fewer standbys (mode `on` going asynchronous, a quorum shrinking): a standby cut off for
    /// a few seconds would open a window in which commits acknowledged by the primary alone
    /// are lost with it. That happens, as before, only once the replication timeout ends the
    /// connection.
    pub(crate) fn desired_sync(
        &mut self,
        obs: &Observation,
        view: &ClusterView,
        revision: u64,
    ) -> (SyncApplied, Vec<ReplicaState>, Vec<sync::Stalled>) {
        let local = &obs.local;
        let members = self.sync.kept.members_for_sync(
            revision,
            &view.members,
            &local.replicas,
            &local.sync_applied,
            obs.now,
            self.config.ttl_ms,
        );
        let desired_of = |member: &Member, replicas: &[ReplicaState]| {
            sync::desired(
                &member.config,
                member.name(),
                replicas,
                &members,
                &local.sync_applied,
            )
        };
        let mut all = desired_of(self, &local.replicas);
        // A new primary's standbys are still connecting: `on` does not start asynchronous.
        let reconnecting = self.sync.reconnecting.as_ref();
        if all.is_async()
            && !local.sync_applied.is_async()
            && sync::Reconnecting::holds(reconnecting, &self.config, revision, obs.now)
        {
            all = local.sync_applied.clone();
        }
        let waits_for_replay = [
            Some(self.config.synchronous_commit),
            obs.commit_level_applied,
        ]
        .contains(&Some(CommitLevel::RemoteApply));
        let confirms = if waits_for_replay {
            sync::Confirms::Replayed
        } else {
            sync::Confirms::Flushed
        };
        // Against what the primary flushed: standbys can have nothing beyond it (its own disk
        // stalling holds them all back, and that is no standby's fault).
        let stalled = self.sync.stalls.observe(
            revision,
            &local.replicas,
            local.flushed_lsn,
            confirms,
            obs.now,
            self.config.stalled_standby_ms(),
        );
        if stalled.is_empty() {
            return (all, local.replicas.clone(), stalled);
        }
        let healthy_replicas = sync::without_stalled(&local.replicas, &stalled);
        let healthy = desired_of(self, &healthy_replicas);
        if healthy.count < all.count {
            return (all, local.replicas.clone(), Vec::new());
        }
        (healthy, healthy_replicas, stalled)
    }

    /// History says which standby PostgreSQL stops counting for having stopped confirming, as
    /// `applied` is applied, and why.
    pub(crate) fn record_stalled_leaving(
        &self,
        obs: &Observation,
        stalled: &[sync::Stalled],
        applied: &SyncApplied,
        plan: &mut Plan,
    ) {
        let local = &obs.local;
        let leaving = stalled.iter().filter(|s| {
            local.sync_applied.names.contains(&s.name) && !applied.names.contains(&s.name)
        });
        for s in leaving {
            plan.push(Action::RecordHistory(HistoryEvent {
                kind: EventKind::SyncChanged,
                from: Some(s.name.clone()),
                to: Some(self.name().clone()),
                timeline: local.timeline,
                lsn: local.lsn,
                reason: format!(
                    "{} {} nothing for {:.1} s while the primary was ahead ({} at {}, the \
                     primary at {}): no longer counted as a synchronous standby until it moves \
                     again; another confirms commits meanwhile",
                    s.name,
                    s.what.verb(),
                    s.for_ms as f64 / 1000.0,
                    s.name,
                    s.at,
                    local.flushed_lsn
                ),
            }));
        }
    }
}
