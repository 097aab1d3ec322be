//! The CLI's promotions: a switchover or failover requested and waited for, a switchover
//! scheduled or cancelled.

use std::time::{Duration, Instant};

use pgha_core::RequestKind;

use super::ClusterHandle;

/// A promotion that completed: who is the primary now, and how long it took from the request.
pub struct Promoted {
    pub target: String,
    pub took: Duration,
}

impl ClusterHandle {
    /// Requests a switchover (`to` optional) or a failover (with `leader_down`, `pgha failover
    /// --leader-down`), tells `on_requested` which member the cluster chose, and waits until
    /// that member runs as the primary.
    pub async fn promote(
        &self,
        to: Option<String>,
        kind: RequestKind,
        leader_down: bool,
        on_requested: impl FnOnce(&str),
    ) -> anyhow::Result<Promoted> {
        let started = Instant::now();
        let since = self
            .client
            .history_len()
            .await
            .map_err(|e| self.explain(e))?;
        let target = self
            .client
            .request_promotion_at(to, kind, None, leader_down)
            .await
            .map_err(|e| self.explain(e))?
            .target;
        on_requested(&target);
        self.client
            .wait_promoted(&target, since)
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
