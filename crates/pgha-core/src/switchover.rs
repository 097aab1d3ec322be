//! Planned switchover and manual failover requests, and the checks that accept or refuse them.

use crate::election::{self, Ineligible, Rules};
use crate::history::{EventKind, HistoryEvent};
use crate::observe::{ClusterView, FailsafeList, LeaderPosition};
use crate::types::{Lsn, MemberName, Timeline};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A request written to the store's `switchover` key by `pgha switchover|failover`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchoverRequest {
    /// The leader the operator expects (refused if another member leads).
    pub from: Option<MemberName>,
    /// The member to promote; `None` lets the core pick the best candidate.
    pub to: Option<MemberName>,
    pub kind: RequestKind,
    /// A scheduled switchover: not before this instant (Unix seconds, UTC). The core has no
    /// wall clock: the agent shows it a request only once that instant has passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<u64>,
}

impl SwitchoverRequest {
    /// The history entry of this request refused by `by` (at its `timeline` and `lsn`): what
    /// the operator's `pgha switchover|failover` shows as soon as it is written.
    pub fn refused(
        &self,
        by: &MemberName,
        timeline: Timeline,
        lsn: Lsn,
        refusal: &Refusal,
    ) -> HistoryEvent {
        let what = match self.kind {
            RequestKind::Switchover => "switchover",
            RequestKind::Failover { .. } => "manual failover",
        };
        HistoryEvent {
            kind: EventKind::RequestRefused,
            from: Some(by.clone()),
            to: self.to.clone(),
            timeline,
            lsn,
            reason: format!("{what} refused by {by}: {refusal}"),
        }
    }
}

/// Planned switchover or manual failover.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    /// Zero data loss: the leader demotes first, the target promotes after replaying everything.
    Switchover,
    /// `pgha failover --to NAME`: works without a healthy leader. `force` accepts a lagging
    /// target; `allow_data_loss` accepts a target outside the synchronous set.
    Failover { force: bool, allow_data_loss: bool },
}

/// Why a request is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    LeaderMismatch {
        expected: MemberName,
        actual: Option<MemberName>,
    },
    UnknownTarget(MemberName),
    TargetIsLeader(MemberName),
    TargetNotStreaming(MemberName),
    TargetIneligible {
        target: MemberName,
        why: Ineligible,
    },
    NoCandidate,
    FailoverNeedsTarget,
    /// A planned switchover hands over from a running leader; without one, only a failover
    /// (which names its target) can promote.
    SwitchoverWithoutLeader(MemberName),
    /// A planned switchover, synchronous mode, to a member outside the published set: only
    /// members of the set are promoted, even with nothing to lose.
    SwitchoverOutsideSyncSet(MemberName),
    /// Written before the leader's term began: made to an earlier leader, or to this one
    /// before it lost its lease and took it again.
    MadeInEarlierTerm {
        term: u64,
    },
    /// A manual failover without a leader, synchronous mode: `ahead`, a member of the set, is
    /// further than the target and may hold commits acknowledged through it that the target
    /// lacks (`--allow-data-loss` accepts that).
    SynchronousMemberAhead {
        target: MemberName,
        ahead: MemberName,
    },
    /// A manual failover without a leader to a member the last leader's failsafe list leaves
    /// out, while no member it names reads the store: that leader may still write on their
    /// promises (the store out of their reach), which only the operator can rule out
    /// (`--leader-down`).
    OutsideFailsafeList {
        target: MemberName,
        leader: MemberName,
    },
}

impl std::error::Error for Refusal {}

