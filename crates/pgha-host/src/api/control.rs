//! The API's control endpoints: switchover, failover, pause/resume, dynamic settings, stop,
//! start and reload of a member of this host, freezing its agent (a fault), and the members' failsafe
//! confirmation. Each checks with
//! the core's rules through `crate::ops` and answers what it did.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use pgha_agent::agent::Shutdown;
use pgha_agent::failsafe::{FailsafeAnswer, FailsafeRequest, PromisesReturned, Taken};
use pgha_core::{ClusterConfig, MemberName, RequestKind, SwitchoverRequest};
use serde::{Deserialize, Serialize};

use super::{Answer, Failure, FailureKind};
use crate::host::Host;
use crate::ops;

/// Body of POST /switchover and /failover.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PromoteRequest {
    pub from: Option<String>,
    pub to: Option<String>,
    #[serde(default)]
    pub force: bool,
    #[serde(default)]
    pub allow_data_loss: bool,
    /// A failover: the last leader is known down, and its failsafe list may be withdrawn
    /// (see [`ops::request_leader_down`]).
    #[serde(default)]
    pub leader_down: bool,
    /// A scheduled switchover: not before this instant (Unix seconds, UTC).
    #[serde(default)]
    pub at: Option<u64>,
}

impl PromoteRequest {
    /// The store request this body asks for.
    pub fn to_request(&self, kind: RequestKind) -> SwitchoverRequest {
        SwitchoverRequest {
            from: self.from.as_deref().map(MemberName::new),
            to: self.to.as_deref().map(MemberName::new),
            kind,
            at: self.at,
        }
    }
}

/// Answer of POST /switchover and /failover: the member that will be promoted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Promoting {
    /// The member to promote; for a switchover asked without `to`, the best candidate now
    /// (a scheduled one promotes the best candidate when it is due).
    pub target: String,
    /// The leader the request was made to (the one that hands over), if one led.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// A switchover scheduled for later, written although refused this moment: why (the
    /// leader checks it again when it is due).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_when_due: Option<String>,
}

/// Body of POST /config: KEY=VALUE assignments, applied together or not at all.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConfigChange {
    pub assignments: Vec<String>,
}

/// Body of POST /members/{name}/stop.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StopRequest {
    #[serde(default)]
    pub immediate: bool,
}

/// Answer of POST /members/{name}/stop and /start: whether anything changed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MemberChanged {
    pub member: String,
    /// `false`: it already was as asked (stopped, or running).
    pub changed: bool,
}

/// The answer that `member` changed (or, `changed` false, already was as asked).
fn member_changed(member: String, changed: bool) -> Answer<MemberChanged> {
    Ok(Json(MemberChanged { member, changed }))
}

pub async fn switchover(
    State(host): State<Arc<Host>>,
    Json(body): Json<PromoteRequest>,
) -> Answer<Promoting> {
    promote(&host, &body, RequestKind::Switchover).await
}

pub async fn failover(
    State(host): State<Arc<Host>>,
    Json(body): Json<PromoteRequest>,
) -> Answer<Promoting> {
    let kind = RequestKind::Failover {
        force: body.force,
        allow_data_loss: body.allow_data_loss,
    };
    if body.allow_data_loss {
        tracing::warn!(
            "manual failover to {:?} with --allow-data-loss requested",
            body.to
        );
    }
    if body.leader_down {
        tracing::warn!(
            "manual failover to {:?} with --leader-down requested",
            body.to
        );
        let requested =
            ops::request_leader_down(host.store.as_ref(), body.to_request(kind)).await?;
        return Ok(Json(Promoting::from(requested)));
    }
    promote(&host, &body, kind).await
}

async fn promote(host: &Host, body: &PromoteRequest, kind: RequestKind) -> Answer<Promoting> {
    let requested = ops::request(host.store.as_ref(), body.to_request(kind)).await?;
    Ok(Json(Promoting::from(requested)))
}

impl From<ops::Requested> for Promoting {
    fn from(requested: ops::Requested) -> Self {
        Promoting {
            target: requested.target.to_string(),
            from: requested.from.map(|f| f.to_string()),
            checked_when_due: requested.checked_when_due.map(|r| r.to_string()),
        }
    }
}

/// Answer of POST /switchover/cancel: the request that was pending, if one was.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Cancelled {
    pub cancelled: Option<SwitchoverRequest>,
}

/// Withdraws a pending (or scheduled) switchover or failover request.
pub async fn cancel_switchover(State(host): State<Arc<Host>>) -> Answer<Cancelled> {
    let cancelled = ops::cancel_request(host.store.as_ref()).await?;
    Ok(Json(Cancelled { cancelled }))
}

pub async fn pause(State(host): State<Arc<Host>>) -> Answer<ClusterConfig> {
    Ok(Json(ops::set_paused(host.store.as_ref(), true).await?))
}

pub async fn resume(State(host): State<Arc<Host>>) -> Answer<ClusterConfig> {
    Ok(Json(ops::set_paused(host.store.as_ref(), false).await?))
}

