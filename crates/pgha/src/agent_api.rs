//! The REST API of `pgha agent` (distributed mode): health checks a load balancer
//! understands, the cluster as JSON, metrics, and token-protected control endpoints.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use pgha_agent::{AgentReport, NodeSpec, Observed};
use pgha_core::RequestKind;
use pgha_store::Store;
use serde_json::json;
use tokio::sync::watch;

use crate::api::{prometheus, push_gauge, ConfigChange, PromoteRequest};

/// What the handlers share.
#[derive(Clone)]
pub struct AgentApi {
    pub spec: Arc<NodeSpec>,
    pub store: Arc<dyn Store>,
    pub report: watch::Receiver<AgentReport>,
    /// Bearer token for the mutating endpoints; without one they are refused.
    pub token: Option<String>,
    /// The agent's failsafe state (POST /failsafe confirms a leader while the store is down).
    pub failsafe: pgha_agent::failsafe::Failsafe,
}

pub fn router(state: AgentApi) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/primary", get(primary))
        .route("/replica", get(replica))
        .route("/cluster", get(cluster))
        .route("/metrics", get(metrics))
        .route("/switchover", post(switchover))
        .route("/failover", post(failover))
        .route("/pause", post(pause))
        .route("/resume", post(resume))
        .route("/config", get(show_config).post(set_config))
        .route(pgha_agent::failsafe::FAILSAFE_PATH, post(failsafe))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ))
        .with_state(state)
}

/// Every control request is checked for the token before its body is even parsed, so a
/// caller without the token gets 401, never a body validation error. (The members' own
/// failsafe confirmation is the one POST without a token.)
async fn require_token(
    State(api): State<AgentApi>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if !crate::auth::reads(request.method())
        && request.uri().path() != pgha_agent::failsafe::FAILSAFE_PATH
    {
        if let Err(refused) = crate::auth::authorised(api.token.as_deref(), request.headers()) {
            return refused.into_response();
        }
    }
    next.run(request).await
}

/// What the agent's last step saw, if recent enough to answer for now. The read endpoints
/// answer from it and never open a PostgreSQL connection of their own: a flood of health
/// checks costs PostgreSQL nothing.
fn observed(api: &AgentApi) -> Option<Observed> {
    api.report.borrow().observed.clone().filter(Observed::fresh)
}

fn age_ms(o: &Option<Observed>) -> Option<u64> {
    o.as_ref().map(|o| o.at.elapsed().as_millis() as u64)
}

fn reply(ok: bool, body: serde_json::Value) -> Response {
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// 200 while PostgreSQL answers (as of the agent's last step, at most a few loops ago).
async fn health(State(api): State<AgentApi>) -> Response {
    let o = observed(&api);
    let running = o
        .as_ref()
        .is_some_and(|o| o.local.running && !o.local.unresponsive);
    let reason = api.report.borrow().reason.as_ref().map(|r| r.to_string());
    reply(
        running,
        json!({
            "member": api.spec.name,
            "running": running,
            "decision": reason,
            "observed_ms_ago": age_ms(&o),
        }),
    )
}

/// 200 only on the lease holder running as a writable primary, while it trusts its lease.
async fn primary(State(api): State<AgentApi>) -> Response {
    let o = observed(&api);
    let me = &api.spec.name;
    let ok = o.as_ref().is_some_and(|o| o.leads(me));
    reply(
        ok,
        json!({
            "member": me,
            "leader": o.as_ref().and_then(|o| o.leader.clone()),
            "writable": o.as_ref().is_some_and(|o| o.local.running && !o.local.in_recovery),
            "observed_ms_ago": age_ms(&o),
        }),
    )
}

/// 200 on a streaming standby; `?lag=SIZE` (bytes, or with a unit: 16MB, 512kB, 1GB) also
/// bounds its replay lag behind the leader's last published position. A bound that does not
/// parse is refused (400), never read as "no bound".
async fn replica(
    State(api): State<AgentApi>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let me = api.spec.name.as_str();
    let bound = match q.get("lag").map(|text| parse_size(text)) {
        None => None,
        Some(Ok(bytes)) => Some(bytes),
        Some(Err(e)) => {
            return (StatusCode::BAD_REQUEST, Json(json!({ "error": e }))).into_response()
        }
    };
    let o = observed(&api);
    let Some(o) = o else {
        return reply(false, json!({ "member": me, "running": false }));
    };
    let streaming = o.local.running && o.local.in_recovery && o.local.streaming;
    let lag = o
        .leader_lsn
        .map(|l| l.0.saturating_sub(o.local.replay_lsn.0));
    let within = match bound {
        None => true,
        Some(b) => lag.is_some_and(|l| l <= b),
    };
    reply(
        streaming && within,
        json!({
            "member": me,
            "streaming": streaming,
            "lag_bytes": lag,
            "observed_ms_ago": o.at.elapsed().as_millis() as u64,
        }),
    )
}

/// A size in bytes: a number with an optional unit (B, kB, MB, GB, TB; powers of 1024, as
/// PostgreSQL reads memory units), e.g. `16MB` or `16777216`.
fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("lag={text:?}: expected a size such as 16MB or 16777216"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1 << 10,
        "m" | "mb" => 1 << 20,
        "g" | "gb" => 1 << 30,
        "t" | "tb" => 1 << 40,
        other => {
            return Err(format!(
                "lag={text:?}: unknown unit {other:?} (use B, kB, MB, GB or TB)"
            ))
        }
    };
    number
        .checked_mul(scale)
        .ok_or_else(|| format!("lag={text:?}: too large"))
}