impl Refusal {
    /// Whether it speaks of a passing state (a target not streaming or lagging at the moment,
    /// the synchronous set, no healthy standby right now), which a switchover scheduled for
    /// later may no longer meet: the leader checks the request again when it is due.
    pub fn may_pass_by_then(&self) -> bool {
        match self {
            Refusal::TargetNotStreaming(_)
            | Refusal::SwitchoverOutsideSyncSet(_)
            | Refusal::NoCandidate => true,
            Refusal::TargetIneligible { why, .. } => matches!(
                why,
                Ineligible::Lagging { .. }
                    | Ineligible::NotARunningStandby
                    | Ineligible::PromotionVetoed
                    | Ineligible::DataDirStalled
            ),
            Refusal::LeaderMismatch { .. }
            | Refusal::UnknownTarget(_)
            | Refusal::TargetIsLeader(_)
            | Refusal::FailoverNeedsTarget
            | Refusal::SwitchoverWithoutLeader(_)
            | Refusal::MadeInEarlierTerm { .. }
            | Refusal::SynchronousMemberAhead { .. }
            | Refusal::OutsideFailsafeList { .. } => false,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::LeaderMismatch { expected, actual } => match actual {
                Some(actual) => write!(f, "{expected} is not the leader ({actual} is)"),
                None => write!(f, "{expected} is not the leader (there is none)"),
            },
            Refusal::UnknownTarget(t) => write!(f, "{t} is not a live member"),
            Refusal::TargetIsLeader(t) => write!(f, "{t} is already the leader"),
            Refusal::TargetNotStreaming(t) => {
                write!(f, "{t} is not streaming from the leader")
            }
            Refusal::TargetIneligible {
                target,
                why: why @ Ineligible::Lagging { .. },
            } => write!(
                f,
                "{target} is {why}: add --force to fail over to it anyway, losing what it lacks"
            ),
            Refusal::TargetIneligible {
                target,
                why: why @ Ineligible::OutsideSyncSet,
            } => write!(
                f,
                "{target} is {why}, so it may lack commits acknowledged to clients: \
                 `pgha failover --to {target} --allow-data-loss` promotes it anyway, losing them"
            ),
            Refusal::TargetIneligible { target, why } => write!(f, "{target} is {why}"),
            Refusal::NoCandidate => write!(f, "no healthy eligible standby"),
            Refusal::FailoverNeedsTarget => write!(f, "a manual failover needs --to NAME"),
            Refusal::SwitchoverOutsideSyncSet(t) => write!(
                f,
                "{t} is not in the published synchronous set, and only its members are \
                 promoted: switch over to one of them (`pgha status` shows the set), or leave \
                 out --to and pgha picks the best"
            ),
            Refusal::SwitchoverWithoutLeader(t) => write!(
                f,
                "a switchover needs a running leader; use `pgha failover --to {t}`"
            ),
            Refusal::SynchronousMemberAhead { target, ahead } => write!(
                f,
                "{target} is behind {ahead}, a synchronous standby that may hold commits \
                 acknowledged to clients that {target} lacks: fail over to {ahead} (or let the \
                 election choose), or add --allow-data-loss to lose them"
            ),
            Refusal::OutsideFailsafeList { target, leader } => write!(
                f,
                "{target} is not in {leader}'s failsafe list, and no member of that list reads \
                 the store: {leader} may still write on their promises. Wait for one of them to \
                 be back, or, once you know {leader}'s PostgreSQL is not running (its host \
                 down, or stopped by hand), add --leader-down"
            ),
            Refusal::MadeInEarlierTerm { term } => write!(
                f,
                "it was made before the leader's term {term} began (the leader changed or \
                 took its lease again since); ask again"
            ),
        }
    }
}

/// Checks a request against the view, for the CLI (before writing it) and for the leader
/// (before acting on it). `leader_lsn` is the leader's current position (without a leader,
/// the last one's published position counts). Returns the target.
pub fn check(
    view: &ClusterView,
    leader_lsn: Lsn,
    request: &SwitchoverRequest,
) -> Result<MemberName, Refusal> {
    let leader = view.leader.as_ref().map(|l| l.holder.clone());
    if let Some(expected) = &request.from {
        if leader.as_ref() != Some(expected) {
            return Err(Refusal::LeaderMismatch {
                expected: expected.clone(),
                actual: leader,
            });
        }
    }
    let (force, allow_data_loss) = match request.kind {
        RequestKind::Switchover => (false, false),
        RequestKind::Failover {
            force,
            allow_data_loss,
        } => (force, allow_data_loss),
    };
    // Without a leader, the last leader's published position (the `position` key), as the
    // election goes by it: a manual failover without --force is held to the same lag bound.
    let last_position = view.leader_position.as_ref().map(|p| p.lsn);
    let rules = Rules {
        config: &view.config,
        sync: &view.sync,
        last_primary_lsn: leader.as_ref().map(|_| leader_lsn).or(last_position),
    };
    let target = match &request.to {
        Some(target) => target.clone(),
        None if request.kind != RequestKind::Switchover => {
            return Err(Refusal::FailoverNeedsTarget)
        }
        None => election::best_candidate(&rules, &view.members, leader.as_ref())
            .ok_or(Refusal::NoCandidate)?,
    };
    if leader.as_ref() == Some(&target) {
        return Err(Refusal::TargetIsLeader(target));
    }
    if leader.is_none() && request.kind == RequestKind::Switchover {
        return Err(Refusal::SwitchoverWithoutLeader(target));
    }
    let record = view
        .members
        .get(&target)
        .ok_or_else(|| Refusal::UnknownTarget(target.clone()))?;
    if let Some(list) = view.failsafe.as_ref().filter(|_| leader.is_none()) {
        if list_holds_back(list, &target, view) {
            let leader = list.leader.clone();
            return Err(Refusal::OutsideFailsafeList { target, leader });
        }
    }
    if leader.is_some() && record.streaming_from != leader {
        return Err(Refusal::TargetNotStreaming(target));
    }
    if leader.is_none() && !allow_data_loss {
        if let Some(ahead) = rules.synchronous_member_ahead(&target, record, &view.members) {
            return Err(Refusal::SynchronousMemberAhead { target, ahead });
        }
    }
    match rules.check(&target, record) {
        Ok(()) => Ok(target),
        // A planned switchover hands over only once the target replayed the old leader's
        // final position, so a target behind (or a stale record of it) loses nothing.
        // Losing acknowledged commits (--allow-data-loss) includes losing the WAL it lags by.
        Err(Ineligible::Lagging { .. })
            if force || allow_data_loss || request.kind == RequestKind::Switchover =>
        {
            Ok(target)
        }
        Err(Ineligible::OutsideSyncSet) if allow_data_loss => Ok(target),
        Err(Ineligible::OutsideSyncSet) if request.kind == RequestKind::Switchover => {
            Err(Refusal::SwitchoverOutsideSyncSet(target))
        }
        Err(why) => Err(Refusal::TargetIneligible { target, why }),
    }
}

