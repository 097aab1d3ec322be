//! Whether the cluster is healthy (one leader running writable, every other member streaming
//! from it, not paused), and if not, why: the campaign's precondition and its recovery test.

use pgha_host::api::read::ClusterRecord;
use pgha_host::client::Client;
use pgha_host::status::{ClusterStatus, Role, State};

use crate::error::ChaosError;

/// A healthy cluster's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Healthy {
    pub leader: String,
    pub standbys: Vec<String>,
    /// The published synchronous set (empty in asynchronous mode).
    pub sync_set: Vec<String>,
}

/// `members` as `/status` (probed live) and `/cluster` (the store) show them: healthy, or
/// every reason why not.
pub fn assess(
    status: &ClusterStatus,
    cluster: &ClusterRecord,
    members: &[String],
) -> Result<Healthy, Vec<String>> {
    let mut why = Vec::new();
    if !status.managed {
        why.push("no `pgha up`/agent manages the cluster (automatic failover is off)".into());
    }
    if cluster.config.paused {
        why.push("the cluster is paused (maintenance mode): `pgha resume` first".into());
    }
    let leader = match &cluster.leader {
        Some(l) => l.clone(),
        None => {
            why.push("no member holds the leader lease".into());
            String::new()
        }
    };
    let mut standbys = Vec::new();
    for name in members {
        let Some(m) = status.members.iter().find(|m| &m.name == name) else {
            why.push(format!("{name} is missing from the status"));
            continue;
        };
        let detail = m
            .error
            .as_deref()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        if *name == leader {
            if m.role != Role::Primary || m.state != State::Running {
                why.push(format!(
                    "{name} leads but runs as {} {}{detail}",
                    m.role, m.state
                ));
            }
            continue;
        }
        if m.role != Role::Standby || m.state != State::Streaming {
            why.push(format!(
                "{name} is {} {}, not a streaming standby{detail}",
                m.role, m.state
            ));
            continue;
        }
        let upstream = cluster
            .members
            .get(name)
            .and_then(|r| r.streaming_from.as_ref());
        match upstream {
            Some(u) if u.as_str() == leader => standbys.push(name.clone()),
            Some(u) => why.push(format!(
                "{name} streams from {u}, not from the leader {leader}"
            )),
            None => why.push(format!("{name}'s agent has not reported it streaming yet")),
        }
    }
    if why.is_empty() {
        Ok(Healthy {
            leader,
            standbys,
            sync_set: cluster.sync.members.iter().map(|m| m.to_string()).collect(),
        })
    } else {
        Err(why)
    }
}

/// Asks the API and assesses the answer.
pub async fn check(client: &Client, members: &[String]) -> Result<Healthy, ChaosError> {
    let status: ClusterStatus = client.get("/status").await?;
    let cluster: ClusterRecord = client.get("/cluster").await?;
    assess(&status, &cluster, members).map_err(|reasons| ChaosError::Unhealthy { reasons })
}

/// What `/status` says of one member: `(role, state)`.
pub fn member_state(status: &ClusterStatus, name: &str) -> Option<(Role, State)> {
    status
        .members
        .iter()
        .find(|m| m.name == name)
        .map(|m| (m.role, m.state))
}