/// The whole cluster as the store sees it.
async fn cluster(State(api): State<AgentApi>) -> Response {
    let read = match api.store.snapshot().await {
        Ok(s) => pgha_store::cluster_view(&s)
            .map(|view| (view, s))
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match read {
        Ok((view, s)) => {
            let members: serde_json::Map<String, serde_json::Value> = view
                .members
                .iter()
                .map(|(n, r)| (n.to_string(), serde_json::to_value(r).unwrap_or_default()))
                .collect();
            Json(json!({
                "leader": view.leader.as_ref().map(|l| l.holder.to_string()),
                "members": members,
                "config": view.config,
                "sync": view.sync,
                "history": pgha_store::history_entries(&s),
            }))
            .into_response()
        }
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "error": e }))).into_response(),
    }
}

async fn metrics(State(api): State<AgentApi>) -> Response {
    let me = api.spec.name.as_str();
    let o = observed(&api);
    let up = o
        .as_ref()
        .is_some_and(|o| o.local.running && !o.local.unresponsive);
    let leads = o.as_ref().is_some_and(|o| o.leads(&api.spec.name));
    let mut out = String::new();
    push_gauge(
        &mut out,
        "pgha_member_up",
        "Whether the member's PostgreSQL answers.",
        &[(me, u64::from(up))],
    );
    push_gauge(
        &mut out,
        "pgha_member_is_leader",
        "Whether the member holds the leader lease.",
        &[(me, u64::from(leads))],
    );
    if let Some(lsn) = o.as_ref().filter(|_| up).map(|o| o.local.lsn.0) {
        push_gauge(
            &mut out,
            "pgha_member_wal_position_bytes",
            "WAL position (current, or received on a standby).",
            &[(me, lsn)],
        );
    }
    prometheus(out)
}

/// A leader whose store is down asks for confirmation; given only when this member cannot
/// reach the store either (then it promises not to take the lease for a ttl).
async fn failsafe(
    State(api): State<AgentApi>,
    Json(body): Json<pgha_agent::failsafe::FailsafeRequest>,
) -> Response {
    match api.failsafe.confirm(&body) {
        Ok(promised) => Json(pgha_agent::failsafe::FailsafeAnswer {
            member: api.spec.name.to_string(),
            confirmed: body.leader.clone(),
            term: body.term,
            promised_ms: promised.as_millis() as u64,
        })
        .into_response(),
        Err(why) => (
            StatusCode::CONFLICT,
            Json(json!({ "error": why.to_string() })),
        )
            .into_response(),
    }
}

fn outcome<T: serde::Serialize>(result: Result<T, crate::ops::OpError>) -> Response {
    match result {
        Ok(v) => Json(json!({ "ok": true, "result": v })).into_response(),
        Err(e) => {
            let status = match e {
                crate::ops::OpError::Refused(_) => StatusCode::CONFLICT,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            let text = format!("{e:#}");
            (status, Json(json!({ "ok": false, "error": text }))).into_response()
        }
    }
}

async fn switchover(
    State(api): State<AgentApi>,
    headers: HeaderMap,
    Json(body): Json<PromoteRequest>,
) -> Response {
    if let Err(r) = crate::auth::authorised(api.token.as_deref(), &headers) {
        return r.into_response();
    }
    outcome(crate::ops::request(api.store.as_ref(), body.to_request(RequestKind::Switchover)).await)
}

async fn failover(
    State(api): State<AgentApi>,
    headers: HeaderMap,
    Json(body): Json<PromoteRequest>,
) -> Response {
    if let Err(r) = crate::auth::authorised(api.token.as_deref(), &headers) {
        return r.into_response();
    }
    let kind = RequestKind::Failover {
        force: body.force,
        allow_data_loss: body.allow_data_loss,
    };
    outcome(crate::ops::request(api.store.as_ref(), body.to_request(kind)).await)
}

async fn pause(State(api): State<AgentApi>, headers: HeaderMap) -> Response {
    if let Err(r) = crate::auth::authorised(api.token.as_deref(), &headers) {
        return r.into_response();
    }
    outcome(crate::ops::set_assignments(api.store.as_ref(), &["paused=true".into()]).await)
}

async fn resume(State(api): State<AgentApi>, headers: HeaderMap) -> Response {
    if let Err(r) = crate::auth::authorised(api.token.as_deref(), &headers) {
        return r.into_response();
    }
    outcome(crate::ops::set_assignments(api.store.as_ref(), &["paused=false".into()]).await)
}

async fn show_config(State(api): State<AgentApi>) -> Response {
    outcome(crate::ops::view(api.store.as_ref()).await.map(|v| v.config))
}

async fn set_config(
    State(api): State<AgentApi>,
    headers: HeaderMap,
    Json(body): Json<ConfigChange>,
) -> Response {
    if let Err(r) = crate::auth::authorised(api.token.as_deref(), &headers) {
        return r.into_response();
    }
    outcome(crate::ops::set_assignments(api.store.as_ref(), &body.assignments).await)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn lag_bounds_read_units_and_refuse_what_they_cannot_read() {
        assert_eq!(parse_size("16777216"), Ok(16 << 20));
        assert_eq!(parse_size("16MB"), Ok(16 << 20));
        assert_eq!(parse_size("512kB"), Ok(512 << 10));
        assert_eq!(parse_size("1 GB"), Ok(1 << 30));
        assert_eq!(parse_size("0"), Ok(0));
        for bad in [
            "",
            "MB",
            "16 furlongs",
            "-1",
            "99999999999999999999",
            "16777216TB",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
    }
}
