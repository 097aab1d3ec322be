//! Without a leader: keep a failsafe promise, or run for leader (election, switchover, bootstrap).

use crate::action::{Action, StartRole};
use crate::election::{self, Ineligible, Rules, Verdict};
use crate::history::EventKind;
use crate::machine::{held_back_by_old_leader, Member, Plan, Promotion};
use crate::observe::{ClusterView, DataDir, Observation, PendingSwitchover};
use crate::reason::Reason;
use crate::switchover::{self, RequestKind, SwitchoverRequest};
use crate::types::{Lsn, MemberName, Millis};
use crate::vacancy::vacancy_cause;

impl Member {
    pub(crate) fn election_step(
        &mut self,
        obs: &Observation,
        view: &ClusterView,
        plan: &mut Plan,
    ) -> Reason {
        let now = obs.now;
        let local = &obs.local;
        let since = *self.leaderless_since.get_or_insert(now);
        if let Some(reason) = self.job_running(now) {
            return reason;
        }
        if let Some(until) = obs.failsafe_promised_until.filter(|u| *u > now) {
            // We confirmed the old leader while the store was down: keep that promise.
            plan.wake_by(until);
            return Reason::FailsafePromise {
                remaining_ms: until.since(now),
            };
        }
        if let Some(reason) = self.outside_failsafe_list(now, view, plan) {
            return reason;
        }
        if local.data == DataDir::Missing {
            if view.initialize.is_some() {
                return Reason::WaitingForLeaderToClone;
            }
            if let Some(reason) = self.cluster_exists_elsewhere(view) {
                return reason;
            }
            let lsn = local.lsn;
            let cause = "no cluster yet: it initialises one".to_string();
            return self.acquire(
                EventKind::Bootstrap,
                None,
                lsn,
                cause,
                Reason::RacingToBootstrap,
                plan,
            );
        }
        if let Some(reason) = self.without_its_peers(local, view) {
            return reason;
        }
        // A request made in an earlier term, or a planned switchover whose target may no
        // longer be promoted, is void: the election decides as if there were none, the old
        // leader's position included.
        let request = view.switchover.as_ref().filter(|p| {
            !self.predates_a_later_term(view, p)
                && (p.request.kind != RequestKind::Switchover
                    || self.target_may_take_over(obs, view, &p.request))
        });
        if self.config.paused && request.is_none() {
            return Reason::PausedWithoutLeader;
        }
        if local.rewind_incomplete && !local.running {
            return Reason::RewindIncompleteWaitingForLeader;
        }
        if !local.running {
            if local.crashed {
                // Its end of WAL is unknown until its replay ends, and a position probed before
                // then may lie before a switch point its WAL passed: once a leader exists, it
                // rewinds (pg_rewind rewinds only what diverged) instead of following.
                self.force_rewind = true;
            }
            plan.push(Action::StartPostgres(StartRole::Standby { upstream: None }));
            return Reason::StartingToElect;
        }
        let waited = now.since(since);
        // A request's time runs from the vacancy, or from when this member first read it if
        // later: `pgha failover --to` is the way out of a long wait, and comes after it.
        let request_waited = request.map_or(0, |p| {
            now.since(since.max(self.requests.first_read(p.revision, now)))
        });
        let heeded = request_waited < self.config.switchover_timeout_ms;
        if let Some(pending) = request.filter(|_| heeded) {
            if let Some(reason) = self.switchover_candidacy(obs, view, pending, plan) {
                return reason;
            }
        }
        if self.config.paused {
            return Reason::PausedWithoutLeader;
        }
        if let Some(leader) = crate::machine::pause::unfenced_former_leader(self.name(), view) {
            return Reason::FormerLeaderUnfenced { leader };
        }
        let rules = Rules {
            config: &self.config,
            sync: &view.sync,
            // What this agent saw, or what the store kept (after a restart of this agent).
            last_primary_lsn: self
                .last_primary_lsn
                .max(view.leader_position.as_ref().map(|p| p.lsn)),
        };
        let mine = self.record(local, view);
        // During a pending switchover the old leader does not compete; what it may hold still
        // counts (a vetoed winner handing over may be the one holding acknowledged commits).
        let mut members = view.members.clone();
        if let Some(pending) = request.filter(|_| heeded) {
            let from = pending.request.from.as_ref();
            let old = from
                .and_then(|f| members.remove(f))
                .filter(|r| r.is_standby());
            if let (Some(from), Some(old)) = (from, old) {
                let planned = pending.request.kind == RequestKind::Switchover;
                if let Some(reason) = held_back_by_old_leader(&rules, planned, from, &old, &mine) {
                    return reason;
                }
            }
        }
        let give_up = waited >= self.config.ttl_ms;
        if !give_up {
            plan.wake_by(since.plus(self.config.ttl_ms));
        }
        match election::judge(&rules, self.name(), &mine, &members, give_up) {
            Verdict::Best => {
                if let Some(leader) = self.last_leader_unheard(view, &mine).filter(|_| !give_up) {
                    return Reason::WaitingForLastLeader { leader };
                }
                let from = self.last_leader.clone();
                let term = self.newest_term_in(view);
                let cause = vacancy_cause(view, self.name(), from.as_ref(), term);
                self.acquire(
                    EventKind::Failover,
                    from,
                    local.lsn,
                    cause,
                    Reason::Acquiring {
                        kind: EventKind::Failover,
                    },
                    plan,
                )
            }
            Verdict::Behind { best } => Reason::Behind { best },
            Verdict::Waiting {
                unconfirmed,
                replaying,
            } => Reason::WaitingForPositions {
                unconfirmed,
                replaying,
            },
            Verdict::QuorumIncomplete {
                confirmed,
                needed,
                replaying,
            } => Reason::QuorumIncomplete {
                confirmed,
                needed,
                replaying,
            },
            Verdict::IneligibleAhead { member, why } => Reason::IneligibleAhead { member, why },
            Verdict::Ineligible(why) => Reason::NotEligible(why),
        }
    }

