//! I1 on the member's own clock: the lease it trusts, its renewals, the demotion at the deadline.

use super::{Member, Plan};
use crate::action::{Action, StopMode};
use crate::observe::{JobKind, LocalPg, Observation, Outcome};
use crate::reason::Reason;
use crate::types::{Millis, Ttl};

/// The lease as this member trusts it, on its own monotonic clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HeldLease {
    pub revision: u64,
    /// Sent time of the last successful acquire/renew.
    pub renewed_at: Millis,
    /// The TTL the store's lease was last granted with.
    pub ttl: Ttl,
    /// Before this instant (own clock) nobody else can lead: the store's lease
    /// (`store_expires_at`) or, past it, the promises of every member of the failsafe list.
    pub expires_at: Millis,
    /// Before this instant (own clock) the store cannot have expired the lease: from the
    /// newest renewal answered (sent at `store_renewed_at`), lowered at once when a renewal
    /// with a shorter TTL is sent. Failsafe confirmations do not move it.
    pub store_expires_at: Millis,
    /// When the renewal `store_expires_at` comes from was sent.
    pub store_renewed_at: Millis,
    /// `expires_at - safety_margin`: writable only before this instant.
    pub trusted_until: Millis,
}

impl HeldLease {
    pub(super) fn new(
        revision: u64,
        sent: Millis,
        ttl: Ttl,
        cap: Option<Millis>,
        margin: u64,
    ) -> Self {
        let end = sent.plus(ttl.millis());
        let expires_at = cap.map_or(end, |c| c.min(end));
        HeldLease {
            revision,
            renewed_at: sent,
            ttl,
            expires_at,
            store_expires_at: expires_at,
            store_renewed_at: sent,
            trusted_until: Millis(expires_at.0.saturating_sub(margin)),
        }
    }

    /// Whether it is trusted past the store's lease, on failsafe promises alone.
    pub(crate) fn rests_on_promises(&self) -> bool {
        self.expires_at > self.store_expires_at
    }

    /// The answer to a renewal sent before this lease's trust starts (failsafe confirmations
    /// since, or a later renewal answered first): it says how long the store's lease lasts
    /// unless a renewal sent after it has been answered already.
    pub(super) fn answered_late(&mut self, answer: &HeldLease) {
        if answer.store_renewed_at > self.store_renewed_at {
            self.store_expires_at = answer.store_expires_at;
            self.store_renewed_at = answer.store_renewed_at;
        }
    }

    /// A renewal with a shorter TTL may take effect before its answer comes: from the moment
    /// it is sent the lease may end at `cap`.
    fn cap(&mut self, cap: Millis, margin: u64) {
        self.store_expires_at = self.store_expires_at.min(cap);
        self.expires_at = self.expires_at.min(cap);
        self.trusted_until = self
            .trusted_until
            .min(Millis(self.expires_at.0.saturating_sub(margin)));
    }
}

impl Member {
    /// Whether this member currently trusts that it holds the leader lease at `now`.
    pub fn holds_lease(&self, now: Millis) -> bool {
        self.lease.is_some_and(|l| now < l.trusted_until)
    }

    /// Until when this member trusts its lease (own clock), if it holds one.
    pub fn lease_deadline(&self) -> Option<Millis> {
        self.lease.map(|l| l.trusted_until)
    }

    /// Until when this member trusts its lease at `now` once the lease answers among
    /// `outcomes` (of actions run since the last step) count, as the next step will count
    /// them: what it may report between steps. A renewal answered after the step that sent it
    /// thus shows at once, not one loop later.
    pub fn lease_deadline_after(&self, outcomes: &[Outcome], now: Millis) -> Option<Millis> {
        self.with_lease_answers(outcomes, now)
            .lease_deadline()
            .filter(|until| now < *until)
    }

    /// [`Member::fence_deadline_leaving`] once the lease answers among `outcomes` count, as
    /// the next step will count them with `config` (the newest read), and never later than
    /// that step arms: none if the trust has ended at `now` (the step lets the lease lapse),
    /// capped at `now` plus the ttl (the step's renewal, sent later, caps it at its own
    /// instant). A failsafe confirmation answered between steps thus moves the supervisor's
    /// deadline at once, not when the next step has waited out its store read's bound (with
    /// a small ttl the supervisor's stop could come first).
    pub fn fence_deadline_after(
        &self,
        outcomes: &[Outcome],
        now: Millis,
        config: &crate::config::ClusterConfig,
        (room, after_trust): (Millis, Millis),
    ) -> Option<Millis> {
        let mut next = self.clone();
        next.config = config.clone();
        let mut next = next.with_lease_answers(outcomes, now);
        let lease = next.lease.as_mut().filter(|l| now < l.trusted_until)?;
        lease.cap(now.plus(config.ttl().millis()), config.margin_ms());
        next.fence_deadline_leaving(room, after_trust)
    }

