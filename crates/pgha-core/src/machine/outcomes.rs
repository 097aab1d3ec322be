//! Bookkeeping of earlier actions' outcomes: lease answers, failsafe confirmations, job results.

use super::lease::HeldLease;
use super::Member;
use crate::history::EventKind;
use crate::job_what::JobWhat;
use crate::observe::{JobFailure, JobKind, Outcome};
use crate::types::Millis;

impl Member {
    pub(super) fn absorb(&mut self, outcomes: &[Outcome], now: Millis) {
        for outcome in outcomes {
            match outcome {
                Outcome::LeaderAcquired {
                    requested_at,
                    revision,
                    ttl,
                }
                | Outcome::LeaderRenewed {
                    requested_at,
                    revision,
                    ttl,
                } => {
                    if self.lapsed_term == Some(*revision) {
                        // A late answer for a term already given up here: PostgreSQL was
                        // demoted on it; the election, not this answer, decides what follows.
                        continue;
                    }
                    // The store's lease, not the configured ttl, bounds the trust: after a
                    // live ttl change they differ until the store has re-granted the lease.
                    // A renewal sent later than this answer's request may have landed: the
                    // lowest cap among those caps it.
                    let cap = self.expiry_caps.answered(*requested_at);
                    if self.lease.map(|l| l.revision) != Some(*revision) {
                        // A term of its own begins: why it stepped down before is history.
                        self.stepped_down = None;
                    }
                    let later = self
                        .lease
                        .filter(|l| l.revision == *revision && l.renewed_at > *requested_at);
                    let answered = HeldLease::new(
                        *revision,
                        *requested_at,
                        *ttl,
                        cap,
                        self.config.margin_for(ttl.millis()),
                    );
                    self.lease = Some(match later {
                        // Trusted from a later instant (a renewal, or failsafe confirmations).
                        Some(mut kept) => {
                            kept.answered_late(&answered);
                            kept
                        }
                        None => answered,
                    });
                    self.adopting_since = None;
                    self.acquisition_settled();
                }
                Outcome::LeaderRefused => {
                    // The term held is over (its lease gone, or the key another's): its
                    // promises go back once nothing writes on them, as for a key found lost.
                    self.lose_lease();
                    self.promotion = None;
                    self.acquisition_settled();
                }
                Outcome::LeaderUnknown => {}
                Outcome::FailsafeConfirmed {
                    requested_at,
                    promised_ms,
                } => self.count_failsafe_confirmation(*requested_at, *promised_ms),
                Outcome::Job { kind, result } => self.job_done(*kind, result, now),
            }
        }
    }

    fn job_done(&mut self, kind: JobKind, result: &Result<(), JobFailure>, now: Millis) {
        if self.job.map(|(k, _)| k) != Some(kind) {
            return; // a job cancelled by a fencing demote reports late: ignore it
        }
        self.job = None;
        match (kind, result) {
            // Nothing was done: the next step decides as if it had never been planned.
            (_, Err(JobFailure::NotBegun(_))) => {}
            (JobKind::Promote, Err(e)) => {
                if e.holds_out() {
                    self.vetoed_until = Some(now.plus(self.config.veto_hold_ms()));
                } else {
                    // Asked of PostgreSQL and given up on: it may yet complete.
                    self.promotion_may_complete = true;
                }
                self.promote_error = Some(e.clone());
            }
            // Stopped on the way: whatever promotion was asked cannot complete now.
            (JobKind::Demote | JobKind::Stop, Ok(())) => self.promotion_may_complete = false,
            // Its WAL is the new timeline's beginning: nothing of it can have diverged.
            (JobKind::Promote, Ok(())) => self.force_rewind = false,
            // The data stayed in place: once there is room, a rewind may do (a full disk is no
            // divergence); until then nothing is tried again for a ttl.
            (JobKind::Reclone | JobKind::Rewind, Err(JobFailure::NoRoom(why))) => {
                self.rewind_failed = false;
                self.no_room = Some((why.clone(), now.plus(self.config.ttl_ms)));
            }
            // Nothing was changed and no divergence shown: the rewind is tried again.
            (JobKind::Rewind, Err(JobFailure::SourceUnreachable(_))) => {}
            (JobKind::Rewind, Err(_)) => self.rewind_failed = true,
            (JobKind::Rewind, Ok(())) => {
                self.force_rewind = false;
                self.rejoin = Some(EventKind::RejoinRewind);
            }
            (JobKind::Reclone, Err(_)) => {
                let failures = self.clone_failed.map_or(0, |(n, _)| n) + 1;
                self.clone_failed = Some((failures, now));
            }
            (JobKind::Reclone, Ok(())) => {
                self.clone_failed = None;
                self.rewind_failed = false;
                self.force_rewind = false;
                // A former primary rejoining, or any member whose data was moved aside for a
                // new copy: the history says so (a first clone into an empty directory is
                // no rejoin).
                let moved_aside = matches!(self.job_what, Some(JobWhat::RecloneFrom(_)));
                if self.demoted || moved_aside {
                    self.rejoin = Some(EventKind::RejoinReclone);
                }
            }
            (JobKind::Start | JobKind::Follow, Err(_)) => self.start_failures += 1,
            (JobKind::Start | JobKind::Follow, Ok(())) => self.start_failures = 0,
            _ => {}
        }
    }
}
