//! Calls from one member's agent to another member's REST API (failsafe asks, promises given
//! back): HTTP or HTTPS as the cluster's API is, with the cluster's token, within a bound.

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A client for the other members' API; cheap to clone into each blocking call.
#[derive(Clone)]
pub struct MemberCalls {
    agent: ureq::Agent,
    scheme: &'static str,
    bearer: Option<String>,
}

impl MemberCalls {
    /// HTTPS with `tls` (HTTP without), the bearer `token` when there is one, each call
    /// bounded by `timeout`.
    pub fn new(
        token: Option<&str>,
        tls: Option<Arc<rustls::ClientConfig>>,
        timeout: Duration,
    ) -> MemberCalls {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut builder = ureq::AgentBuilder::new().timeout(timeout);
        if let Some(tls) = tls {
            builder = builder.tls_config(tls);
        }
        MemberCalls {
            agent: builder.build(),
            scheme,
            bearer: token.map(|t| format!("Bearer {t}")),
        }
    }

    /// POSTs `body` as JSON to `path` of the API at `api` (`host:port`), blocking; the
    /// answer's JSON, or what went wrong.
    pub fn post<B: Serialize, A: DeserializeOwned>(
        &self,
        api: &str,
        path: &str,
        body: &B,
    ) -> Result<A, CallError> {
        let mut request = self.agent.post(&format!("{}://{api}{path}", self.scheme));
        if let Some(bearer) = &self.bearer {
            request = request.set("Authorization", bearer);
        }
        request
            .send_json(body)
            .map_err(|e| CallError::Http(Box::new(e)))?
            .into_json::<A>()
            .map_err(CallError::Answer)
    }
}

/// Why a call to another member's API brought no answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Not reached, timed out, or answered with an error status.
    #[error(transparent)]
    Http(Box<ureq::Error>),
    /// An answer that is not the JSON expected.
    #[error("unreadable answer: {0}")]
    Answer(#[source] std::io::Error),
}
