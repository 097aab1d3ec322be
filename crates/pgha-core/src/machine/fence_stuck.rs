//! A leader whose fencing deadline can no longer be moved hands over before its supervisor fences.

use super::release::PendingRelease;
use super::{Member, Plan};
use crate::action::{Action, StopMode};
use crate::observe::Observation;
use crate::reason::Reason;
use crate::types::Millis;

impl Member {
    /// Its supervisor kills PostgreSQL at the deadline the lease file still holds, however
    /// long the store's lease is renewed (I1 does not rest on this agent). A leader that could
    /// not write a later one (the file system holding the file is full, ...) keeps serving
    /// until a safety margin before that instant, so that a write that fails once and then
    /// succeeds changes nothing; then it stops PostgreSQL cleanly (a fast shutdown: its
    /// standbys receive every WAL record), lets go of the lease once it is not writable, and
    /// stays out of failovers like a vetoed member: its own promotion would be refused too.
    pub(crate) fn hand_over_if_fence_stuck(
        &mut self,
        obs: &Observation,
        revision: u64,
        plan: &mut Plan,
    ) -> Option<Reason> {
        let armed = obs.fence_stuck_at?;
        if self.config.paused || !obs.local.is_writable() {
            return None;
        }
        let demote_at = Millis(armed.0.saturating_sub(self.config.margin_ms()));
        if obs.now < demote_at {
            plan.wake_by(demote_at);
            return None;
        }
        self.promotion = None;
        self.handover = None;
        self.demoted = true;
        self.release_after_demote = Some(PendingRelease::once_not_writable(
            revision,
            Reason::FenceStuckHandedOver,
        ));
        self.vetoed_until = Some(obs.now.plus(self.config.veto_hold_ms()));
        plan.push(Action::Demote {
            mode: StopMode::Fast,
            fencing: false,
        });
        Some(Reason::FenceStuckDemoting {
            fenced_in_ms: armed.0.saturating_sub(obs.now.0),
        })
    }
}
