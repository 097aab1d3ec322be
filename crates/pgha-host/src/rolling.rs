//! `pgha restart`: a rolling restart of members' PostgreSQL, standbys first and the primary
//! last (through a switchover, or in place keeping its lease), never two members down at once,
//! each back and streaming before the next goes.

use std::time::{Duration, Instant};

use pgha_core::RequestKind;

use crate::api::control::StopRequest;
use crate::handle::ClusterHandle;
use crate::status::{ClusterStatus, Role, State};

/// How long one member may take to stop, or to stream again after it started.
const STEP_TIMEOUT: Duration = Duration::from_secs(180);

/// Which members a restart goes through, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartPlan {
    /// The leader when the plan was made: the restart stops where another leads.
    pub leader: String,
    /// Standbys, one after the other.
    pub standbys: Vec<String>,
    /// The primary, last: it hands over to a standby first, then restarts as one ...
    pub primary: Option<String>,
    /// ... or restarts where it is, keeping the lease (`--in-place`).
    pub primary_in_place: bool,
}

/// Which members a restart takes by role (`pgha restart --role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleFilter {
    /// The leader only (restarted after a switchover, as a standby).
    Primary,
    /// Every member but the leader.
    Standby,
}

/// Why a restart does not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestartRefused {
    #[error("no member named {0:?}")]
    UnknownMember(String),
    #[error("the cluster has no leader; restart members once one leads")]
    NoLeader,
    #[error(
        "the cluster is paused (maintenance mode): a member stopped now would not start its \
         PostgreSQL again until `pgha resume`; resume first"
    )]
    Paused,
    #[error(
        "{member} is {state}: a restart would leave two members down; wait until every member runs"
    )]
    NotHealthy { member: String, state: String },
    #[error(
        "restarting the primary {0} needs a streaming standby to hand over to; restart it in \
         place with --in-place"
    )]
    NoStandbyForPrimary(String),
    #[error(
        "the leader changed during the restart ({planned} when it began, {now} now): the \
         restart stops here (the members before were restarted); run it again"
    )]
    LeaderChanged { planned: String, now: String },
}

/// What a restart is doing, for progress lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestartStep {
    Stopping(String),
    Starting(String),
    Streaming(String),
    HandingOver {
        from: String,
    },
    HandedOver {
        from: String,
        to: String,
    },
    /// The primary restarts in place ...
    InPlace(String),
    /// ... and runs again, still the leader.
    Running(String),
}

/// The members to restart: those named (all when none), of `role` only when given, and only
/// those with a pending restart with `pending_only`; standbys first, the leader last. Refused
/// unless every member runs (a primary that answers, standbys that stream).
pub fn plan(
    status: &ClusterStatus,
    names: &[String],
    pending_only: bool,
    role: Option<RoleFilter>,
) -> Result<RestartPlan, RestartRefused> {
    if let Some(unknown) = names
        .iter()
        .find(|n| !status.members.iter().any(|m| &m.name == *n))
    {
        return Err(RestartRefused::UnknownMember(unknown.clone()));
    }
    if status.paused {
        return Err(RestartRefused::Paused);
    }
    let leader = status.leader.clone().ok_or(RestartRefused::NoLeader)?;
    for m in &status.members {
        let healthy = match m.role {
            Role::Primary => m.state == State::Running && m.name == leader,
            Role::Standby => m.state == State::Streaming,
            Role::FormerPrimary | Role::Unknown => false,
        };
        if !healthy {
            return Err(RestartRefused::NotHealthy {
                member: m.name.clone(),
                state: format!("{} {}", m.role, m.state),
            });
        }
    }
    let chosen = |name: &str| {
        let member = status.members.iter().find(|m| m.name == name);
        let of_role = match role {
            None => true,
            Some(RoleFilter::Primary) => name == leader,
            Some(RoleFilter::Standby) => name != leader,
        };
        (names.is_empty() || names.iter().any(|n| n == name))
            && of_role
            && (!pending_only || member.is_some_and(|m| !m.pending_restart.is_empty()))
    };
    let standbys: Vec<String> = status
        .members
        .iter()
        .filter(|m| m.name != leader && chosen(&m.name))
        .map(|m| m.name.clone())
        .collect();
    let primary = chosen(&leader).then(|| leader.clone());
    Ok(RestartPlan {
        leader,
        standbys,
        primary,
        primary_in_place: false,
    })
}

