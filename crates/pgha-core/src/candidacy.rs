//! Without a leader: keep a failsafe promise, or run for leader (election, switchover, bootstrap).

use crate::action::{Action, StartRole};
use crate::config::SyncMode;
use crate::election::{self, Rules, Verdict};
use crate::history::EventKind;
use crate::machine::{held_back_by_old_leader, Member, Plan, Promotion};
use crate::observe::{ClusterView, DataDir, Observation};
use crate::reason::Reason;
use crate::switchover::RequestKind;
use crate::types::{Lsn, MemberName, Millis};
use crate::vacancy::vacancy_cause;

mod requests;
use requests::handed_over_to_the_best;

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
        // In a synchronous mode a standby's position counts only once final: it streams no
        // more, so nothing can be acknowledged through it past what it publishes (a request's
        // named target takes over with what it has: nothing it confirmed is missing there).
        let named_target = request
            .filter(|_| heeded)
            .is_some_and(|p| p.request.to.as_ref() == Some(self.name()));
        let streams_may_confirm = self.streams_may_confirm(now);
        let streams = local.in_recovery && !local.stream_stopped;
        if streams_may_confirm && streams && !named_target {
            plan.push(Action::StopStreaming);
            return Reason::StoppingStream;
        }
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
        match election::judge(
            &rules,
            self.name(),
            &mine,
            &members,
            give_up,
            streams_may_confirm,
        ) {
            Verdict::Best => {
                if let Some(leader) = self.last_leader_unheard(view, &mine).filter(|_| !give_up) {
                    return Reason::WaitingForLastLeader { leader };
                }
                // A switchover asked without a target, its leader handed over: the election
                // picks the target, and it is that switchover (recorded so, and cleared once
                // promoted, not refused afterwards as a request of an earlier term).
                if let Some((pending, old)) = request
                    .filter(|_| heeded)
                    .and_then(|p| handed_over_to_the_best(view, p).map(|old| (p, old)))
                {
                    let cause = format!(
                        "switchover requested without a target: {old} handed over, and {} is \
                         the best candidate",
                        self.name()
                    );
                    let revision = pending.revision;
                    return self.acquire_for(
                        EventKind::Switchover,
                        Some(old),
                        local.lsn,
                        cause,
                        revision,
                        plan,
                    );
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

    /// Whether a standby still streaming could confirm commits past the position it publishes:
    /// in a synchronous mode, while an old primary may still write, its key removed before its
    /// lease ran out (etcd-io/etcd#15247, a hand deletion). Its last renewal came before that,
    /// so its own demotion, or its supervisor's fence, comes within a ttl of this vacancy's
    /// start on its clock: a fifth more for clocks running at other rates (as a failsafe
    /// promise counts), and a loop, by when every record read since shows what its member
    /// received. (A vacancy is seen no earlier than the key went: `leaderless_since` is
    /// cleared by any step that reads a leader.) The ttl is the longest its last renewal may
    /// have been on: one lowered live lately still counts (`machine/replaced_ttls.rs`).
    pub(crate) fn streams_may_confirm(&self, now: Millis) -> bool {
        if self.config.synchronous_mode == SyncMode::Off {
            return false;
        }
        let Some(since) = self.leaderless_since else {
            return true;
        };
        let ttl = self.replaced_ttls.longest_for(since, self.config.ttl_ms);
        now.since(since) < ttl * 6 / 5 + self.config.loop_wait_ms
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
    /// listed member has read the store with no leader after the newest term (it confirms
    /// nobody since: a leader asks all of them) and the promises it gave before have run out.
    /// Its record says how long they still ran when published, so they end by the time this
    /// member read it plus that (one from an older pgha: a ttl from the first such record).
    /// A key merely still there (its member cut off, the key's lease not run out) proves
    /// nothing, nor does this member's ttl, which may have been lowered since the promises
    /// were given.
    fn outside_failsafe_list(
        &mut self,
        now: Millis,
        view: &ClusterView,
        plan: &mut Plan,
    ) -> Option<Reason> {
        let Some(list) = view.failsafe.as_ref() else {
            self.listed_promises_end.clear();
            return None;
        };
        let term = self.newest_term_in(view);
        let read_after = |m: &MemberName| view.members.get(m).filter(|r| r.read_after(term));
        self.listed_promises_end
            .retain(|m, _| list.confirmers().any(|c| c == m) && read_after(m).is_some());
        let mut clear_at: Option<Millis> = None;
        for (m, record) in list.confirmers().filter_map(|m| Some((m, read_after(m)?))) {
            let ttl = self.config.ttl_ms;
            let end = self.listed_promises_end.entry(m.clone());
            let at = match record.failsafe_promise_ms {
                Some(left) => *end
                    .and_modify(|e| *e = (*e).max(now.plus(left)))
                    .or_insert(now.plus(left)),
                None => *end.or_insert(now.plus(ttl)),
            };
            clear_at = Some(clear_at.map_or(at, |c| c.min(at)));
        }
        if list.members.contains(self.name()) || list.confirmers().next().is_none() {
            return None;
        }
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