    /// This member as the next step will find it once the lease answers (renewals, failsafe
    /// confirmations: not job results) among `outcomes` are counted.
    fn with_lease_answers(&self, outcomes: &[Outcome], now: Millis) -> Member {
        let answers: Vec<Outcome> = outcomes
            .iter()
            .filter(|o| !matches!(o, Outcome::Job { .. }))
            .cloned()
            .collect();
        let mut next = self.clone();
        next.absorb(&answers, now);
        next
    }

    /// When the supervisor must have stopped a writable PostgreSQL: halfway between the
    /// demotion deadline and the earliest instant the store may expire the lease, so a clean
    /// demotion normally comes first and the kill still comes before anyone else can lead.
    pub fn fence_deadline(&self) -> Option<Millis> {
        self.fence_deadline_leaving(Millis(0), Millis(0))
    }

    /// [`Member::fence_deadline`], also leaving `room` before the store may expire the lease
    /// (a watchdog that resets the host that long after the supervisor's last keep-alive,
    /// should the supervisor itself stall at the deadline, then resets it before anyone else
    /// can lead), but never sooner than `after_trust` past the end of the trust: the supervisor
    /// begins its stop that long before its deadline, and must not stop a primary this member
    /// still keeps. A room that does not fit (a margin lowered since the watchdog's timeout
    /// was chosen) is given what fits.
    pub fn fence_deadline_leaving(&self, room: Millis, after_trust: Millis) -> Option<Millis> {
        self.lease.map(|l| {
            let slack = l.expires_at.0.saturating_sub(l.trusted_until.0);
            let halfway = l.trusted_until.plus(slack / 2);
            let leaving = Millis(l.expires_at.0.saturating_sub(room.0));
            halfway.min(leaving.max(l.trusted_until.plus(after_trust.0)))
        })
    }

    /// Without a trusted lease (an agent adopting the key after a restart, a renewal refused or
    /// unanswered): the latest instant the supervisor may let PostgreSQL write, as far as the
    /// renewals this member sent and has no answer to go: one may land and end the lease at
    /// its send + its ttl, sooner than a deadline armed before (a ttl lowered since). A
    /// deadline armed later is brought forward to it; none is armed for it.
    pub fn fence_cap(&self) -> Option<Millis> {
        self.fence_cap_leaving(Millis(0), Millis(0))
    }

    /// [`Member::fence_cap`], also leaving `room` before the earliest expiry, but no more than
    /// the margin less `after_trust` (see [`Member::fence_deadline_leaving`]).
    pub fn fence_cap_leaving(&self, room: Millis, after_trust: Millis) -> Option<Millis> {
        let longest = self.expiry_caps.longest_span().max(self.config.ttl_ms);
        let margin = self.config.margin_for(longest);
        let before = room
            .0
            .max(margin / 2)
            .min(margin.saturating_sub(after_trust.0).max(margin / 2));
        self.expiry_caps
            .lowest()
            .map(|cap| Millis(cap.0.saturating_sub(before)))
    }

    /// I1 on the member's own clock: past `trusted_until` the lease is gone, whatever the
    /// store says; a writable PostgreSQL is demoted at once, by a fast stop: its backends end
    /// first, then its walsenders send the standbys every record written, so a commit
    /// acknowledged just before is not thrown away. Nobody else may lead before the store
    /// expires the lease, and the supervisor kills what still runs at the fencing deadline.
    pub(crate) fn fence_if_expired(
        &mut self,
        obs: &Observation,
        plan: &mut Plan,
    ) -> Option<Reason> {
        let lease = self.lease?;
        if obs.now < lease.trusted_until {
            return None;
        }
        self.lease = None;
        self.lapsed_term = Some(lease.revision);
        self.release_unseen = Some(lease.revision);
        // Its failsafe promises run a margin past this trust: they go back once nothing
        // writes on them, whatever the store shows then.
        self.lost_term = Some(lease.revision);
        self.demote_if_writable(&obs.local, StopMode::Fast, plan)
            .then_some(Reason::LeaseExpiredDemoting)
    }

    /// The key still names this member in a term whose lease lapsed here (the store expires it
    /// later than this member stopped trusting it): once PostgreSQL is not writable, release
    /// it so that the election, not this member alone, decides who leads next.
    pub(crate) fn give_up_lapsed_term(
        &mut self,
        obs: &Observation,
        revision: u64,
        plan: &mut Plan,
    ) -> Reason {
        if self.demote_if_writable(&obs.local, StopMode::Fast, plan) {
            return Reason::LeaseExpiredDemoting;
        }
        self.give_back_lost_terms_promises(&obs.local, plan);
        plan.push(Action::ReleaseLeader { revision });
        Reason::LapsedLeaseReleased
    }

