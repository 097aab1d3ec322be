//! Promotions that took effect (recorded as history), and failed ones that may yet complete.

use super::{Member, Plan};
use crate::action::Action;
use crate::history::{EventKind, HistoryEvent};
use crate::observe::LocalPg;
use crate::sync::Reconnecting;
use crate::types::{Lsn, MemberName, Millis};

/// A promotion in progress, remembered to write its history event once promoted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Promotion {
    pub kind: EventKind,
    pub from: Option<MemberName>,
    pub lsn: Lsn,
    pub switchover_revision: Option<u64>,
    /// Why this member takes over, in words for the history.
    pub cause: String,
}

impl Member {
    /// Records the promotion (or bootstrap) under way once its PostgreSQL runs writable,
    /// whatever the step goes on to decide: the lease may lapse or be refused, the store be
    /// out of reach, another member lead. Clients wrote to it; the history says it led.
    pub(super) fn record_promotion_if_done(
        &mut self,
        local: &LocalPg,
        now: Millis,
        plan: &mut Plan,
    ) {
        if !local.is_writable() {
            return;
        }
        let Some(promotion) = self.promotion.take() else {
            return;
        };
        // A new cluster's history starts where its primary's WAL is after initdb (before the
        // bootstrap there was no data, and no position).
        let lsn = match promotion.kind {
            EventKind::Bootstrap => local.lsn,
            _ => promotion.lsn,
        };
        plan.push(Action::RecordHistory(HistoryEvent {
            kind: promotion.kind,
            from: promotion.from.clone(),
            to: Some(self.name().clone()),
            timeline: local.timeline,
            lsn,
            reason: format!("{} took over: {}", self.name(), promotion.cause),
        }));
        if let Some(revision) = promotion.switchover_revision {
            plan.push(Action::ClearSwitchover { revision });
        }
        // Its standbys connect from now on: mode `on` gives them a while (`Reconnecting`).
        if let Some(lease) = self
            .lease
            .filter(|_| promotion.kind != EventKind::Bootstrap)
        {
            Reconnecting::start(&mut self.sync.reconnecting, lease.revision, now);
        }
        // From now on the leader that would be lost is this one.
        self.last_leader = Some(self.name().clone());
        self.leader_heard = true;
        plan.promoted = Some(promotion.kind);
    }

    /// A failed promotion can no longer complete once its postmaster is gone (a restart
    /// removes the promotion's signal file).
    pub(super) fn forget_promotion_once_stopped(&mut self, local: &LocalPg) {
        if !local.running {
            self.promotion_may_complete = false;
        }
    }

    /// A failed promotion whose postmaster still runs may yet complete: PostgreSQL may turn
    /// writable without a new decision.
    pub(crate) fn promotion_may_complete(&self, local: &LocalPg) -> bool {
        self.promotion_may_complete && local.running
    }
}
