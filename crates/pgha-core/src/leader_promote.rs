//! The lease holder whose PostgreSQL is still a standby promotes it: the synchronous
//! standbys it counts and the store's set first, so that its first commit is covered.

use crate::action::Action;
use crate::history::EventKind;
use crate::machine::{Member, Plan, Promotion};
use crate::observe::{ClusterView, Observation};
use crate::reason::Reason;
use crate::sync;

impl Member {
    /// Plans the promotion of this leader's PostgreSQL (term `revision`), after what
    /// `synchronous_standby_names` and the store's set must say before its first commit.
    pub(crate) fn promote(
        &mut self,
        obs: &Observation,
        view: &ClusterView,
        revision: u64,
        plan: &mut Plan,
    ) -> Reason {
        let local = &obs.local;
        let last_leader = self.last_leader.clone();
        let me = self.name().clone();
        let term = self.newest_term_in(view);
        let promotion = self.promotion.get_or_insert_with(|| Promotion {
            kind: EventKind::Failover,
            cause: crate::vacancy::promotion_on_held_key(view, &me, last_leader.as_ref(), term),
            from: last_leader,
            lsn: local.lsn,
            switchover_revision: None,
        });
        let kind = promotion.kind;
        // No mode counts a standby the store's set lacks, and none starts asynchronous while
        // the set names other members that may be synchronous (it says this term's commits
        // are on them); strict never does: commits wait from the first one on what the
        // published set covers.
        let applied = sync::before_promotion(
            &self.config,
            self.name(),
            &local.sync_applied,
            &view.sync,
            &view.members,
        );
        let counted = applied
            .clone()
            .unwrap_or_else(|| local.sync_applied.clone());
        if let Some(applied) = applied {
            plan.push(Action::SetSync(applied));
        }
        // The store's set names this member its leader, counting what it will, before the
        // first commit (the agent promotes only once the write is answered).
        if let Some(set) = sync::set_at_promotion(&self.config, self.name(), &counted, &view.sync) {
            sync::UnseenSets::sent(&mut self.sync.unseen, revision, view.sync_revision, &set);
            plan.push(Action::PublishSync {
                set,
                leader_revision: revision,
                key_revision: view.sync_revision,
            });
        }
        plan.push(Action::Promote {
            newest_timeline: crate::rejoin::newest_timeline(view).max(local.timeline),
        });
        Reason::Promoting { kind }
    }
}