    /// Emits a demote stopping PostgreSQL by `mode` when it is (or may become) writable: a
    /// promotion, or a start of a primary, in flight counts. `Immediate` once another member
    /// may lead (what this one commits then is thrown away anyway); `Fast` while none can yet.
    /// A demotion in flight counts until it ends: the start it cancelled may still bring up a
    /// postmaster it has to stop.
    pub(crate) fn demote_if_writable(
        &mut self,
        local: &LocalPg,
        mode: StopMode,
        plan: &mut Plan,
    ) -> bool {
        if self.running_job() == Some(JobKind::Demote) {
            return true;
        }
        if !(local.is_writable()
            || self.job_may_make_writable()
            || self.promotion_may_complete(local))
        {
            return false;
        }
        self.promotion = None;
        self.handover = None;
        self.demoted = true;
        plan.push(Action::Demote {
            mode,
            fencing: true,
        });
        true
    }

    /// Forgets the lease: the store names no term of this member's any more (the key gone, or
    /// another's). The promises of the term it held go back once nothing writes on them.
    pub(crate) fn lose_lease(&mut self) {
        if let Some(lost) = self.lease.take() {
            self.lost_term = Some(lost.revision);
        }
    }

    /// Gives back the failsafe promises of the term whose key was lost (etcd revoked its lease
    /// as it came back, say) once PostgreSQL is no longer writable and nothing may make it so:
    /// nothing writes on them any more, and the members that gave them need not wait them
    /// out before one of them leads (as when the key is let go: [`Member::release`]).
    pub(crate) fn give_back_lost_terms_promises(&mut self, local: &LocalPg, plan: &mut Plan) {
        let demoting = self.running_job() == Some(JobKind::Demote);
        let may_write = local.is_writable() || self.promotion_may_complete(local);
        if demoting || may_write || self.job_may_make_writable() {
            return;
        }
        if let Some(term) = self.lost_term.take() {
            plan.push(Action::ReturnPromises { term });
        }
    }

    /// Renews the lease at most twice a loop, never so that the store may end it before the
    /// supervisor's deadline. A ttl lowered live is renewed with once the supervisor is seen
    /// holding a deadline that early: the step that finds a later one sends nothing, its cap
    /// bringing the deadline forward. While that deadline cannot be moved (the fencing file
    /// unwritable) the lease is renewed with the ttl it has, until the leader hands over before
    /// the deadline ([`Member::hand_over_if_fence_stuck`]). Sent at once, a renewal with the
    /// shorter ttl would let the store expire the lease while a dead agent's primary lived on.
    pub(crate) fn renew_if_due(&mut self, obs: &Observation, revision: u64, plan: &mut Plan) {
        let now = obs.now;
        let interval = (self.config.loop_wait_ms / 2).max(1);
        if self
            .last_renew_request
            .is_some_and(|at| now.since(at) < interval && at <= now)
        {
            return;
        }
        self.last_renew_request = Some(now);
        let ttl = match self.lease {
            Some(lease) if obs.fence_stuck_at.is_some() => lease.ttl.max(self.config.ttl()),
            _ => self.config.ttl(),
        };
        let margin = self.config.margin_for(ttl.millis());
        // Once sent, this renewal may be applied before any answer comes back, and then the
        // lease ends at the earliest `now + ttl_ms` (which only matters when that is sooner
        // than what is trusted: a shorter ttl, or a lease whose answer is still on its way).
        let cap = now.plus(ttl.millis());
        if let Some(lease) = self.lease.as_mut() {
            lease.cap(cap, margin);
        }
        self.expiry_caps.sent(now, cap);
        let fenced_by = Millis(cap.0.saturating_sub(margin / 2));
        if obs.fence_armed_at.is_some_and(|armed| armed > fenced_by) {
            plan.wake_by(now.plus(interval));
            return;
        }
        plan.push(Action::RenewLeader { revision, ttl });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by review: a late answer to an older renewal (sent with a ttl since lowered)
    /// raised the store's lease past what the newer answer, with the lower ttl, had said.
    #[test]
    fn a_late_answer_speaks_for_the_stores_lease_only_if_sent_after_the_one_it_had() {
        let margin = 2_500;
        let mut lease = HeldLease::new(7, Millis(5_000), Ttl::from_secs(10), None, margin);
        assert_eq!(lease.store_expires_at, Millis(15_000));
        let older = HeldLease::new(7, Millis(1_000), Ttl::from_secs(30), None, margin);
        lease.answered_late(&older);
        assert_eq!(lease.store_expires_at, Millis(15_000));
        let newer = HeldLease::new(7, Millis(6_000), Ttl::from_secs(10), None, margin);
        lease.answered_late(&newer);
        assert_eq!(lease.store_expires_at, Millis(16_000));
        assert_eq!(lease.store_renewed_at, Millis(6_000));
    }
}
