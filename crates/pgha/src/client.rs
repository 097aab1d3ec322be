//! The CLI side of the control API: finds a running `pgha up` from the cluster directory.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::Answer;
use crate::cluster::LocalCluster;

/// The control API's address for a local cluster.
pub fn api_base(cluster: &LocalCluster) -> String {
    format!(
        "http://{}:{}",
        cluster.config.cluster.api_host(),
        cluster.config.cluster.base_port + 2
    )
}

/// Whether the failure means nothing listens (the cluster is not running).
pub enum ApiError {
    NotRunning,
    Failed(String),
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(2))
        .timeout(Duration::from_secs(120))
        .build()
}

pub fn get<T: DeserializeOwned>(cluster: &LocalCluster, path: &str) -> Result<T, ApiError> {
    let resp = agent().get(&format!("{}{path}", api_base(cluster))).call();
    decode(resp)
}

pub fn post<B: Serialize, T: DeserializeOwned>(
    cluster: &LocalCluster,
    path: &str,
    body: &B,
) -> Result<T, ApiError> {
    let mut request = agent().post(&format!("{}{path}", api_base(cluster)));
    if let Some(token) = &cluster.secrets.api_token {
        request = request.set("Authorization", &format!("Bearer {token}"));
    }
    let resp = request.send_json(body);
    decode(resp)
}

fn decode<T: DeserializeOwned>(resp: Result<ureq::Response, ureq::Error>) -> Result<T, ApiError> {
    match resp {
        Ok(r) => r.into_json().map_err(|e| ApiError::Failed(e.to_string())),
        Err(ureq::Error::Status(_, r)) => {
            let text = r.into_string().unwrap_or_default();
            let message = serde_json::from_str::<Answer>(&text)
                .map(|a| a.message)
                .unwrap_or(text);
            Err(ApiError::Failed(message))
        }
        Err(ureq::Error::Transport(_)) => Err(ApiError::NotRunning),
    }
}

/// Turns an API error into the CLI's error, explaining how to start the cluster.
pub fn explain(cluster: &LocalCluster, e: ApiError) -> anyhow::Error {
    match e {
        ApiError::NotRunning => anyhow::anyhow!(
            "the cluster in {} is not running (nothing answers on {}); start it with `pgha up --dir {}`",
            cluster.dir.display(),
            api_base(cluster),
            cluster.dir.display()
        ),
        ApiError::Failed(message) => anyhow::anyhow!("{message}"),
    }
}
