//! A leader key of this member's name that it holds no lease of: left by an earlier agent of
//! it, or landed from an acquisition whose answer was lost. Adopted, or, when a leaderless
//! step decided since not to run any more, released.

use crate::action::Action;
use crate::machine::Member;
use crate::machine::Plan;
use crate::observe::{ClusterView, DataDir, Observation};
use crate::reason::Reason;
use crate::sync;
use crate::StopMode;

impl Member {
    /// An acquisition was sent: until it is answered it may land, whatever comes later.
    pub(crate) fn acquisition_sent(&mut self) {
        self.acquisition_unanswered = true;
        self.acquisition_withdrawn = false;
    }

    /// An acquisition was answered, or can no longer land (another term began).
    pub(crate) fn acquisition_settled(&mut self) {
        self.acquisition_unanswered = false;
        self.acquisition_withdrawn = false;
    }

    /// The election, and what it means for an acquisition sent earlier and not answered: a
    /// step that does not run again withdraws it.
    pub(crate) fn leaderless_step(
        &mut self,
        obs: &Observation,
        view: &ClusterView,
        plan: &mut Plan,
    ) -> Reason {
        let reason = self.election_step(obs, view, plan);
        let runs = plan
            .actions
            .iter()
            .any(|a| matches!(a, Action::AcquireLeader { .. }));
        if self.acquisition_unanswered && !runs {
            self.acquisition_withdrawn = true;
        }
        reason
    }

    /// The leader key carries our name but we hold no trusted lease (agent restart, or an
    /// acquire whose answer was lost): renew to adopt it; demote if writable meanwhile. Sets a
    /// former agent may have sent in this term bound what PostgreSQL may count meanwhile, and
    /// its lists leave the leader no failsafe list to go by until the key moves.
    pub(crate) fn adopt(
        &mut self,
        obs: &Observation,
        view: &ClusterView,
        revision: u64,
        plan: &mut Plan,
    ) -> Reason {
        if self.acquisition_withdrawn {
            return self.release_withdrawn(obs, revision, plan);
        }
        let since = *self.adopting_since.get_or_insert(obs.now);
        if obs.now.since(since) > self.config.loop_wait_ms
            && self.demote_if_writable(&obs.local, StopMode::Immediate, plan)
        {
            return Reason::WritableWithoutLease;
        }
        let name = self.name().clone();
        let counted = &obs.local.sync_applied;
        sync::UnseenSets::adopted(
            &mut self.sync.unseen,
            revision,
            view.sync_revision,
            &name,
            counted,
        );
        self.failsafe_adopted(revision, view);
        // Standbys that stream have connected; with none, it may have been promoted a moment
        // ago, its standbys still connecting.
        let counted_streaming = obs
            .local
            .replicas
            .iter()
            .any(|r| r.streaming && obs.local.sync_applied.names.contains(&r.name));
        if obs.local.is_writable() && !counted_streaming {
            sync::Reconnecting::start(&mut self.sync.reconnecting, revision, since);
        }
        self.last_renew_request = None;
        self.renew_if_due(obs, revision, plan);
        Reason::AdoptingLease {
            new_cluster: obs.local.data == DataDir::Missing && view.initialize.is_none(),
        }
    }

    /// A step that does not run for leader because its PostgreSQL does not answer withdraws
    /// an unanswered acquisition too (the key may land meanwhile; it is judged once
    /// PostgreSQL answers again).
    pub(crate) fn withdraw_while_unresponsive(&mut self, view: &ClusterView) {
        let ours_unheld =
            |holder: &crate::MemberName| holder == self.name() && self.lease.is_none();
        let vacant_or_landed = view.leader.as_ref().is_none_or(|l| ours_unheld(&l.holder));
        if self.acquisition_unanswered && vacant_or_landed {
            self.acquisition_withdrawn = true;
        }
    }

    /// The key landed from a withdrawn acquisition (a better candidate back, a pause since):
    /// the election it was decided on has moved on, so it is released (again each step until
    /// it is gone) as a lapsed term's is, never adopted and promoted on.
    /// Not a lease that lapsed in a term it led: nothing is recorded as a step-down.
    fn release_withdrawn(&mut self, obs: &Observation, revision: u64, plan: &mut Plan) -> Reason {
        self.acquisition_unanswered = false;
        self.promotion = None;
        if self.demote_if_writable(&obs.local, StopMode::Fast, plan) {
            return Reason::WritableWithoutLease;
        }
        plan.push(Action::ReleaseLeader { revision });
        Reason::WithdrawnAcquisitionReleased
    }
}