impl ClusterHandle {
    /// Carries out `plan`, telling `on_step` what happens.
    pub async fn restart(
        &self,
        plan: &RestartPlan,
        mut on_step: impl FnMut(RestartStep),
    ) -> anyhow::Result<()> {
        for name in &plan.standbys {
            self.still_led_by(&plan.leader).await?;
            self.restart_standby(name, &mut on_step).await?;
        }
        if let Some(primary) = plan.primary.as_ref().filter(|_| plan.primary_in_place) {
            // Its standbys reconnect once it is back: done when they stream again, so that
            // the next restart does not find them down.
            let streaming: Vec<String> = self
                .status()
                .await?
                .members
                .into_iter()
                .filter(|m| m.name != *primary && m.state == State::Streaming)
                .map(|m| m.name)
                .collect();
            self.still_led_by(&plan.leader).await?;
            on_step(RestartStep::InPlace(primary.clone()));
            self.restart_member(primary).await?;
            on_step(RestartStep::Running(primary.clone()));
            for name in streaming {
                self.wait_member(&name, |s| s == Some(State::Streaming))
                    .await?;
                on_step(RestartStep::Streaming(name));
            }
            return Ok(());
        }
        if let Some(primary) = &plan.primary {
            let status = self.status().await?;
            if status.members.len() < 2 {
                return Err(RestartRefused::NoStandbyForPrimary(primary.clone()).into());
            }
            self.still_led_by(&plan.leader).await?;
            on_step(RestartStep::HandingOver {
                from: primary.clone(),
            });
            let done = self
                .promote(None, RequestKind::Switchover, false, |_, _| {})
                .await?;
            on_step(RestartStep::HandedOver {
                from: primary.clone(),
                to: done.target.clone(),
            });
            // The old primary now streams from the new one: restart it as a standby.
            self.wait_member(primary, |s| s == Some(State::Streaming))
                .await?;
            self.restart_standby(primary, &mut on_step).await?;
        }
        Ok(())
    }

    /// Fails when `leader` no longer leads (a failover, another operator's switchover): a
    /// member planned as a standby may lead now, and stopping it would be a failover nobody
    /// asked for; the primary's handover would go from another member than planned.
    async fn still_led_by(&self, leader: &str) -> anyhow::Result<()> {
        let now = self.status().await?.leader;
        if now.as_deref() != Some(leader) {
            return Err(RestartRefused::LeaderChanged {
                planned: leader.to_string(),
                now: now.unwrap_or_else(|| "none".to_string()),
            }
            .into());
        }
        Ok(())
    }

    async fn restart_standby(
        &self,
        name: &str,
        on_step: &mut impl FnMut(RestartStep),
    ) -> anyhow::Result<()> {
        on_step(RestartStep::Stopping(name.to_string()));
        self.stop_or_start(name, Some(StopRequest { immediate: false }))
            .await?;
        // A member that left is stopped too (in distributed mode its record is gone).
        self.wait_member(name, |s| s.is_none_or(|s| s == State::Stopped))
            .await?;
        on_step(RestartStep::Starting(name.to_string()));
        self.stop_or_start(name, None).await?;
        self.wait_member(name, |s| s == Some(State::Streaming))
            .await?;
        on_step(RestartStep::Streaming(name.to_string()));
        Ok(())
    }

    /// Waits until member `name`'s state (`None`: not in the status) satisfies `done`, at
    /// most [`STEP_TIMEOUT`].
    async fn wait_member(
        &self,
        name: &str,
        done: impl Fn(Option<State>) -> bool,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            let status = self.status().await?;
            let state = status
                .members
                .iter()
                .find(|m| m.name == name)
                .map(|m| m.state);
            if done(state) {
                return Ok(());
            }
            if started.elapsed() > STEP_TIMEOUT {
                anyhow::bail!(
                    "{name} is still {} after {} s; the restart stops here (the members \
                     before it were restarted). See `pgha status`",
                    state.map_or("unknown".to_string(), |s| s.to_string()),
                    STEP_TIMEOUT.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

#[cfg(test)]
#[path = "rolling_tests.rs"]
mod tests;
