//! The step of a member that has a leader: follow it (or rewind, or re-clone, to rejoin it).

use crate::action::{Action, StartRole, StopMode};
use crate::history::{EventKind, HistoryEvent};
use crate::machine::{Member, Plan};
use crate::observe::{ClusterView, DataDir, LocalPg, Observation};
use crate::reason::Reason;
use crate::rejoin::{self, RejoinPlan};
use crate::types::{MemberName, Millis, Timeline};

impl Member {
    pub(crate) fn follower_step(
        &mut self,
        obs: &Observation,
        view: &ClusterView,
        leader: &MemberName,
        plan: &mut Plan,
    ) -> Reason {
        let now = obs.now;
        let local = &obs.local;
        self.leaderless_since = None;
        // Continuity of what this member watched counts only from when the leader is gone.
        self.listed_promises_end.clear();
        self.promotion = None;
        self.handover = None;
        self.last_leader = Some(leader.clone());
        self.leader_heard |= local.streaming && local.upstream.as_ref() == Some(leader);
        let leader_record = view.members.get(leader);
        if let Some(record) = leader_record.filter(|r| r.running && !r.in_recovery) {
            self.last_primary_lsn = Some(record.lsn);
        }
        if self.demote_if_writable(local, StopMode::Immediate, plan) {
            return Reason::DemotingForLeader {
                leader: leader.clone(),
            };
        }
        if let Some(reason) = self.job_running(now) {
            return reason;
        }
        if self.config.paused {
            return Reason::Paused;
        }
        if !local.running && !local.in_recovery && local.data != DataDir::Missing {
            // A stopped former primary (no standby.signal) coming back under another leader:
            // whichever way it rejoins is recorded in the history.
            self.demoted = true;
        }
        let leader_name = leader.clone();
        if local.data == DataDir::Missing {
            if view.initialize.is_none() {
                return Reason::WaitingForLeaderToClone;
            }
            if let Some(reason) = self.clone_backoff(now, plan) {
                return reason;
            }
            let source = self.reclone(leader, view, false, plan);
            return Reason::CloningFrom { source };
        }
        if let Some((why, until)) = self.no_room.clone() {
            if now < until {
                plan.wake_by(until);
                return Reason::WaitingForRoom { why };
            }
            self.no_room = None;
        }
        let unchanged = match self.rewind_check(local, now) {
            RewindCheck::Judging { for_ms } => {
                return Reason::NotStreaming {
                    leader: leader_name,
                    for_ms,
                }
            }
            RewindCheck::ChangedNothing(timeline) => Some(timeline),
            RewindCheck::Done => None,
        };
        if self.rewind_failed || local.rewind_incomplete {
            if !self.config.allow_reclone {
                return Reason::RewindFailedRecloneDisabled;
            }
            if let Some(reason) = self.clone_backoff(now, plan) {
                return reason;
            }
            let source = self.reclone(leader, view, true, plan);
            return match unchanged {
                Some(timeline) => Reason::RecloningAfterIneffectiveRewind { source, timeline },
                None => Reason::RecloningAfterFailedRewind { source },
            };
        }
        let Some(leader_record) = leader_record else {
            return Reason::LeaderNotPublished {
                leader: leader_name,
            };
        };
        if let Some(kind) = self.rejoin.take() {
            plan.push(Action::RecordHistory(HistoryEvent {
                kind,
                from: Some(self.name().clone()),
                to: Some(leader_name.clone()),
                timeline: local.timeline,
                lsn: local.lsn,
                reason: format!("{} rejoined as a standby of {leader_name}", self.name()),
            }));
            self.demoted = false;
        }
        let streaming_ok = local.running && local.upstream.as_ref() == Some(leader);
        if streaming_ok && local.streaming {
            self.not_streaming_since = None;
            self.leader_was_unreachable = false;
            if obs.restart_requested {
                let upstream = Some(leader_name);
                return self.restart_in_place(StartRole::Standby { upstream }, plan);
            }
            if !local.replay_held_by.is_empty() {
                let upstream = Some(leader_name);
                plan.push(Action::RestartPostgres(StartRole::Standby { upstream }));
                return Reason::RestartingForPrimarySettings {
                    settings: local.replay_held_by.clone(),
                };
            }
            // Slots it made while it led: nobody streams from a standby, so they only hold
            // WAL its restartpoints could otherwise remove, until its disk is full.
            if !local.slots.is_empty() {
                plan.push(Action::DropSlots {
                    names: local.slots.clone(),
                });
            }
            return Reason::Streaming {
                leader: leader_name,
            };
        }
        let history = obs
            .leader_timelines
            .clone()
            .unwrap_or_else(|| rejoin::history_from_events(&view.history));
        let mut decision =
            rejoin::plan(local.timeline, local.lsn, leader_record.timeline, &history);
        if decision == RejoinPlan::Follow
            && !local.running
            && local.crashed
            && local.timeline != leader_record.timeline
        {
            // Its end of WAL is unknown (a crashed primary reports its last checkpoint, which
            // may lie before the switch point while later WAL lies past it): the rewind
            // finishes crash recovery first, and pg_rewind rewinds only what diverged.
            decision = RejoinPlan::Rewind;
        }
        if streaming_ok {
            match obs.leader_reachable {
                Some(false) => {
                    // A cut link is not divergence; the stream timeout starts once it is back.
                    self.leader_was_unreachable = true;
                    let since = *self.not_streaming_since.get_or_insert(now);
                    let for_ms = now.since(since);
                    self.not_streaming_since = Some(now);
                    return Reason::LeaderUnreachable {
                        leader: leader_name,
                        for_ms,
                    };
                }
                Some(true) if self.leader_was_unreachable => {
                    // Back: a fresh WAL receiver connects now, not after its TCP retries.
                    self.leader_was_unreachable = false;
                    self.not_streaming_since = Some(now);
                    plan.push(Action::RestartWalReceiver);
                    return Reason::NotStreaming {
                        leader: leader_name,
                        for_ms: 0,
                    };
                }
                _ => {}
            }
            // WAL past the point where the leader's history left our timeline has diverged
            // now: waiting out the stream timeout would only keep us out of the cluster.
            if decision != RejoinPlan::Rewind {
                let since = *self.not_streaming_since.get_or_insert(now);
                let for_ms = now.since(since);
                // Only a healthy leader refusing our stream means divergence; a leader that is
                // merely down (restarting) must not make its standbys rewind or re-clone.
                let leader_healthy = leader_record.running && !leader_record.in_recovery;
                if for_ms <= self.config.stream_timeout_ms || !leader_healthy {
                    return Reason::NotStreaming {
                        leader: leader_name,
                        for_ms,
                    };
                }
                // Nor does a leader whose reachability is unknown: rewinding or re-cloning
                // would throw away WAL that may not have diverged.
                if obs.leader_reachable != Some(true) {
                    return Reason::LeaderUnreachable {
                        leader: leader_name,
                        for_ms,
                    };
                }
                // PostgreSQL refuses to stream: treat the WAL as diverged.
                self.force_rewind = true;
            }
        }
        if self.force_rewind {
            decision = RejoinPlan::Rewind;
        }
        let leader_is_primary = leader_record.running && !leader_record.in_recovery;
        if decision == RejoinPlan::Rewind && !leader_is_primary {
            // A leader still promoting has no final timeline yet, and its published one may be
            // stale: decide on a rewind (which discards WAL) only against a running primary.
            return Reason::WaitingForLeaderToPromote {
                leader: leader_name,
            };
        }
        match decision {
            RejoinPlan::Rewind if local.running => {
                // Once seen diverged, it stays so: a standby stopped by a fast shutdown reports
                // its last restartpoint, which may lie before the switch point, and would then
                // look like one that can follow (and fail to stream until stream_timeout_ms).
                self.force_rewind = true;
                self.diverged_on = Some(local.timeline);
                plan.push(Action::StopPostgres(StopMode::Fast));
                Reason::StoppingForRewind {
                    leader: leader_name,
                }
            }
            RejoinPlan::Rewind => {
                self.not_streaming_since = None;
                plan.push(Action::Rewind {
                    from: leader_name.clone(),
                });
                Reason::Rewinding {
                    leader: leader_name,
                }
            }
            RejoinPlan::Follow => {
                if self.start_failures > 0 {
                    plan.wake_by(now.plus(self.backoff_ms()));
                }
                if self.demoted && self.rejoin.is_none() {
                    self.rejoin = Some(EventKind::RejoinFollow);
                }
                self.not_streaming_since = None;
                plan.push(Action::Follow {
                    leader: leader_name.clone(),
                });
                if self.start_failures > 2 {
                    return Reason::StartFailing {
                        failures: self.start_failures,
                    };
                }
                Reason::Following {
                    leader: leader_name,
                }
            }
        }
    }

