//! A step while the store does not answer: the lease trusted until it lapses, then demoted,
//! then the lapsed term's key let go unseen.

use super::{Member, Plan};
use crate::action::{Action, StopMode};
use crate::observe::{JobKind, Observation};
use crate::reason::Reason;

impl Member {
    pub(super) fn store_down(&mut self, obs: &Observation, error: &str, plan: &mut Plan) -> Reason {
        // Time without a leader counts only while the store shows it: a member cut off from the
        // store has not seen the others publish their positions, and must wait for them anew.
        self.leaderless_since = None;
        self.listed_promises_end.clear();
        self.store_was_down = true;
        if let Some(reason) = self.fence_if_expired(obs, plan) {
            return reason;
        }
        if let Some(lease) = self.lease {
            self.renew_if_due(obs, lease.revision, plan);
            return Reason::StoreDownLeaseTrusted {
                remaining_ms: lease.trusted_until.since(obs.now),
            };
        }
        if self.running_job() == Some(JobKind::Demote) {
            // already demoting: say so (PostgreSQL was not found writable again)
            if let Some(running) = self.job_running(obs.now) {
                return running;
            }
        }
        if self.demote_if_writable(&obs.local, StopMode::Immediate, plan) {
            return Reason::WritableWithoutLease;
        }
        // Nothing writes now: the lapsed term's key is let go unseen, so that the election
        // need not wait out a store lease that renewals landing late kept alive (a slow
        // store; a cut one drops the release too, and its lease runs out as before); the
        // promises of that term are given back first.
        if let Some(term) = self.release_unseen.take() {
            if self.lost_term == Some(term) {
                self.lost_term = None; // given back here
            }
            plan.push(Action::ReturnPromises { term });
            plan.push(Action::ReleaseLeader { revision: term });
            return Reason::LapsedLeaseReleasedUnseen { term };
        }
        Reason::StoreDown {
            error: error.to_string(),
        }
    }
}