    /// Why a member without data must not initialise a new cluster, if it must not: a store
    /// without the cluster's identifier may have lost its keys (etcd's data gone) while a
    /// cluster lives on, and a new, empty primary would take the clients. It never does once
    /// it has seen the cluster's identifier, nor while a member publishes data. (A leader's
    /// term alone proves nothing: a bootstrap that failed had one.)
    pub(crate) fn cluster_exists_elsewhere(&self, view: &ClusterView) -> Option<Reason> {
        let with_data = view
            .members
            .iter()
            .find(|(_, r)| r.timeline.0 > 0 || r.running)
            .map(|(n, _)| n.clone());
        (with_data.is_some() || self.cluster_seen.is_some())
            .then_some(Reason::StoreLostItsCluster { with_data })
    }

    /// A member the last leader did not list could be promoted while that leader, cut off from
    /// the store, keeps writing on the confirmations of the listed ones (failsafe). It runs
    /// only once no confirmation can be in force: the list names nobody but its leader, or a
    /// listed member has been reading the store (so refusing confirmations) for a ttl.
    fn outside_failsafe_list(
        &mut self,
        now: Millis,
        view: &ClusterView,
        plan: &mut Plan,
    ) -> Option<Reason> {
        let Some(list) = view.failsafe.as_ref() else {
            self.listed_peer_seen_since = None;
            return None;
        };
        let listed_peer_present = list.confirmers().any(|m| view.members.contains_key(m));
        if !listed_peer_present {
            self.listed_peer_seen_since = None;
        } else if self.listed_peer_seen_since.is_none() {
            self.listed_peer_seen_since = Some(now);
        }
        if list.members.contains(self.name()) || list.confirmers().next().is_none() {
            return None;
        }
        let clear_at = self
            .listed_peer_seen_since
            .map(|since| since.plus(self.config.ttl_ms));
        if clear_at.is_some_and(|at| now >= at) {
            return None;
        }
        if let Some(at) = clear_at {
            plan.wake_by(at);
        }
        Some(Reason::OutsideFailsafeList {
            leader: list.leader.clone(),
        })
    }