pub async fn set_config(
    State(host): State<Arc<Host>>,
    Json(body): Json<ConfigChange>,
) -> Answer<ClusterConfig> {
    if let Some(spec) = host.specs().next() {
        let instance = &spec.instance;
        crate::parameter_check::check(&instance.bins, &instance.run_as, &body.assignments).await?;
    }
    let config = ops::set_assignments(host.store.as_ref(), &body.assignments).await?;
    tracing::info!("config changed: {}", body.assignments.join(", "));
    Ok(Json(config))
}

/// Stops a member of this host: its PostgreSQL stops and it leaves (the others fail over if
/// it led).
pub async fn stop_member(
    State(host): State<Arc<Host>>,
    Path(name): Path<String>,
    Json(body): Json<StopRequest>,
) -> Answer<MemberChanged> {
    let mode = if body.immediate {
        pgha_pg::StopMode::Immediate
    } else {
        pgha_pg::StopMode::Fast
    };
    let changed = host.stop_member(&name, Shutdown::Leave(mode)).await?;
    member_changed(name, changed)
}

/// Answer of POST /members/{name}/reinit: where the old data directory went.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Reinitialised {
    pub member: String,
    /// The moved-aside data directory (`None`: there was none).
    pub moved_aside: Option<std::path::PathBuf>,
}

/// Re-clones a standby of this host from the leader, its old data kept aside.
pub async fn reinit_member(
    State(host): State<Arc<Host>>,
    Path(name): Path<String>,
) -> Answer<Reinitialised> {
    let moved_aside = host.reinit_member(&name).await?;
    Ok(Json(Reinitialised {
        member: name,
        moved_aside,
    }))
}

/// Renders the configuration of a member of this host and reloads its PostgreSQL now.
pub async fn reload_member(
    State(host): State<Arc<Host>>,
    Path(name): Path<String>,
) -> Answer<MemberChanged> {
    host.reload_member(&name).await?;
    member_changed(name, true)
}

pub async fn start_member(
    State(host): State<Arc<Host>>,
    Path(name): Path<String>,
) -> Answer<MemberChanged> {
    let changed = host.start_member(&name).await?;
    member_changed(name, changed)
}

/// Body of POST /members/{name}/agent/freeze.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FreezeRequest {
    /// How long the agent's loop stands still, 1 ms to 10 minutes.
    pub for_ms: u64,
}

/// The longest freeze the API accepts.
pub const MAX_FREEZE_MS: u64 = 600_000;

/// Freezes the agent of a member of this host, as if its process were stopped: the fault
/// `pgha chaos` injects where agents share a process (`pgha up`).
pub async fn freeze_agent(
    State(host): State<Arc<Host>>,
    Path(name): Path<String>,
    Json(body): Json<FreezeRequest>,
) -> Answer<MemberChanged> {
    if body.for_ms == 0 || body.for_ms > MAX_FREEZE_MS {
        return Err(Failure::new(
            FailureKind::BadRequest,
            format!(
                "for_ms = {} is out of range: give 1 to {MAX_FREEZE_MS}",
                body.for_ms
            ),
        ));
    }
    host.freeze_agent(&name, std::time::Duration::from_millis(body.for_ms))?;
    member_changed(name, true)
}

/// The member of this host and its failsafe state: failsafe is between hosts of one member,
/// whose agent runs.
fn failsafe_here(host: &Host) -> Result<(MemberName, pgha_agent::failsafe::Failsafe), Failure> {
    let Some(me) = host.only_member().map(|s| s.name.clone()) else {
        return Err(Failure::new(
            FailureKind::NotHere,
            "failsafe is between hosts of one member each",
        ));
    };
    match host.failsafe(&me) {
        Some(failsafe) => Ok((me, failsafe)),
        None => Err(Failure::new(
            FailureKind::Unavailable,
            format!("{me}'s agent is not running"),
        )),
    }
}

/// A leader whose store is down asks for confirmation; given only when this host's member
/// cannot reach the store either (then it promises not to take the lease for a ttl).
pub async fn failsafe(
    State(host): State<Arc<Host>>,
    Json(body): Json<FailsafeRequest>,
) -> Response {
    let (me, failsafe) = match failsafe_here(&host) {
        Ok(here) => here,
        Err(refused) => return refused.into_response(),
    };
    match failsafe.confirm(&body) {
        Ok(confirmation) => Json(FailsafeAnswer {
            member: me.to_string(),
            confirmed: body.leader.clone(),
            term: body.term,
            promised_ms: confirmation.promised.as_millis() as u64,
            promise: confirmation.promise,
        })
        .into_response(),
        Err(why) => Failure::new(FailureKind::Refused, why).into_response(),
    }
}

/// A leader demoted for a switchover gives back the failsafe promises this host's member
/// gave it in its term (those it names): the member may take the lease without waiting them
/// out.
pub async fn failsafe_return(
    State(host): State<Arc<Host>>,
    Json(body): Json<PromisesReturned>,
) -> Response {
    let (_, failsafe) = match failsafe_here(&host) {
        Ok(here) => here,
        Err(refused) => return refused.into_response(),
    };
    match failsafe.give_back(&body) {
        Ok(returned) => Json(Taken { returned }).into_response(),
        Err(why) => Failure::new(FailureKind::Refused, why).into_response(),
    }
}
