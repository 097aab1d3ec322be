//! Letting go of the lease only once PostgreSQL can no longer write: after a demotion, and
//! after a promotion that failed while PostgreSQL still runs (it may yet complete).

use super::{Member, Plan};
use crate::action::{Action, StopMode};
use crate::observe::LocalPg;
use crate::reason::Reason;

/// A release of the lease of term `term` that waits for PostgreSQL.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct PendingRelease {
    pub term: u64,
    /// Said once the lease goes.
    pub reason: Reason,
    /// Waits until PostgreSQL is stopped, not only out of writes (a promotion in flight shows
    /// a server in recovery that may leave it at any moment), saying this meanwhile.
    pub until_stopped: Option<Reason>,
}

/// What a pending release asks of this step.
pub(crate) enum ReleaseStep {
    /// Let go of the lease now, saying this.
    Now(Reason),
    /// Keep it (renewed) while PostgreSQL is being stopped, saying this.
    Wait(Reason),
}

impl PendingRelease {
    /// Released once PostgreSQL is not writable (demoted: restarted as a standby).
    pub fn once_not_writable(term: u64, reason: Reason) -> Self {
        PendingRelease {
            term,
            reason,
            until_stopped: None,
        }
    }
}

impl Member {
    /// The reason to let go of the lease of term `revision` once what was begun for it in
    /// that term is done (one begun in an earlier term is forgotten). A stop that has not
    /// taken yet (its job failed) is asked for again, the lease kept meanwhile.
    pub(crate) fn release_once_demoted(
        &mut self,
        local: &LocalPg,
        revision: u64,
        plan: &mut Plan,
    ) -> Option<ReleaseStep> {
        if self
            .release_after_demote
            .as_ref()
            .is_some_and(|pending| pending.term != revision)
        {
            self.release_after_demote = None;
        }
        let pending = self.release_after_demote.as_ref()?;
        if let Some(waiting) = pending.until_stopped.clone().filter(|_| local.running) {
            plan.push(Action::StopPostgres(StopMode::Immediate));
            return Some(ReleaseStep::Wait(waiting));
        }
        if local.is_writable() {
            return None;
        }
        self.release_after_demote
            .take()
            .map(|pending| ReleaseStep::Now(pending.reason))
    }

    /// `pg_ctl promote` failed while PostgreSQL still runs: the promotion may go on and
    /// complete after the lease has gone to another member (its startup process was only slow:
    /// a stalled disk, a paused process), a second writer. It is stopped first; the lease is
    /// let go once it is down (renewed meanwhile: the supervisor still fences by it).
    pub(crate) fn stop_before_release(
        &mut self,
        term: u64,
        error: String,
        plan: &mut Plan,
    ) -> Reason {
        self.promotion = None;
        self.demoted = true;
        let waiting = Reason::PromoteFailedStopping {
            error: error.clone(),
        };
        self.release_after_demote = Some(PendingRelease {
            term,
            reason: Reason::PromoteFailed { error },
            until_stopped: Some(waiting.clone()),
        });
        plan.push(Action::StopPostgres(StopMode::Immediate));
        waiting
    }
}
