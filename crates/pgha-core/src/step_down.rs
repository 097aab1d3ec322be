//! Why a leader stopped leading: it publishes this in its record, so the member that takes over
//! can say why in the history, not only that the old leader now runs read-only.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::reason::Reason;

/// A member's last step-down as its record carries it: in which term, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SteppedDown {
    /// The term (leader key revision) it stopped leading in: the member taking over quotes the
    /// cause only for the term that just ended, not an older one.
    pub term: u64,
    pub cause: StepDown,
}

/// Why a member stopped leading.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepDown {
    /// Its lease renewals went unanswered (the store slow or out of reach) until it could no
    /// longer trust its lease.
    LeaseLapsed,
    /// The store's leader key no longer named it.
    LeaderKeyLost,
    /// Its PostgreSQL stopped answering for `primary_start_timeout_ms`.
    PostgresUnresponsive,
    /// Its WAL stopped reaching its disk for `primary_start_timeout_ms`.
    WalFlushStalled,
    /// Its agent could not write the fencing deadline its supervisor enforces.
    FenceStuck,
    /// Its PostgreSQL went down and was not started again as the primary (handed over to a
    /// synchronous standby, or not back within `primary_start_timeout_ms`).
    PostgresDown,
    /// It handed over for a switchover.
    Switchover,
    /// Its data directory took no write while it promoted.
    DataDirStalled,
    /// A cause written by a newer agent, which this one does not know.
    #[serde(other)]
    Unknown,
}

impl StepDown {
    /// The step-down a decision's reason means, if it means one. `wal_stalled`: the primary
    /// that stopped answering was waiting on its disk.
    pub fn of(reason: &Reason, wal_stalled: bool) -> Option<StepDown> {
        Some(match reason {
            Reason::LeaseExpiredDemoting
            | Reason::LapsedLeaseReleased
            | Reason::LapsedLeaseReleasedUnseen { .. } => StepDown::LeaseLapsed,
            Reason::LeaderKeyLost => StepDown::LeaderKeyLost,
            Reason::PrimaryUnresponsiveDemoting { .. }
            | Reason::UnresponsivePrimaryDemoted
            | Reason::UnresponsivePrimaryKilled
                if wal_stalled =>
            {
                StepDown::WalFlushStalled
            }
            Reason::PrimaryUnresponsiveDemoting { .. }
            | Reason::UnresponsivePrimaryDemoted
            | Reason::UnresponsivePrimaryKilled => StepDown::PostgresUnresponsive,
            Reason::FenceStuckDemoting { .. } | Reason::FenceStuckHandedOver => {
                StepDown::FenceStuck
            }
            Reason::SyncPrimaryDownHandingOver | Reason::PrimaryNotRestartable { .. } => {
                StepDown::PostgresDown
            }
            Reason::SwitchoverDemoting { .. } | Reason::SwitchoverHandedOff { .. } => {
                StepDown::Switchover
            }
            Reason::PromotionStalledOnDisk | Reason::StalledPromotionKilled => {
                StepDown::DataDirStalled
            }
            _ => return None,
        })
    }
}

impl fmt::Display for StepDown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StepDown::LeaseLapsed => {
                "its lease renewals went unanswered until it could no longer trust its lease \
                 (the store slow or out of its reach)"
            }
            StepDown::LeaderKeyLost => "the store's leader key no longer named it",
            StepDown::PostgresUnresponsive => {
                "its PostgreSQL stopped answering for longer than primary_start_timeout_ms"
            }
            StepDown::WalFlushStalled => {
                "its WAL stopped reaching its disk for longer than primary_start_timeout_ms"
            }
            StepDown::FenceStuck => "its agent could not write its fencing deadline",
            StepDown::PostgresDown => {
                "its PostgreSQL went down and was not started again as the primary"
            }
            StepDown::Switchover => "it handed over for a switchover",
            StepDown::DataDirStalled => "its data directory took no write while it promoted",
            StepDown::Unknown => "for a cause a newer pgha wrote (this agent cannot name it)",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_from_a_newer_agent_reads_as_unknown() {
        let known: SteppedDown =
            serde_json::from_str(r#"{"term": 7, "cause": "lease_lapsed"}"#).unwrap();
        assert_eq!(known.cause, StepDown::LeaseLapsed);
        let newer: SteppedDown =
            serde_json::from_str(r#"{"term": 7, "cause": "disk_on_fire"}"#).unwrap();
        assert_eq!(newer.cause, StepDown::Unknown);
    }

    #[test]
    fn only_the_reasons_a_leader_steps_down_with_name_a_cause() {
        let unresponsive = Reason::PrimaryUnresponsiveDemoting { for_ms: 1 };
        assert_eq!(
            StepDown::of(&unresponsive, true),
            Some(StepDown::WalFlushStalled)
        );
        assert_eq!(
            StepDown::of(&unresponsive, false),
            Some(StepDown::PostgresUnresponsive)
        );
        assert_eq!(StepDown::of(&Reason::Leading { standbys: 2 }, false), None);
    }
}