    /// A rewind that succeeded and brought the member back, running, on the very timeline it
    /// had diverged on, where it then cannot stream for `stream_timeout_ms`, changed nothing:
    /// pg_rewind of PostgreSQL 15 and older reads the target's timeline from its last
    /// checkpoint, so a promotion no checkpoint followed yet (one made by hand, then demoted)
    /// reads as "no rewind required". Rewinding again would loop: counted as a failed rewind
    /// (a re-clone follows), no rejoin recorded. A rewind that worked comes back on that
    /// timeline too, replaying it up to the point where the leader's forked, and only then
    /// streams the leader's: the rejoin is judged once it streams, or once it has not for
    /// `stream_timeout_ms`.
    fn rewind_check(&mut self, local: &LocalPg, now: Millis) -> RewindCheck {
        if self.rejoin != Some(EventKind::RejoinRewind) || !local.running {
            return RewindCheck::Done;
        }
        let Some(diverged) = self.diverged_on else {
            return RewindCheck::Done;
        };
        if local.timeline != diverged || local.streaming {
            self.diverged_on = None;
            return RewindCheck::Done;
        }
        let for_ms = now.since(*self.not_streaming_since.get_or_insert(now));
        if for_ms <= self.config.stream_timeout_ms {
            return RewindCheck::Judging { for_ms };
        }
        self.diverged_on = None;
        self.rejoin = None;
        self.rewind_failed = true;
        RewindCheck::ChangedNothing(diverged)
    }

