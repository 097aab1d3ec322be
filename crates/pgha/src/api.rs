//! The control API of a running `pgha up` (loopback only): status, history, and the
//! operations the CLI asks for (switchover, failover, stop/start a member, pause/resume).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use pgha_core::{MemberName, RequestKind, SwitchoverRequest};
use pgha_store::Store;
use serde::{Deserialize, Serialize};

use crate::runtime::Runtime;
use crate::status::gather_running;

/// Body of POST /switchover and /failover.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PromoteRequest {
    pub from: Option<String>,
    pub to: Option<String>,
    #[serde(default)]
    pub force: bool,
    #[serde(default)]
    pub allow_data_loss: bool,
}

impl PromoteRequest {
    /// The store request this body asks for.
    pub fn to_request(&self, kind: RequestKind) -> SwitchoverRequest {
        SwitchoverRequest {
            from: self.from.as_deref().map(MemberName::new),
            to: self.to.as_deref().map(MemberName::new),
            kind,
        }
    }
}

/// Appends one Prometheus gauge family (HELP, TYPE, one sample per member).
pub fn push_gauge(out: &mut String, name: &str, help: &str, samples: &[(&str, u64)]) {
    out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
    for (member, value) in samples {
        out.push_str(&format!("{name}{{member=\"{member}\"}} {value}\n"));
    }
}

/// A response in the Prometheus text exposition format.
pub fn prometheus(text: String) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        text,
    )
        .into_response()
}

/// Body of POST /members/{name}/stop.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StopRequest {
    #[serde(default)]
    pub immediate: bool,
}

/// An answer: a message, or an error with its HTTP status.
#[derive(Debug, Serialize, Deserialize)]
pub struct Answer {
    pub ok: bool,
    pub message: String,
}

fn answer(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(Answer {
            ok: status.is_success(),
            message: message.into(),
        }),
    )
        .into_response()
}

