//! The lease holder's step: renew, bootstrap, restart or promote, hand over on switchover,
//! and keep slots in order (the promotion: `leader_promote.rs`; the synchronous set:
//! `leader_sync.rs`).

use crate::action::{Action, StartRole, StopMode};
use crate::config::SyncMode;
use crate::history::EventKind;
use crate::machine::{Handover, HeldLease, Member, Plan, Promotion, ReleaseStep};
use crate::observe::{ClusterView, DataDir, JobFailure, Observation};
use crate::reason::Reason;
use crate::switchover;
use crate::types::{MemberName, Millis};
use std::collections::BTreeSet;

impl Member {
    pub(crate) fn leader_step(
        &mut self,
        obs: &Observation,
        view: &ClusterView,
        revision: u64,
        plan: &mut Plan,
    ) -> Reason {
        let now = obs.now;
        let local = &obs.local;
        let lease = match self.lease.filter(|l| l.revision == revision) {
            Some(lease) => lease,
            None if self.lapsed_term == Some(revision) => {
                return self.give_up_lapsed_term(obs, revision, plan)
            }
            None => return self.adopt(obs, view, revision, plan),
        };
        if let Some(reason) = self.while_demoted_unresponsive(obs, lease, plan) {
            return reason;
        }
        if let Some(reason) = self.give_up_promotion_on_stalled_disk(obs, lease, plan) {
            return reason;
        }
        self.renew_if_due(obs, lease.revision, plan);
        self.leaderless_since = None;
        if let Some(reason) = self.job_running(now) {
            return reason;
        }
        match self.release_once_demoted(local, lease.revision, plan) {
            Some(ReleaseStep::Now(reason)) => return self.release(lease, reason, plan),
            Some(ReleaseStep::Wait(waiting)) => return waiting,
            None => {}
        }
        if let Some(reason) = self.hand_over_if_fence_stuck(obs, lease.revision, plan) {
            return reason;
        }
        let system_id = match local.data {
            DataDir::Missing if view.initialize.is_none() => {
                if let Some(reason) = self.cluster_exists_elsewhere(view) {
                    return self.release(lease, reason, plan);
                }
                self.promotion = Some(Promotion {
                    kind: EventKind::Bootstrap,
                    from: None,
                    lsn: local.lsn,
                    switchover_revision: None,
                    cause: "no cluster yet: it initialises one".to_string(),
                });
                plan.push(Action::Bootstrap);
                return Reason::Bootstrapping;
            }
            DataDir::Missing => return self.release(lease, Reason::LeaderWithoutData, plan),
            DataDir::Present { system_id } => system_id,
        };
        if view.initialize.is_none() {
            plan.push(Action::WriteInitialize { system_id });
        }
        match self.promote_error.take() {
            Some(
                JobFailure::Failed(error)
                | JobFailure::NoRoom(error)
                | JobFailure::SourceUnreachable(error),
            ) if !local.running => {
                return self.release(lease, Reason::PromoteFailed { error }, plan)
            }
            Some(
                JobFailure::Failed(error)
                | JobFailure::NoRoom(error)
                | JobFailure::SourceUnreachable(error),
            ) => return self.stop_before_release(lease.revision, error, plan),
            Some(held_out @ (JobFailure::Vetoed(_) | JobFailure::Unfenced(_))) => {
                let hold_ms = self.config.veto_hold_ms();
                let why = held_out.to_string();
                return self.release(lease, Reason::PromotionVetoed { why, hold_ms }, plan);
            }
            // never kept (`job_done`): the promotion is planned again
            Some(JobFailure::NotBegun(_)) | None => {}
        }
        if !local.running {
            return self.restart_primary(obs, view, lease, plan);
        }
        self.primary_down_since = None;
        if local.in_recovery {
            let handover = self.handover.take();
            if let Some(handover) = handover.filter(|h| h.term == lease.revision) {
                // Demoted for a switchover: publish the final position, and let go only once
                // the store shows it (a lost write would leave the target the record from
                // before the stop, and it could take over without the last commits).
                let record = self.record(local, view);
                let shown = view.members.get(self.name()).is_some_and(|r| {
                    r.in_recovery && r.timeline == record.timeline && r.lsn >= record.lsn
                });
                let target = handover.target.clone();
                if !shown {
                    self.handover = Some(handover);
                    self.publish(record, now, plan);
                    return Reason::SwitchoverDemoting { target };
                }
                return self.release(lease, Reason::SwitchoverHandedOff { target }, plan);
            }
            if self.config.paused && self.promotion.is_none() {
                return Reason::Paused;
            }
            // A key adopted on a standby (its agent restarted since its election): its tags
            // may have changed with the restart, and a member tagged nofailover never promotes.
            if self.promotion.is_none() && self.settings.tags.nofailover {
                return self.release(lease, Reason::AdoptedKeyReleasedNoFailover, plan);
            }
            return self.promote(obs, view, revision, plan);
        }
        if let Some(kind) = plan.promoted {
            return Reason::Promoted { kind };
        }
        // Leading (an adopted lease too): the leader that would be lost is this one.
        self.last_leader = Some(self.name().clone());
        self.leader_heard = true;
        if let Some(reason) = self.handle_switchover(obs, view, revision, plan) {
            return reason;
        }
        if obs.restart_requested {
            return self.restart_in_place(StartRole::Primary, plan);
        }
        if self.config.paused {
            // Fencing is off only once the store says so (see `pause_disarms_fencing`).
            self.publish_position(obs, view, revision, plan);
            return Reason::Paused;
        }
        self.maintain_slots(obs, view, plan);
        self.publish_position(obs, view, revision, plan);
        self.publish_failsafe_list(obs.now, view, revision, plan);
        self.maintain_sync(obs, view, revision, plan);
        // What this step put in force is published now, not a loop later.
        self.publish_if_due(obs, view, plan);
        Reason::Leading {
            standbys: local.replicas.iter().filter(|r| r.streaming).count(),
        }
    }

