//! Without a leader, during a switchover or manual failover request: the named target takes
//! over once caught up, everyone else defers; a switchover without a target goes to the best.

use crate::action::Action;
use crate::election::{Ineligible, Rules};
use crate::history::EventKind;
use crate::machine::{Member, Plan};
use crate::observe::{ClusterView, Observation, PendingSwitchover};
use crate::reason::Reason;
use crate::switchover::{self, RequestKind, SwitchoverRequest};
use crate::types::{Lsn, MemberName};
use crate::vacancy::vacancy_cause;

impl Member {
    /// During a pending request: the named target takes over once caught up; everyone else
    /// (and the old leader) defers. `None` means: no opinion, run the normal election.
    pub(super) fn switchover_candidacy(
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
            (
                Some(_),
                RequestKind::Failover {
                    allow_data_loss, ..
                },
            ) => {
                // A set member still streaming may confirm commits of an old primary that
                // writes on (its key removed early) past what it published: waited for, as
                // an election waits, unless the loss is accepted.
                let streaming = self.set_members_streaming(obs, view);
                if !streaming.is_empty() && !allow_data_loss {
                    return Some(Reason::WaitingForPositions {
                        unconfirmed: streaming,
                        replaying: Vec::new(),
                    });
                }
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

    /// The other members of the published set whose records say they still stream, while a
    /// stream could confirm commits past what it published ([`Member::streams_may_confirm`]).
    fn set_members_streaming(&self, obs: &Observation, view: &ClusterView) -> Vec<MemberName> {
        if !self.streams_may_confirm(obs.now) {
            return Vec::new();
        }
        let streams = |m: &MemberName| {
            view.members
                .get(m)
                .is_some_and(|r| r.is_standby() && r.stream_stopped == Some(false))
        };
        let others = view.sync.members.iter().filter(|m| *m != self.name());
        others.filter(|m| streams(m)).cloned().collect()
    }

    /// Whether a planned switchover's named target may still be promoted: the leader checked it
    /// before demoting, but tags change, and a leader that died first checked nothing. Lag is
    /// no reason (the target catches up to the old leader's final position first). Without
    /// one, the election decides.
    pub(super) fn target_may_take_over(
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
}
/// The old leader of `pending`, a planned switchover without a target, once its record shows
/// it handed over (its PostgreSQL in recovery).
pub(super) fn handed_over_to_the_best(
    view: &ClusterView,
    pending: &PendingSwitchover,
) -> Option<MemberName> {
    let request = &pending.request;
    let from = request.from.as_ref()?;
    let handed_over = view.members.get(from).is_some_and(|r| r.in_recovery);
    (request.kind == RequestKind::Switchover && request.to.is_none() && handed_over)
        .then(|| from.clone())
}