/// Refusals (the cluster's rules, an unknown member) are 409; anything else is a failure.
fn failed(e: anyhow::Error) -> Response {
    let refused = matches!(
        e.downcast_ref::<crate::ops::OpError>(),
        Some(crate::ops::OpError::Refused(_))
    ) || matches!(
        e.downcast_ref::<crate::error::CliError>(),
        Some(crate::error::CliError::UnknownMember { .. })
    );
    let status = if refused {
        StatusCode::CONFLICT
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    answer(status, format!("{e:#}"))
}

pub fn router(runtime: Arc<Runtime>) -> Router {
    Router::new()
        .route("/cluster", get(cluster))
        .route("/history", get(history))
        .route("/metrics", get(metrics))
        .route("/switchover", post(switchover))
        .route("/failover", post(failover))
        .route("/members/{name}/stop", post(stop_member))
        .route("/members/{name}/start", post(start_member))
        .route("/config", get(show_config).post(set_config))
        .route("/pause", post(pause))
        .route("/resume", post(resume))
        .layer(axum::middleware::from_fn_with_state(
            runtime.clone(),
            require_token,
        ))
        .with_state(runtime)
}

/// Every request that changes something needs the bearer token of the cluster's secrets
/// file (the CLI reads it there); reads are open to whoever reaches the API, which binds to
/// loopback unless `cluster.api_host` says otherwise.
async fn require_token(
    State(rt): State<Arc<Runtime>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if !crate::auth::reads(request.method()) {
        let token = rt.cluster.secrets.api_token.as_deref();
        if let Err(refused) = crate::auth::authorised(token, request.headers()) {
            return refused.into_response();
        }
    }
    next.run(request).await
}

async fn cluster(State(rt): State<Arc<Runtime>>) -> Response {
    Json(gather_running(&rt).await).into_response()
}

/// Prometheus metrics: the proxy's listeners and each member's role and lag.
async fn metrics(State(rt): State<Arc<Runtime>>) -> Response {
    let status = gather_running(&rt).await;
    let mut out = rt
        .proxy_metrics()
        .map(|m| m.render_prometheus())
        .unwrap_or_default();
    let up: Vec<(&str, u64)> = status
        .members
        .iter()
        .map(|m| {
            (
                m.name.as_str(),
                u64::from(matches!(
                    m.state,
                    crate::status::State::Running | crate::status::State::Streaming
                )),
            )
        })
        .collect();
    let leader: Vec<(&str, u64)> = status
        .members
        .iter()
        .map(|m| {
            (
                m.name.as_str(),
                u64::from(status.leader.as_deref() == Some(m.name.as_str())),
            )
        })
        .collect();
    let lag: Vec<(&str, u64)> = status
        .members
        .iter()
        .filter_map(|m| Some((m.name.as_str(), m.lag_bytes?)))
        .collect();
    push_gauge(
        &mut out,
        "pgha_member_up",
        "Whether the member's PostgreSQL answers.",
        &up,
    );
    push_gauge(
        &mut out,
        "pgha_member_is_leader",
        "Whether the member holds the leader lease.",
        &leader,
    );
    push_gauge(
        &mut out,
        "pgha_member_lag_bytes",
        "Replay lag of a standby behind the primary.",
        &lag,
    );
    prometheus(out)
}

async fn history(State(rt): State<Arc<Runtime>>) -> Response {
    match rt.store.snapshot().await {
        Ok(s) => Json(pgha_store::history_entries(&s)).into_response(),
        Err(e) => failed(e.into()),
    }
}

async fn switchover(State(rt): State<Arc<Runtime>>, Json(body): Json<PromoteRequest>) -> Response {
    match rt.request(body.to_request(RequestKind::Switchover)).await {
        Ok(target) => answer(StatusCode::ACCEPTED, target),
        Err(e) => failed(e),
    }
}

async fn failover(State(rt): State<Arc<Runtime>>, Json(body): Json<PromoteRequest>) -> Response {
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
    match rt.request(body.to_request(kind)).await {
        Ok(target) => answer(StatusCode::ACCEPTED, target),
        Err(e) => failed(e),
    }
}

async fn stop_member(
    State(rt): State<Arc<Runtime>>,
    Path(name): Path<String>,
    Json(body): Json<StopRequest>,
) -> Response {
    let mode = if body.immediate {
        pgha_pg::StopMode::Immediate
    } else {
        pgha_pg::StopMode::Fast
    };
    match rt.stop_member(&name, mode).await {
        Ok(true) => answer(StatusCode::OK, format!("{name} stopped")),
        Ok(false) => answer(StatusCode::OK, format!("{name} was not running")),
        Err(e) => failed(e),
    }
}

async fn start_member(State(rt): State<Arc<Runtime>>, Path(name): Path<String>) -> Response {
    match rt.start_member(&name).await {
        Ok(true) => answer(StatusCode::OK, format!("{name} starting")),
        Ok(false) => answer(StatusCode::OK, format!("{name} is already running")),
        Err(e) => failed(e),
    }
}

async fn show_config(State(rt): State<Arc<Runtime>>) -> Response {
    match rt.config().await {
        Ok(c) => Json(c).into_response(),
        Err(e) => failed(e),
    }
}

/// Body of POST /config: KEY=VALUE assignments, applied together or not at all.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConfigChange {
    pub assignments: Vec<String>,
}

async fn set_config(State(rt): State<Arc<Runtime>>, Json(body): Json<ConfigChange>) -> Response {
    let result = crate::ops::set_assignments(rt.store.as_ref(), &body.assignments)
        .await
        .map_err(anyhow::Error::from);
    match result {
        Ok(c) => {
            tracing::info!("config changed: {}", body.assignments.join(", "));
            answer(StatusCode::OK, crate::dynamic::render(&c))
        }
        Err(e) => failed(e),
    }
}

async fn pause(State(rt): State<Arc<Runtime>>) -> Response {
    match rt.set_paused(true).await {
        Ok(()) => answer(
            StatusCode::OK,
            "paused: no automatic action until `pgha resume`",
        ),
        Err(e) => failed(e),
    }
}

async fn resume(State(rt): State<Arc<Runtime>>) -> Response {
    match rt.set_paused(false).await {
        Ok(()) => answer(StatusCode::OK, "resumed"),
        Err(e) => failed(e),
    }
}