/// Whether `list` keeps `target` from running for leader for as long as no member it names
/// reads the store (see `Member::outside_failsafe_list`): it leaves `target` out, and names
/// members other than its leader, none of whom has a record in `view`.
fn list_holds_back(list: &FailsafeList, target: &MemberName, view: &ClusterView) -> bool {
    let mut confirmers = list.confirmers().peekable();
    !list.members.contains(target)
        && confirmers.peek().is_some()
        && !confirmers.any(|m| view.members.contains_key(m))
}

/// The history entry of `list` withdrawn by the operator for `target` (`pgha failover --to
/// TARGET --leader-down`), at the last leader's published `position`.
pub fn failsafe_list_withdrawn(
    list: &FailsafeList,
    target: &MemberName,
    position: Option<&LeaderPosition>,
) -> HistoryEvent {
    let names: Vec<&str> = list.members.iter().map(MemberName::as_str).collect();
    HistoryEvent {
        kind: EventKind::FailsafeListWithdrawn,
        from: Some(list.leader.clone()),
        to: Some(target.clone()),
        timeline: position.map(|p| p.timeline).unwrap_or_default(),
        lsn: position.map(|p| p.lsn).unwrap_or_default(),
        reason: format!(
            "{}'s failsafe list ({}) withdrawn by the operator for a failover to {target} \
             (pgha failover --leader-down: {} known down)",
            list.leader,
            names.join(", "),
            list.leader
        ),
    }
}

/// Whether `pending` was written before the term the store shows began (the leader key's, or
/// the position a leader of a later term published): void, since a request is made to the
/// leader of its term and no member carries it out after (a scheduled one would otherwise
/// hold back every request until its instant).
pub fn predates_the_stores_term(
    view: &ClusterView,
    pending: &crate::observe::PendingSwitchover,
) -> bool {
    let position = view.leader_position.as_ref().and_then(|p| p.term);
    [view.leader.as_ref().map(|l| l.revision), position]
        .into_iter()
        .flatten()
        .any(|term| term > pending.revision)
}

/// The history event of `pending`, void in a later term, withdrawn by a new request (as the
/// leader records one it refuses when due).
pub fn void_request_withdrawn(
    pending: &crate::observe::PendingSwitchover,
    position: Option<&LeaderPosition>,
) -> HistoryEvent {
    let what = match pending.request.kind {
        RequestKind::Switchover => "switchover",
        RequestKind::Failover { .. } => "failover",
    };
    let to =
        (pending.request.to.as_ref()).map_or("the best standby".to_string(), |t| t.to_string());
    HistoryEvent {
        kind: EventKind::RequestRefused,
        from: pending.request.from.clone(),
        to: pending.request.to.clone(),
        timeline: position.map(|p| p.timeline).unwrap_or_default(),
        lsn: position.map(|p| p.lsn).unwrap_or_default(),
        reason: format!(
            "the {what} request to {to} made in an earlier term (void since the leader \
             changed) withdrawn by a new request"
        ),
    }
}
