//! The CLI's client of the API (`crate::api`), the same in both modes: it tries each known
//! address of the cluster's hosts in turn, sends the bearer token with every change, and
//! turns failures back into types.

use std::time::{Duration, Instant};

use pgha_core::RequestKind;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::control::{PromoteRequest, Promoting};
use crate::api::read::ClusterRecord;
use crate::api::{Failure, FailureKind};
use crate::promotion_wait::{self, Awaited, Settled};
use crate::sync_wait::{self, SyncProgress};

/// How long a promotion may take before the CLI gives up waiting (it goes on regardless).
pub const PROMOTION_PATIENCE: Duration = Duration::from_secs(120);
/// How long one API request may take, unless it says otherwise ([`Client::post_waiting`]).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A client of the hosts' API.
#[derive(Clone)]
pub struct Client {
    /// `http(s)://host:port` of each host's API, in the order to try them.
    bases: Vec<String>,
    token: Option<String>,
    agent: ureq::Agent,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("bases", &self.bases)
            .finish()
    }
}

/// Why a request did not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("nothing answers on {}", .tried.join(", "))]
    Unreachable { tried: Vec<String> },
    #[error("{}", .0.error)]
    Failed(Failure),
    #[error("{url}: unexpected answer: {detail}")]
    Garbled { url: String, detail: String },
    #[error("{awaited} after {} s; see `pgha status` and `pgha history`", .after.as_secs())]
    NotPromoted { awaited: Awaited, after: Duration },
    /// The leader (or, without one, the target) refused the request after the API accepted
    /// it (it read the cluster later,
    /// and differently): its history entry says why.
    #[error("{reason}")]
    Refused { reason: String },
}

impl ClientError {
    /// Whether no host answered at all (a local cluster that is not running).
    pub fn unreachable(&self) -> bool {
        matches!(self, ClientError::Unreachable { .. })
    }
}

/// One try at one address.
enum Attempt<T> {
    Answered(T),
    /// Nothing listens, or the host cannot serve it now (503): the next may.
    Next(Option<Failure>),
    Final(ClientError),
}

impl Client {
    /// A client of the APIs at `addresses` (`host:port`, tried in order); over HTTPS with
    /// `tls`, verifying each host's certificate against the cluster CA.
    pub fn new(
        addresses: impl IntoIterator<Item = String>,
        token: Option<String>,
        tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    ) -> Self {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut bases: Vec<String> = Vec::new();
        for a in addresses {
            let base = format!("{scheme}://{a}");
            if !bases.contains(&base) {
                bases.push(base);
            }
        }
        let mut agent = ureq::AgentBuilder::new().timeout_connect(Duration::from_secs(2));
        if let Some(tls) = tls {
            agent = agent.tls_config(tls);
        }
        Client {
            bases,
            token,
            agent: agent.build(),
        }
    }

    /// The addresses this client tries.
    pub fn bases(&self) -> &[String] {
        &self.bases
    }

