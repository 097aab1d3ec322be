//! Cluster history events (I6): every failover, switchover, rejoin, sync change and refused
//! request, explained.

use crate::types::{Lsn, MemberName, Timeline};
use serde::{Deserialize, Serialize};
use std::fmt;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Bootstrap,
    /// Automatic promotion after the leader was lost.
    Failover,
    /// Planned: the old primary demoted first, the target promoted after replaying everything.
    Switchover,
    /// Operator-requested promotion of a named member.
    ManualFailover,
    RejoinFollow,
    RejoinRewind,
    RejoinReclone,
    SyncChanged,
    /// A switchover or manual failover refused (by the leader, or by a target without one):
    /// the request is what `to` names, `reason` says why.
    RequestRefused,
    /// The operator withdrew the failsafe list of a leader it knows is down
    /// (`pgha failover --leader-down`), so that a member it left out may take over.
    FailsafeListWithdrawn,
}

/// One history entry; the agent adds the wall-clock time when it writes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEvent {
    pub kind: EventKind,
    pub from: Option<MemberName>,
    pub to: Option<MemberName>,
    /// For promotions: the new timeline; otherwise the member's timeline.
    pub timeline: Timeline,
    /// For promotions: the switch point (where the new timeline begins).
    pub lsn: Lsn,
    pub reason: String,
}

impl fmt::Display for HistoryEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = |m: &Option<MemberName>| m.as_ref().map_or("-".to_string(), |m| m.to_string());
        write!(
            f,
            "{:?} from {} to {} timeline {} at {}: {}",
            self.kind,
            name(&self.from),
            name(&self.to),
            self.timeline,
            self.lsn,
            self.reason
        )
    }
}

impl EventKind {
    /// Its name as the history and the metrics write it (`manual_failover`).
    pub fn label(self) -> &'static str {
        match self {
            EventKind::Bootstrap => "bootstrap",
            EventKind::Failover => "failover",
            EventKind::Switchover => "switchover",
            EventKind::ManualFailover => "manual_failover",
            EventKind::RejoinFollow => "rejoin_follow",
            EventKind::RejoinRewind => "rejoin_rewind",
            EventKind::RejoinReclone => "rejoin_reclone",
            EventKind::SyncChanged => "sync_changed",
            EventKind::RequestRefused => "request_refused",
            EventKind::FailsafeListWithdrawn => "failsafe_list_withdrawn",
        }
    }

    /// Whether this event started a new timeline.
    pub fn is_promotion(self) -> bool {
        matches!(
            self,
            EventKind::Failover | EventKind::Switchover | EventKind::ManualFailover
        )
    }
}
