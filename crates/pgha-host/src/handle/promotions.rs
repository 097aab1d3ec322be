//! The CLI's promotions: a switchover or failover requested and waited for, a switchover
//! scheduled or cancelled.

use std::time::{Duration, Instant};

use pgha_core::RequestKind;

use super::ClusterHandle;
use crate::client::ClientError;

/// A promotion that completed: who is the primary now, and how long it took from the request.
pub struct Promoted {
    pub target: String,
    pub took: Duration,
}

impl ClusterHandle {
    /// Requests a switchover (`to` optional) or a failover, tells `on_requested` which member
    /// the cluster chose, and waits until that member runs as the primary.
    pub async fn promote(
        &self,
        to: Option<String>,
        kind: RequestKind,
        on_requested: impl FnOnce(&str),
    ) -> anyhow::Result<Promoted> {
        let request = self.client.request_promotion(to, kind);
        self.promote_by(request, on_requested).await
    }

    /// `pgha failover --to TO --leader-down`: as [`ClusterHandle::promote`], the last leader
    /// known down, so that its failsafe list may be withdrawn.
    pub async fn fail_over_leader_down(
        &self,
        to: String,
        force: bool,
        allow_data_loss: bool,
        on_requested: impl FnOnce(&str),
    ) -> anyhow::Result<Promoted> {
        let request = self
            .client
            .request_failover_leader_down(to, force, allow_data_loss);
        self.promote_by(request, on_requested).await
    }

    /// Sends `request` (a promotion, not yet sent), tells `on_requested` which member the
    /// cluster chose, and waits until that member runs as the primary.
    async fn promote_by(
        &self,
        request: impl std::future::Future<Output = Result<String, ClientError>>,
        on_requested: impl FnOnce(&str),
    ) -> anyhow::Result<Promoted> {
        let started = Instant::now();
        let since = self
            .client
            .history_len()
            .await
            .map_err(|e| self.explain(e))?;
        let target = request.await.map_err(|e| self.explain(e))?;
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
    /// the cluster would promote now. It runs when the leader's agent sees the instant pass.
    pub async fn schedule_switchover(&self, to: Option<String>, at: u64) -> anyhow::Result<String> {
        self.client
            .request_promotion_at(to, RequestKind::Switchover, Some(at))
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