    /// Lets go of the lease, PostgreSQL not writable (every caller's condition): the failsafe
    /// promises of this term are given back first, for nothing it writes relies on them any
    /// more, and the next leader need not wait them out.
    pub(crate) fn release(&mut self, lease: HeldLease, reason: Reason, plan: &mut Plan) -> Reason {
        plan.push(Action::ReturnPromises {
            term: lease.revision,
        });
        plan.push(Action::ReleaseLeader {
            revision: lease.revision,
        });
        self.lease = None;
        self.promotion = None;
        reason
    }

    fn restart_primary(
        &mut self,
        obs: &Observation,
        view: &ClusterView,
        lease: HeldLease,
        plan: &mut Plan,
    ) -> Reason {
        let since = *self.primary_down_since.get_or_insert(obs.now);
        let down_ms = obs.now.since(since);
        if self.config.paused {
            return Reason::Paused;
        }
        // In a synchronous mode a crashed primary's WAL may end with commits whose wait for
        // the standbys was cut short: restarting it would show them, and the next failover
        // would lose them. Hand over to a synchronous standby instead, when one is alive.
        let sync_standby_alive = view
            .sync
            .members
            .iter()
            .any(|n| view.members.get(n).is_some_and(|r| r.is_standby()));
        if self.config.synchronous_mode != SyncMode::Off
            && !obs.local.in_recovery
            && sync_standby_alive
        {
            self.primary_down_since = None;
            return self.release(lease, Reason::SyncPrimaryDownHandingOver, plan);
        }
        if down_ms > self.config.primary_start_timeout_ms {
            self.primary_down_since = None;
            return self.release(lease, Reason::PrimaryNotRestartable { down_ms }, plan);
        }
        let role = if obs.local.in_recovery {
            StartRole::Standby { upstream: None }
        } else {
            StartRole::Primary
        };
        plan.push(Action::StartPostgres(role));
        Reason::RestartingPrimary { down_ms }
    }

    /// Acts on a pending request addressed to this leader: refuse it, or demote to hand over.
    /// A request written before this term began was made to an earlier leader (or to this one
    /// before it lost its lease): refused, as it could never be told from one made now.
    fn handle_switchover(
        &mut self,
        obs: &Observation,
        view: &ClusterView,
        term: u64,
        plan: &mut Plan,
    ) -> Option<Reason> {
        let pending = view.switchover.as_ref()?;
        if self.requests.handled(pending.revision) {
            // Ours already ran (and the target never took over) or was refused.
            plan.push(Action::ClearSwitchover {
                revision: pending.revision,
            });
            return None;
        }
        self.requests.handle(pending.revision);
        let checked = if pending.revision < term {
            Err(switchover::Refusal::MadeInEarlierTerm { term })
        } else {
            switchover::check(
                &with_replication(view, obs),
                obs.local.lsn,
                &pending.request,
            )
        };
        match checked {
            Err(refusal) => {
                plan.push(Action::ClearSwitchover {
                    revision: pending.revision,
                });
                let (timeline, lsn) = (obs.local.timeline, obs.local.lsn);
                let event = pending
                    .request
                    .refused(self.name(), timeline, lsn, &refusal);
                plan.push(Action::RecordHistory(event));
                Some(Reason::SwitchoverRefused(refusal))
            }
            Ok(target) => {
                let target = pending.request.to.clone().map(|_| target);
                self.handover = Some(Handover {
                    revision: pending.revision,
                    target: target.clone(),
                    term,
                });
                plan.push(Action::Demote {
                    mode: StopMode::Fast,
                    fencing: false,
                });
                Some(Reason::SwitchoverDemoting { target })
            }
        }
    }

