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
mod tests {
    use super::*;
    use crate::status::{MemberStatus, ProxyStatus};

    fn member(name: &str, role: Role, state: State, pending: &[&str]) -> MemberStatus {
        MemberStatus {
            timeline: Some(1),
            pending_restart: pending.iter().map(|p| p.to_string()).collect(),
            ..MemberStatus::new(name, "127.0.0.1", 1, role, state)
        }
    }

    fn cluster(members: Vec<MemberStatus>) -> ClusterStatus {
        ClusterStatus {
            cluster: "c".into(),
            switchover: None,
            leader: Some("n2".into()),
            managed: true,
            paused: false,
            members,
            proxy: ProxyStatus {
                rw: String::new(),
                ro: String::new(),
                listeners: None,
            },
            synchronous: None,
        }
    }

    fn healthy() -> Vec<MemberStatus> {
        vec![
            member("n1", Role::Standby, State::Streaming, &["shared_buffers"]),
            member("n2", Role::Primary, State::Running, &["shared_buffers"]),
            member("n3", Role::Standby, State::Streaming, &[]),
        ]
    }

    #[test]
    fn standbys_go_first_and_the_leader_last() {
        let plan = plan(&cluster(healthy()), &[], false, None).unwrap();
        assert_eq!(plan.standbys, ["n1", "n3"]);
        assert_eq!(plan.primary.as_deref(), Some("n2"));
        let pending = super::plan(&cluster(healthy()), &[], true, None).unwrap();
        assert_eq!(pending.standbys, ["n1"]);
        assert_eq!(pending.primary.as_deref(), Some("n2"));
        let named = super::plan(&cluster(healthy()), &["n3".into()], false, None).unwrap();
        assert_eq!(
            (named.standbys, named.primary),
            (vec!["n3".to_string()], None)
        );
    }

    #[test]
    fn a_role_chooses_the_leader_or_every_other_member() {
        let primary = plan(&cluster(healthy()), &[], false, Some(RoleFilter::Primary)).unwrap();
        assert_eq!(
            (primary.standbys, primary.primary),
            (Vec::<String>::new(), Some("n2".to_string()))
        );
        let standbys = plan(&cluster(healthy()), &[], false, Some(RoleFilter::Standby)).unwrap();
        assert_eq!(
            (standbys.standbys, standbys.primary),
            (vec!["n1".to_string(), "n3".to_string()], None)
        );
        // With --pending: the standbys that wait for a restart only.
        let pending = plan(&cluster(healthy()), &[], true, Some(RoleFilter::Standby)).unwrap();
        assert_eq!(
            (pending.standbys, pending.primary),
            (vec!["n1".to_string()], None)
        );
        // The role is the leader's, not what a member was before (n1 led once, n2 leads).
        let mut members = healthy();
        members[0].role = Role::Standby;
        let primary = plan(&cluster(members), &[], true, Some(RoleFilter::Primary)).unwrap();
        assert_eq!(primary.primary.as_deref(), Some("n2"));
    }

    #[test]
    fn a_member_down_or_unknown_refuses_the_restart() {
        let mut members = healthy();
        members[2].state = State::Stopped;
        assert!(matches!(
            plan(&cluster(members), &[], false, None),
            Err(RestartRefused::NotHealthy { member, .. }) if member == "n3"
        ));
        assert_eq!(
            plan(&cluster(healthy()), &["n9".into()], false, None),
            Err(RestartRefused::UnknownMember("n9".into()))
        );
        let mut leaderless = cluster(healthy());
        leaderless.leader = None;
        assert_eq!(
            plan(&leaderless, &[], false, None),
            Err(RestartRefused::NoLeader)
        );
        // Found by review (2026-12-07): paused, each member stopped stayed down (no start of
        // PostgreSQL in maintenance mode) and the restart gave up after 180 s.
        let mut paused = cluster(healthy());
        paused.paused = true;
        assert_eq!(plan(&paused, &[], false, None), Err(RestartRefused::Paused));
    }

    /// Serves `GET /status` answering `status`; the API's address.
    async fn serving_status(status: ClusterStatus) -> String {
        let app = axum::Router::new().route(
            "/status",
            axum::routing::get(move || {
                let status = status.clone();
                async move { axum::Json(status) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(listener, app).await });
        address
    }

    /// Found by review (2026-12-07): a rolling restart went by the plan it made at its start.
    /// With the leader changed meanwhile (a failover, another operator's switchover), it
    /// stopped the member planned as a standby that led now (a failover nobody asked for), and
    /// handed over from whoever led. It stops where the leader is not the one it planned with.
    #[tokio::test]
    async fn a_restart_stops_where_another_member_leads_than_planned() {
        let plan = plan(&cluster(healthy()), &[], false, None).unwrap();
        assert_eq!(plan.leader, "n2");
        let mut now = cluster(healthy());
        now.leader = Some("n1".into());
        let handle = ClusterHandle::over(serving_status(now).await);
        let mut steps = Vec::new();
        let stopped = handle.restart(&plan, |s| steps.push(s)).await.unwrap_err();
        assert!(
            stopped.to_string().contains("n2 when it began, n1 now"),
            "{stopped:#}"
        );
        assert!(steps.is_empty(), "{steps:?}");
    }
}
