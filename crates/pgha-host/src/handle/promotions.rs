//! The CLI's promotions: a switchover or failover requested and waited for, a switchover
//! scheduled or cancelled.

use std::time::{Duration, Instant};

use pgha_core::RequestKind;

use crate::promotion_wait::Awaited;

use super::ClusterHandle;

/// A promotion that completed: who is the primary now, and how long it took from the request.
pub struct Promoted {
    pub target: String,
    pub took: Duration,
}

impl ClusterHandle {
    /// Requests a switchover (`to` optional) or a failover (with `leader_down`, `pgha failover
    /// --leader-down`), tells `on_requested` whom it waits for and the member the cluster
    /// named as best, and waits until the member awaited runs as the primary. A switchover
    /// naming none waits for whichever member succeeds the leader: that leader picks the best
    /// standby when it hands over, not necessarily the one named when it was accepted.
    pub async fn promote(
        &self,
        to: Option<String>,
        kind: RequestKind,
        leader_down: bool,
        on_requested: impl FnOnce(&Awaited, &str),
    ) -> anyhow::Result<Promoted> {
        let started = Instant::now();
        let since = self
            .client
            .history_len()
            .await
            .map_err(|e| self.explain(e))?;
        let named = to.is_some();
        let answer = self
            .client
            .request_promotion_at(to, kind, None, leader_down)
            .await
            .map_err(|e| self.explain(e))?;
        let awaited = match answer.from {
            Some(leader) if !named => Awaited::SuccessorOf(leader),
            _ => Awaited::Member(answer.target.clone()),
        };
        on_requested(&awaited, &answer.target);
        let target = self
            .client
            .wait_promoted(&awaited, since)
            .await
            .map_err(|e| self.explain(e))?;
        Ok(Promoted {
            target,
            took: started.elapsed(),
        })
    }

    /// Schedules a switchover (`to` optional) for `at` (Unix seconds); answers the member
    /// the cluster would promote now, and what it was written despite (a target not
    /// streaming this moment). It runs when the leader's agent sees the instant pass, once
    /// the leader's check then allows it (a refusal then is in the history).
    pub async fn schedule_switchover(
        &self,
        to: Option<String>,
        at: u64,
    ) -> anyhow::Result<crate::api::control::Promoting> {
        self.client
            .request_promotion_at(to, RequestKind::Switchover, Some(at), false)
            .await
            .map_err(|e| self.explain(e))
    }

    /// Withdraws the pending or scheduled switchover or failover; what it asked, if any.
    pub async fn cancel_switchover(&self) -> anyhow::Result<Option<pgha_core::SwitchoverRequest>> {
        let answer: crate::api::control::Cancelled = self
            .client
            .post("/switchover/cancel", &())
            .await
            .map_err(|e| self.explain(e))?;
        Ok(answer.cancelled)
    }
}