    /// Plans a clone from the best source under `leader` (over the old data, moved aside,
    /// when `move_aside`); answers that source.
    fn reclone(
        &self,
        leader: &MemberName,
        view: &ClusterView,
        move_aside: bool,
        plan: &mut Plan,
    ) -> MemberName {
        let source = rejoin::clone_source(self.name(), leader, view);
        plan.push(Action::Reclone {
            from: source.clone(),
            move_aside,
        });
        source
    }

    /// After a clone that failed, the next one waits (twice the loop per failure in a row, a
    /// ttl at most): each attempt starts a base backup on its source (a checkpoint there, a
    /// slot, perhaps gigabytes copied again).
    fn clone_backoff(&self, now: Millis, plan: &mut Plan) -> Option<Reason> {
        let (failures, at) = self.clone_failed?;
        let wait = (self.config.loop_wait_ms << failures.min(5)).min(self.config.ttl_ms);
        let next = at.plus(wait);
        if now >= next {
            return None;
        }
        plan.wake_by(next);
        Some(Reason::CloneFailing {
            failures,
            retry_in_ms: next.since(now),
        })
    }

    fn backoff_ms(&self) -> u64 {
        let shift = self.start_failures.min(5);
        (self.config.loop_wait_ms << shift).min(self.config.ttl_ms)
    }
}

/// How a rewind that brought the member back turned out ([`Member::rewind_check`]).
enum RewindCheck {
    /// No rewind to judge, or it worked.
    Done,
    /// Back on the timeline it diverged on, not streaming yet for `for_ms`.
    Judging { for_ms: u64 },
    /// It could not stream on that timeline for `stream_timeout_ms`: the rewind changed nothing.
    ChangedNothing(Timeline),
}