    /// During a pending request: the named target takes over once caught up; everyone else
    /// (and the old leader) defers. `None` means: no opinion, run the normal election.
    fn switchover_candidacy(
        &mut self,
        obs: &Observation,
        view: &ClusterView,
        pending: &PendingSwitchover,
        plan: &mut Plan,
    ) -> Option<Reason> {
        let request = &pending.request;
        let me = self.name().clone();
        let from_record = request.from.as_ref().and_then(|f| view.members.get(f));
        if request.from.as_ref() == Some(&me) {
            return Some(Reason::WaitingForSwitchoverTarget {
                target: request.to.clone(),
            });
        }
        // The old leader's final position, once it demoted; on an earlier timeline than this
        // member's, another primary wrote after it (a request that outlived its term, seen by
        // a member that restarted since): the election decides.
        let needed = from_record
            .filter(|r| r.in_recovery && r.timeline == obs.local.timeline)
            .map(|r| r.lsn);
        match (&request.to, request.kind) {
            (Some(target), _) if *target != me => Some(Reason::WaitingForSwitchoverTarget {
                target: Some(target.clone()),
            }),
            (Some(_), RequestKind::Failover { .. }) => {
                // The named leader may already have let go (a healthy leader demotes first):
                // check the target against the cluster as it is now.
                let now_request = SwitchoverRequest {
                    from: None,
                    ..request.clone()
                };
                // Compared with this member's position now, not its last published one.
                let mut now_view = view.clone();
                let mine = self.record(&obs.local, view);
                now_view.members.insert(me.clone(), mine);
                if let Err(refusal) = switchover::check(&now_view, Lsn(0), &now_request) {
                    // Withdrawn and said once, as a leader refuses (the CLI's wait ends there).
                    if !self.requests.handled(pending.revision) {
                        self.requests.handle(pending.revision);
                        let (timeline, lsn) = (obs.local.timeline, obs.local.lsn);
                        let event = request.refused(&me, timeline, lsn, &refusal);
                        plan.push(Action::RecordHistory(event));
                    }
                    plan.push(Action::ClearSwitchover {
                        revision: pending.revision,
                    });
                    return Some(Reason::SwitchoverRefused(refusal));
                }
                let from = self.last_leader.clone();
                let lsn = obs.local.lsn;
                let cause = format!(
                    "manual failover to it requested (`pgha failover --to {me}`); {}",
                    vacancy_cause(view, &me, from.as_ref(), self.newest_term_in(view))
                );
                Some(self.acquire_for(
                    EventKind::ManualFailover,
                    from,
                    lsn,
                    cause,
                    pending.revision,
                    plan,
                ))
            }
            (target, _) => {
                // Received (flushed) WAL counts: promotion replays all of it before the
                // first write, so nothing the old leader wrote is lost.
                let replayed = obs.local.lsn.max(obs.local.replay_lsn);
                // The old leader's record may predate its last writes (it died instead of
                // handing over): a target behind another standby leaves it to the election.
                let mine = (obs.local.timeline, obs.local.lsn);
                let someone_ahead = view.members.iter().any(|(n, r)| {
                    *n != me
                        && Some(n) != request.from.as_ref()
                        && r.is_standby()
                        && (r.timeline, r.lsn) > mine
                });
                match needed {
                    Some(_) if someone_ahead && target.is_some() => None,
                    Some(needed) if replayed >= needed && target.is_some() => {
                        let from = request.from.clone();
                        let lsn = obs.local.lsn;
                        let cause = match &from {
                            Some(old) => format!(
                                "switchover requested: {old} handed over once it had replayed \
                                 everything {old} wrote"
                            ),
                            None => "switchover requested".to_string(),
                        };
                        Some(self.acquire_for(
                            EventKind::Switchover,
                            from,
                            lsn,
                            cause,
                            pending.revision,
                            plan,
                        ))
                    }
                    Some(needed) if replayed < needed => {
                        Some(Reason::CatchingUpForSwitchover { replayed, needed })
                    }
                    // No target named: the normal election picks the best caught-up member.
                    _ => None,
                }
            }
        }
    }

    /// Whether a planned switchover's named target may still be promoted: the leader checked it
    /// before demoting, but tags change, and a leader that died first checked nothing. Lag is
    /// no reason (the target catches up to the old leader's final position first). Without
    /// one, the election decides.
    fn target_may_take_over(
        &self,
        obs: &Observation,
        view: &ClusterView,
        request: &SwitchoverRequest,
    ) -> bool {
        let Some(target) = &request.to else {
            return true;
        };
        let record = if target == self.name() {
            Some(self.record(&obs.local, view))
        } else {
            view.members.get(target).cloned()
        };
        let rules = Rules {
            config: &self.config,
            sync: &view.sync,
            last_primary_lsn: None,
        };
        record.is_some_and(|r| {
            matches!(
                rules.check(target, &r),
                Ok(()) | Err(Ineligible::Lagging { .. })
            )
        })
    }

    fn acquire_for(
        &mut self,
        kind: EventKind,
        from: Option<MemberName>,
        lsn: Lsn,
        cause: String,
        revision: u64,
        plan: &mut Plan,
    ) -> Reason {
        let reason = self.acquire(kind, from, lsn, cause, Reason::Acquiring { kind }, plan);
        if let Some(promotion) = self.promotion.as_mut() {
            promotion.switchover_revision = Some(revision);
        }
        reason
    }

    fn acquire(
        &mut self,
        kind: EventKind,
        from: Option<MemberName>,
        lsn: Lsn,
        cause: String,
        reason: Reason,
        plan: &mut Plan,
    ) -> Reason {
        self.promotion = Some(Promotion {
            kind,
            from,
            lsn,
            switchover_revision: None,
            cause,
        });
        plan.push(Action::AcquireLeader {
            ttl: self.config.ttl(),
            failsafe_revision: self.failsafe_read,
        });
        self.acquisition_sent();
        reason
    }
}