    fn maintain_slots(&mut self, obs: &Observation, view: &ClusterView, plan: &mut Plan) {
        let wanted: BTreeSet<&MemberName> =
            view.members.keys().filter(|n| *n != self.name()).collect();
        let have: BTreeSet<&MemberName> = obs.local.slots.iter().collect();
        let create: Vec<MemberName> = wanted.difference(&have).map(|n| (*n).clone()).collect();
        // A member whose key expired (its agent or host is down) keeps its slot, and with it
        // the WAL it needs to resume, for member_slots_ttl_ms; then the slot goes.
        let absent: Vec<MemberName> = have
            .difference(&wanted)
            .map(|n| (*n).clone())
            .filter(|n| n != self.name())
            .collect();
        self.absent_since.retain(|n, _| absent.contains(n));
        let mut drop = Vec::new();
        for name in absent {
            let since = *self.absent_since.entry(name.clone()).or_insert(obs.now);
            if obs.now.since(since) >= self.config.member_slots_ttl_ms {
                drop.push(name);
            }
        }
        if !create.is_empty() {
            plan.push(Action::CreateSlots { names: create });
        }
        if !drop.is_empty() {
            plan.push(Action::DropSlots { names: drop });
        }
    }

    /// Keeps the `failsafe` key equal to the members this leader sees (itself included). A
    /// list naming a member no failsafe round asked lets it run for leader once the store's
    /// lease ends, promises or not: such a list waits while the lease is trusted on promises
    /// alone (until a renewal is answered; unlisted, that member waits for the others), and
    /// confirmations asked for before it went out count for nothing.
    fn publish_failsafe_list(
        &mut self,
        now: Millis,
        view: &ClusterView,
        revision: u64,
        plan: &mut Plan,
    ) {
        let mut members: BTreeSet<MemberName> = view.members.keys().cloned().collect();
        members.insert(self.name().clone());
        let list = crate::observe::FailsafeList {
            leader: self.name().clone(),
            members,
        };
        let asked = self.failsafe_confirmers(view).unwrap_or_default();
        let names_unasked = list.confirmers().any(|m| !asked.contains(m));
        if names_unasked && self.lease.is_some_and(|l| l.rests_on_promises()) {
            return;
        }
        if self.failsafe_list_to_send(revision, view, &list) {
            if names_unasked {
                self.failsafe_list_sent_at = Some(now);
            }
            plan.push(Action::PublishFailsafe {
                list,
                leader_revision: revision,
                key_revision: view.failsafe_revision,
            });
        }
    }

    /// Keeps the `position` key near the primary's WAL position: at most once per loop.
    fn publish_position(
        &mut self,
        obs: &Observation,
        view: &ClusterView,
        revision: u64,
        plan: &mut Plan,
    ) {
        let lsn = obs.local.lsn;
        let stored = view.leader_position.as_ref();
        // Resumed, the mark is cleared only once the supervisor is seen holding a deadline: a
        // write of the fencing file that fails (a full file system) would leave the store
        // saying fenced and nothing to fence, and the members would take over from a dead
        // agent's primary that lives on.
        let marked = stored.is_some_and(|p| p.unfenced && &p.leader == self.name());
        let unfenced = self.config.paused || (marked && obs.fence_armed_at.is_none());
        // A change of the mark is published at once, not a loop later.
        let fencing_told = stored.is_some_and(|p| p.unfenced) == unfenced;
        let current = fencing_told
            && stored.is_some_and(|p| {
                &p.leader == self.name() && p.lsn == lsn && p.term == Some(revision)
            });
        let recent = fencing_told
            && self
                .position_published
                .is_some_and(|(_, at)| obs.now.since(at) < self.config.loop_wait_ms);
        if current || recent {
            return;
        }
        self.position_published = Some((lsn, obs.now));
        plan.push(Action::PublishPosition {
            position: crate::observe::LeaderPosition {
                leader: self.name().clone(),
                timeline: obs.local.timeline,
                lsn,
                term: Some(revision),
                unfenced,
            },
            leader_revision: revision,
            key_revision: view.position_revision,
        });
    }
}

/// `view` with each streaming standby's position raised to what the leader's replication
/// shows it flushed: the leader judges a request with its own position now, and a standby's
/// record, published now and then, may lag what it has (found by the whole suite: a standby
/// caught up was refused as 16 MB behind, its record older than a WAL switch it had streamed).
fn with_replication(view: &ClusterView, obs: &Observation) -> ClusterView {
    let mut now = view.clone();
    for replica in obs.local.replicas.iter().filter(|r| r.streaming) {
        if let Some(record) = now.members.get_mut(&replica.name) {
            record.lsn = record.lsn.max(replica.flush_lsn);
        }
    }
    now
}
