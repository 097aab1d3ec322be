//! A postmaster that lives but does not answer, or a primary whose WAL no longer reaches its
//! disk: no restart, and its leader demotes after a timeout.

use super::release::PendingRelease;
use super::{HeldLease, Member, Plan};
use crate::action::{Action, StopMode};
use crate::observe::{ClusterView, JobKind, Observation};
use crate::reason::Reason;

impl Member {
    /// Whether the primary's WAL has waited at the same flush position for a loop or more: its
    /// disk stalled (writes and fsyncs hang, reads from memory still answer the probe), and
    /// every commit waits with it.
    pub(super) fn wal_stalled(&mut self, obs: &Observation) -> bool {
        let waiting = obs.local.wal_waiting_at.filter(|_| obs.local.is_writable());
        let Some(at) = waiting else {
            self.flush_stuck = None;
            return false;
        };
        let since = match self.flush_stuck {
            Some((lsn, since)) if lsn == at => since,
            _ => self.flush_stuck.insert((at, obs.now)).1,
        };
        obs.now.since(since) >= self.config.loop_wait_ms
    }

    /// A postmaster that lives but does not answer is neither stopped nor a standby: no
    /// restart, no reconfiguration, no candidacy. Its leader keeps the lease (a failover would
    /// not help clients that exhausted the connection slots) until `primary_start_timeout_ms`,
    /// then demotes and lets the lease run out; the supervisor fences what the demote cannot.
    /// A primary whose WAL flush stalled is treated the same way: it cannot commit.
    pub(super) fn unresponsive_step(
        &mut self,
        obs: &Observation,
        view: &ClusterView,
        plan: &mut Plan,
    ) -> Reason {
        self.withdraw_while_unresponsive(view);
        if obs.local.refusing_connections {
            // It answers "too many clients": alive, only busy. No clock runs towards a demotion.
            self.unresponsive_since = None;
        }
        let since = *self.unresponsive_since.get_or_insert(obs.now);
        let for_ms = obs.now.since(since);
        if let Some(published) = self.published.clone() {
            if published.heartbeat_due(obs.now, self.config.ttl_ms) {
                self.publish(published.record, obs.now, plan); // heartbeat, last known state
            }
        }
        let leading = view.leader.as_ref().and_then(|l| {
            (l.holder == *self.name())
                .then_some(l.revision)
                .and_then(|rev| self.lease.filter(|lease| lease.revision == rev))
        });
        let waiting = match self.flush_stuck.filter(|_| !obs.local.unresponsive) {
            Some((flushed, _)) => Reason::WalFlushStalled { for_ms, flushed },
            None => Reason::PostgresUnresponsive { for_ms },
        };
        let Some(lease) = leading else {
            return waiting;
        };
        let demoted_this_term = self
            .release_after_demote
            .as_ref()
            .is_some_and(|pending| pending.term == lease.revision);
        if self.running_job() == Some(JobKind::Demote) || demoted_this_term {
            let term = lease.revision;
            if let Some(handover) = self.handover.as_ref().filter(|h| h.term == term) {
                // A switchover's demotion: PostgreSQL shutting down answers no probe.
                return Reason::SwitchoverDemoting {
                    target: handover.target.clone(),
                };
            }
            if let Some(reason) = self.while_demoted_unresponsive(obs, lease, plan) {
                return reason;
            }
            return Reason::PrimaryUnresponsiveDemoting { for_ms };
        }
        if for_ms > self.config.primary_start_timeout_ms && !self.config.paused {
            self.demote_to_kill(lease.revision, Reason::UnresponsivePrimaryDemoted, plan);
            return Reason::PrimaryUnresponsiveDemoting { for_ms };
        }
        self.renew_if_due(obs, lease.revision, plan);
        waiting
    }

