//! The leader keeps PostgreSQL's synchronous standbys and the store's published set in step
//! with the settings, in the order that never lets the set miss a standby PostgreSQL counts.

use crate::action::Action;
use crate::config::SyncMode;
use crate::history::{EventKind, HistoryEvent};
use crate::machine::{Member, Plan};
use crate::observe::{ClusterView, Observation};
use crate::sync::{self, SyncSet, SyncStep};

impl Member {
    /// Keeps PostgreSQL's synchronous standbys and the store's set in step with the settings,
    /// and notes (for the member record) once both match them.
    pub(crate) fn maintain_sync(
        &mut self,
        obs: &Observation,
        view: &ClusterView,
        revision: u64,
        plan: &mut Plan,
    ) {
        let settled = self.sync_step(obs, view, revision, plan);
        let commit_applied = obs.commit_level_applied == Some(self.config.synchronous_commit);
        self.sync.in_force =
            (settled && commit_applied).then(|| sync::SyncInForce::of(&self.config));
    }

    /// One step towards the synchronous settings; whether PostgreSQL and the store match them.
    fn sync_step(
        &mut self,
        obs: &Observation,
        view: &ClusterView,
        revision: u64,
        plan: &mut Plan,
    ) -> bool {
        let local = &obs.local;
        sync::UnseenSets::settle(&mut self.sync.unseen, revision, view.sync_revision);
        let mode = self.config.synchronous_mode;
        let asynchronous = mode == SyncMode::Off
            && view.sync.members.is_empty()
            // one published in another mode says so until published again (an older pgha's,
            // which does not say, is left as it is)
            && view.sync.mode.is_none_or(|m| m == mode)
            && local.sync_applied.is_async();
        if asynchronous {
            // Nothing to publish: the set's leader matters only in a synchronous mode.
            self.sync.removal = None;
            return true;
        }
        let (desired, replicas, stalled) = self.desired_sync(obs, view, revision);
        // A set sent without an answer may still land: what PostgreSQL counts must be in it too.
        let published = sync::UnseenSets::narrow(&self.sync.unseen, &view.sync);
        let mut step = sync::next_step(self.name(), &desired, &local.sync_applied, &published);
        if step == SyncStep::Settled && published != view.sync {
            // Settled against the narrowed set only: the store's own may still differ (the
            // write may have failed for good), so it is sent again until a read shows it.
            step = sync::next_step(self.name(), &desired, &local.sync_applied, &view.sync);
        }
        // The store lost the set this leader goes by (deleted by hand, etcd's data gone): a
        // member whose agent started since would take it for empty, every member eligible.
        let putting_back = step == SyncStep::Settled && view.sync_from_memory;
        // The set says which mode it is in force under (what an empty one means depends on it).
        let new_mode = step == SyncStep::Settled && view.sync.mode.is_some_and(|m| m != mode);
        if putting_back || new_mode {
            step = SyncStep::Publish(SyncSet {
                leader: Some(self.name().clone()),
                ..view.sync.clone()
            });
        }
        if let SyncStep::Publish(set) = &mut step {
            set.mode = Some(mode);
        }
        if !matches!(step, SyncStep::Publish(_)) {
            self.sync.removal = None;
        }
        if let SyncStep::Publish(set) = step {
            // Against the store's set and any still on its way: either may be in force.
            let set = sync::with_possible_holders(set, &view.sync, &view.members);
            step = SyncStep::Publish(sync::with_possible_holders(set, &published, &view.members));
        }
        // Only members that could be elected hold commits for a failover: not a clone's or a
        // backup tool's WAL stream, nor a member that may not be promoted.
        let electable: Vec<_> = replicas
            .iter()
            .filter(|r| {
                view.members
                    .get(&r.name)
                    .is_some_and(|m| !m.tags.nofailover && !m.promotion_vetoed)
            })
            .cloned()
            .collect();
        match step {
            SyncStep::Settled => return true,
            SyncStep::Apply(applied) => {
                self.record_stalled_leaving(obs, &stalled, &applied, plan);
                let degrades = self.config.synchronous_mode != SyncMode::Off;
                if degrades && applied.is_async() && !local.sync_applied.is_async() {
                    self.record_degraded(obs, view, plan);
                }
                plan.push(Action::SetSync(applied));
            }
            SyncStep::Publish(set)
                if !sync::removal_ready(
                    &mut self.sync.removal,
                    revision,
                    &set,
                    &view.sync,
                    &electable,
                    local.lsn,
                    obs.now,
                    self.config.loop_wait_ms,
                    self.config.synchronous_mode != SyncMode::Off,
                ) => {}
            SyncStep::Publish(set) => {
                let names: Vec<&str> = set.members.iter().map(|n| n.as_str()).collect();
                let reason = if putting_back {
                    format!(
                        "the store had no synchronous set (deleted by hand, or etcd lost its \
                         data): put back [{}]",
                        names.join(", ")
                    )
                } else {
                    format!("synchronous set now [{}]", names.join(", "))
                };
                // an empty set published again (its leader or mode changed): nothing to tell
                let still_empty = set.members.is_empty() && view.sync.members.is_empty();
                if putting_back || !still_empty {
                    plan.push(Action::RecordHistory(HistoryEvent {
                        kind: EventKind::SyncChanged,
                        from: None,
                        to: Some(self.name().clone()),
                        timeline: local.timeline,
                        lsn: local.lsn,
                        reason,
                    }));
                }
                sync::UnseenSets::sent(&mut self.sync.unseen, revision, view.sync_revision, &set);
                plan.push(Action::PublishSync {
                    set,
                    leader_revision: revision,
                    key_revision: view.sync_revision,
                });
            }
        }
        false
    }

    /// History says when commits stop waiting for standbys, and which members the store's set
    /// keeps meanwhile (they may hold commits no streaming standby has).
    fn record_degraded(&self, obs: &Observation, view: &ClusterView, plan: &mut Plan) {
        let kept: Vec<&str> = view.sync.members.iter().map(|n| n.as_str()).collect();
        plan.push(Action::RecordHistory(HistoryEvent {
            kind: EventKind::SyncChanged,
            from: None,
            to: Some(self.name().clone()),
            timeline: obs.local.timeline,
            lsn: obs.local.lsn,
            reason: format!(
                "degraded to asynchronous: no standby to confirm commits; the synchronous set \
                 keeps [{}] until a streaming standby holds what they confirmed",
                kept.join(", ")
            ),
        }));
    }
}