    pub async fn get<T: DeserializeOwned + Send + 'static>(
        &self,
        path: &str,
    ) -> Result<T, ClientError> {
        self.call(path, None::<&()>).await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned + Send + 'static>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.call(path, Some(body)).await
    }

    /// Like [`Client::post`], for a request whose answer may take up to `patience` (the API
    /// answers once what it started has ended).
    pub async fn post_waiting<B: Serialize, T: DeserializeOwned + Send + 'static>(
        &self,
        path: &str,
        body: &B,
        patience: Duration,
    ) -> Result<T, ClientError> {
        self.call_within(path, Some(body), patience).await
    }

    async fn call<B: Serialize, T: DeserializeOwned + Send + 'static>(
        &self,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        self.call_within(path, body, REQUEST_TIMEOUT).await
    }

    async fn call_within<B: Serialize, T: DeserializeOwned + Send + 'static>(
        &self,
        path: &str,
        body: Option<&B>,
        patience: Duration,
    ) -> Result<T, ClientError> {
        let body = body.map(|b| serde_json::to_value(b).expect("a request body serialises"));
        let mut unavailable = None;
        for base in &self.bases {
            let url = format!("{base}{path}");
            let token = self.token.clone();
            let body = body.clone();
            let agent = self.agent.clone();
            let attempt =
                tokio::task::spawn_blocking(move || send(&agent, &url, token, body, patience))
                    .await
                    .unwrap_or_else(|e| {
                        Attempt::Final(ClientError::Garbled {
                            url: format!("{base}{path}"),
                            detail: e.to_string(),
                        })
                    });
            match attempt {
                Attempt::Answered(value) => return Ok(value),
                Attempt::Next(failure) => unavailable = failure.or(unavailable),
                Attempt::Final(e) => return Err(e),
            }
        }
        Err(match unavailable {
            Some(failure) => ClientError::Failed(failure),
            None => ClientError::Unreachable {
                tried: self.bases.clone(),
            },
        })
    }

    /// Asks for a switchover (`to` optional) or a failover; answers the member that will be
    /// promoted.
    pub async fn request_promotion(
        &self,
        to: Option<String>,
        kind: RequestKind,
    ) -> Result<String, ClientError> {
        Ok(self
            .request_promotion_at(to, kind, None, false)
            .await?
            .target)
    }

    /// Like [`Client::request_promotion`], not before `at` (Unix seconds) when given; a
    /// failover with `leader_down` (`pgha failover --leader-down`) says the last leader is
    /// known down, so that its failsafe list may be withdrawn. Answers the whole answer (for
    /// a scheduled switchover, also what it will be checked for when due).
    ///
    /// The request names the leader the cluster answers now (`from`): a host that took it
    /// and did not answer in time (paused) may still act on it after the next host did, and
    /// the leader has changed by then, so that late copy is refused, not a second promotion.
    pub async fn request_promotion_at(
        &self,
        to: Option<String>,
        kind: RequestKind,
        at: Option<u64>,
        leader_down: bool,
    ) -> Result<Promoting, ClientError> {
        let (path, force, allow_data_loss) = match kind {
            RequestKind::Switchover => ("/switchover", false, false),
            RequestKind::Failover {
                force,
                allow_data_loss,
            } => ("/failover", force, allow_data_loss),
        };
        let leader = self.get::<ClusterRecord>("/cluster").await?.leader;
        let body = PromoteRequest {
            from: leader,
            to,
            force,
            allow_data_loss,
            leader_down,
            at,
        };
        self.post(path, &body).await
    }

    /// How many entries the cluster's history holds now: taken before a request, what
    /// [`Client::wait_promoted`] reads after.
    pub async fn history_len(&self) -> Result<usize, ClientError> {
        Ok(self.get::<ClusterRecord>("/cluster").await?.history.len())
    }

    /// Waits until the awaited member holds the lease and its record says it runs writable
    /// (answering its name); fails as soon as a refusal of the request is recorded after the
    /// first `since` history entries.
    pub async fn wait_promoted(
        &self,
        awaited: &Awaited,
        since: usize,
    ) -> Result<String, ClientError> {
        let deadline = Instant::now() + PROMOTION_PATIENCE;
        loop {
            match self.get::<ClusterRecord>("/cluster").await {
                Ok(cluster) => match promotion_wait::settled(&cluster, awaited, since) {
                    Some(Settled::Promoted(member)) => return Ok(member),
                    Some(Settled::Refused(reason)) => return Err(ClientError::Refused { reason }),
                    None => {}
                },
                Err(e @ ClientError::Unreachable { .. }) => return Err(e),
                Err(_) => {}
            }
            if Instant::now() > deadline {
                return Err(ClientError::NotPromoted {
                    awaited: awaited.clone(),
                    after: PROMOTION_PATIENCE,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits up to `patience` until the leader has `wanted` in force (or the cluster is in
    /// maintenance mode); answers where the change stands then.
    pub async fn wait_sync_in_force(
        &self,
        wanted: &pgha_core::sync::SyncInForce,
        patience: Duration,
    ) -> Result<SyncProgress, ClientError> {
        let deadline = Instant::now() + patience;
        loop {
            let late = Instant::now() > deadline;
            match self.get::<ClusterRecord>("/cluster").await {
                Ok(cluster) => {
                    let progress = sync_wait::progress(&cluster, wanted);
                    if progress.settled() || late {
                        return Ok(progress);
                    }
                }
                Err(e @ ClientError::Unreachable { .. }) => return Err(e),
                Err(e) if late => return Err(e),
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// One blocking request (run off the async threads).
fn send<T: DeserializeOwned>(
    agent: &ureq::Agent,
    url: &str,
    token: Option<String>,
    body: Option<serde_json::Value>,
    patience: Duration,
) -> Attempt<T> {
    let response = match body {
        None => agent.get(url).timeout(patience).call(),
        Some(body) => {
            let mut request = agent.post(url).timeout(patience);
            if let Some(token) = &token {
                request = request.set("Authorization", &format!("Bearer {token}"));
            }
            request.send_json(body)
        }
    };
    let garbled = |detail: String| {
        Attempt::Final(ClientError::Garbled {
            url: url.to_string(),
            detail,
        })
    };
    match response {
        Ok(r) => match r.into_json::<T>() {
            Ok(value) => Attempt::Answered(value),
            Err(e) => garbled(e.to_string()),
        },
        Err(ureq::Error::Status(code, r)) => {
            let text = r.into_string().unwrap_or_default();
            match serde_json::from_str::<Failure>(&text) {
                Ok(f) if f.kind == FailureKind::Unavailable => Attempt::Next(Some(f)),
                Ok(f) => Attempt::Final(ClientError::Failed(f)),
                Err(_) => garbled(format!("HTTP {code}: {text}")),
            }
        }
        Err(ureq::Error::Transport(_)) => Attempt::Next(None),
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