    /// Whether this member demoted its PostgreSQL, leading in `term`, for not answering (or
    /// for its WAL, or its promotion, waiting on its disk), and has not let go of that term's
    /// lease yet.
    pub(crate) fn demoted_unresponsive_in(&self, term: u64) -> bool {
        self.release_after_demote.as_ref().is_some_and(|pending| {
            pending.term == term
                && matches!(
                    pending.reason,
                    Reason::UnresponsivePrimaryDemoted | Reason::PromotionStalledOnDisk
                )
        })
    }

    /// The lease holder of a promotion not done yet whose data directory has taken no write
    /// for `DATA_DIR_STALL_MS` (its disk froze as it won, or just before): `pg_ctl promote`
    /// and the end of recovery wait on that disk for as long as it stalls, and every write
    /// with them. It gives the promotion up as a leader gives up a primary that stopped
    /// answering: it demotes (cancelling the promotion), renews no more, kills every process
    /// of its PostgreSQL while the stop hangs, and releases the lease once none of them can
    /// run again (a promotion asked of that postmaster cannot complete after it). Its record
    /// keeps it out of the next election until its disk takes writes again.
    pub(crate) fn give_up_promotion_on_stalled_disk(
        &mut self,
        obs: &Observation,
        lease: HeldLease,
        plan: &mut Plan,
    ) -> Option<Reason> {
        let local = &obs.local;
        let promoting = self.promotion.is_some() && local.running && local.in_recovery;
        if !self.data_dir_stalled || !promoting || self.config.paused {
            return None;
        }
        self.unresponsive_since = Some(obs.now);
        self.demote_to_kill(lease.revision, Reason::PromotionStalledOnDisk, plan);
        Some(Reason::PromotionStalledOnDisk)
    }

    /// Demotes PostgreSQL at once, leading in `term`, for `why` (one of the reasons
    /// [`Member::demoted_unresponsive_in`] knows): the lease is no longer renewed, and goes
    /// once PostgreSQL is not writable, or once its processes are shown killed.
    fn demote_to_kill(&mut self, term: u64, why: Reason, plan: &mut Plan) {
        self.promotion = None;
        self.handover = None;
        self.demoted = true;
        self.release_after_demote = Some(PendingRelease::once_not_writable(term, why));
        plan.push(Action::Demote {
            mode: StopMode::Immediate,
            fencing: true,
        });
    }

    /// A step of a leader that demoted its PostgreSQL for not answering, while the lease is
    /// still its own: never renewed. Once no process of that PostgreSQL can run again (those
    /// blocked on a stalled disk killed, a SIGKILL pending that they cannot escape), nothing
    /// more can be committed, acknowledged or sent there, and the lease is released at once
    /// instead of running out; while the demotion's stop hangs, those processes are killed.
    /// `None` once the demotion has ended with PostgreSQL not writable: the lease goes as after
    /// any demotion.
    pub(crate) fn while_demoted_unresponsive(
        &mut self,
        obs: &Observation,
        lease: HeldLease,
        plan: &mut Plan,
    ) -> Option<Reason> {
        if !self.demoted_unresponsive_in(lease.revision) {
            return None;
        }
        let local = &obs.local;
        let promotion_stalled = self
            .release_after_demote
            .as_ref()
            .is_some_and(|pending| pending.reason == Reason::PromotionStalledOnDisk);
        if local.killed && !self.job_may_make_writable() {
            self.release_after_demote = None;
            let reason = if promotion_stalled {
                Reason::StalledPromotionKilled
            } else {
                Reason::UnresponsivePrimaryKilled
            };
            return Some(self.release(lease, reason, plan));
        }
        let stop_hangs = self.running_job() == Some(JobKind::Demote);
        if stop_hangs && !local.killed {
            // (the demotion's own stop went first, a step ago)
            plan.push(Action::KillPostgres);
        }
        let since = self.unresponsive_since.unwrap_or(obs.now);
        let for_ms = obs.now.since(since);
        let waiting = if promotion_stalled {
            Reason::PromotionStalledOnDisk
        } else {
            Reason::PrimaryUnresponsiveDemoting { for_ms }
        };
        (stop_hangs || local.is_writable()).then_some(waiting)
    }
}
