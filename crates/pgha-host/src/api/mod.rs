//! The one HTTP API of a host, the same for `pgha up` and `pgha agent`: health checks a load
//! balancer understands, the cluster as JSON, metrics, and token-protected control. A success
//! answers with the resource itself; a failure with a [`Failure`] whose kind the status code
//! says too (a refusal by the cluster's rules is 409, never a message to match).

pub mod auth;
pub mod control;
pub mod health;
pub mod read;
mod restart;
mod serve;
pub mod size;

pub use serve::{serve, ApiServer};

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::host::{Host, HostError};
use crate::ops::OpError;

/// The body of every failed request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    pub error: String,
}

/// What went wrong, as a client decides on it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The cluster's rules say no; nothing was changed (409).
    Refused,
    /// No such member on this host (404).
    UnknownMember,
    /// The request itself does not parse or names nothing (400).
    BadRequest,
    /// Missing or wrong bearer token, or control disabled (401/403).
    Unauthorised,
    /// The store cannot be reached or read from here; another host may do better (503).
    Unavailable,
    /// This host cannot serve it (404), e.g. a member-specific check on a host of several.
    NotHere,
}

impl Failure {
    pub fn new(kind: FailureKind, error: impl std::fmt::Display) -> Self {
        Failure {
            kind,
            error: error.to_string(),
        }
    }

    fn status(&self) -> StatusCode {
        match self.kind {
            FailureKind::Refused => StatusCode::CONFLICT,
            FailureKind::UnknownMember | FailureKind::NotHere => StatusCode::NOT_FOUND,
            FailureKind::BadRequest => StatusCode::BAD_REQUEST,
            FailureKind::Unauthorised => StatusCode::UNAUTHORIZED,
            FailureKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.status(), Json(self)).into_response()
    }
}

impl From<OpError> for Failure {
    fn from(e: OpError) -> Self {
        let kind = match e {
            OpError::Refused(_) | OpError::RequestChanged => FailureKind::Refused,
            OpError::Store(_) | OpError::Unreadable(_) | OpError::NoConfig | OpError::Contended => {
                FailureKind::Unavailable
            }
        };
        Failure::new(kind, e)
    }
}

impl From<HostError> for Failure {
    fn from(e: HostError) -> Self {
        match e {
            HostError::UnknownMember { .. } => Failure::new(FailureKind::UnknownMember, e),
            HostError::AgentNotRunning { .. }
            | HostError::NoConfiguration { .. }
            | HostError::Memory(_)
            | HostError::Reload(_)
            | HostError::ReloadUnanswered { .. }
            | HostError::Restart(_)
            | HostError::RestartUnanswered { .. }
            | HostError::StillStopping { .. } => Failure::new(FailureKind::Refused, e),
            HostError::Op(op) => op.into(),
        }
    }
}

/// A handler's answer: the resource, or why not.
pub type Answer<T> = Result<Json<T>, Failure>;

/// Every route of the API over `host`.
pub fn router(host: Arc<Host>) -> Router {
    Router::new()
        .route("/health", get(health::health).options(health::health))
        .route("/primary", get(health::primary).options(health::primary))
        .route("/replica", get(health::replica).options(health::replica))
        .route(
            "/read-only",
            get(health::read_only).options(health::read_only),
        )
        .route("/sync", get(health::sync).options(health::sync))
        .route(
            "/async",
            get(health::asynchronous).options(health::asynchronous),
        )
        .route("/liveness", get(health::liveness).options(health::liveness))
        .route(
            "/readiness",
            get(health::readiness).options(health::readiness),
        )
        .route("/cluster", get(read::cluster))
        .route("/status", get(read::status))
        .route("/history", get(read::history))
        .route("/metrics", get(read::metrics))
        .route("/config", get(read::config).post(control::set_config))
        .route("/switchover", post(control::switchover))
        .route("/switchover/cancel", post(control::cancel_switchover))
        .route("/failover", post(control::failover))
        .route("/pause", post(control::pause))
        .route("/resume", post(control::resume))
        .route("/members/{name}/stop", post(control::stop_member))
        .route("/members/{name}/start", post(control::start_member))
        .route("/members/{name}/reinit", post(control::reinit_member))
        .route("/members/{name}/reload", post(control::reload_member))
        .route("/members/{name}/restart", post(restart::restart_member))
        .route("/members/{name}/agent/freeze", post(control::freeze_agent))
        .route(pgha_agent::failsafe::FAILSAFE_PATH, post(control::failsafe))
        .route(
            pgha_agent::failsafe::RETURN_PATH,
            post(control::failsafe_return),
        )
        .layer(axum::middleware::from_fn_with_state(
            host.clone(),
            require_token,
        ))
        .with_state(host)
}

/// Every request that changes something needs the bearer token of the cluster's secrets
/// file, checked before its body is even parsed (a caller without the token gets 401, never
/// a validation error). Reads are open to whoever reaches the API. A failsafe confirmation is
/// control too (it promises not to take the lease): the members ask with the token.
async fn require_token(
    State(host): State<Arc<Host>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if !auth::reads(request.method()) {
        if let Err(refused) = auth::authorised(host.token.as_deref(), request.headers()) {
            return refused.into_response();
        }
    }
    next.run(request).await
}
