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

#[cfg(test)]
mod tests {

    use pgha_core::{ClusterConfig, MemberName, MemberRecord, SyncSet, Timeline};
    use pgha_host::status::{MemberStatus, ProxyStatus};

    use super::*;

    fn member(name: &str, role: Role, state: State) -> MemberStatus {
        MemberStatus {
            timeline: Some(1),
            ..MemberStatus::new(name, "127.0.0.1", 5432, role, state)
        }
    }

    fn record(streaming_from: Option<&str>) -> MemberRecord {
        MemberRecord {
            running: true,
            in_recovery: streaming_from.is_some(),
            timeline: Timeline(1),
            streaming_from: streaming_from.map(MemberName::new),
            ..MemberRecord::default()
        }
    }

    /// n1 leads, n2 and n3 stream from it.
    fn healthy() -> (ClusterStatus, ClusterRecord) {
        let status = ClusterStatus {
            switchover: None,
            cluster: "c".into(),
            leader: Some("n1".into()),
            managed: true,
            paused: false,
            members: vec![
                member("n1", Role::Primary, State::Running),
                member("n2", Role::Standby, State::Streaming),
                member("n3", Role::Standby, State::Streaming),
            ],
            proxy: ProxyStatus {
                rw: String::new(),
                ro: String::new(),
                listeners: None,
            },
            synchronous: None,
        };
        let cluster = ClusterRecord {
            leader: Some("n1".into()),
            members: [
                ("n1".to_string(), record(None)),
                ("n2".to_string(), record(Some("n1"))),
                ("n3".to_string(), record(Some("n1"))),
            ]
            .into(),
            config: ClusterConfig::default(),
            sync: SyncSet::default(),
            history: Vec::new(),
        };
        (status, cluster)
    }

    fn names() -> Vec<String> {
        ["n1", "n2", "n3"].map(String::from).to_vec()
    }

    #[test]
    fn a_leader_with_every_standby_streaming_from_it_is_healthy() {
        let (status, cluster) = healthy();
        let h = assess(&status, &cluster, &names()).unwrap();
        assert_eq!(h.leader, "n1");
        assert_eq!(h.standbys, vec!["n2", "n3"]);
    }

    #[test]
    fn every_reason_is_named() {
        let (mut status, mut cluster) = healthy();
        status.members[2].state = State::Stopped;
        status.members[2].error = Some("connection refused".into());
        cluster.config.paused = true;
        cluster.members.insert("n2".into(), record(Some("n3")));
        let why = assess(&status, &cluster, &names()).unwrap_err();
        assert_eq!(why.len(), 3, "{why:?}");
        assert!(why[0].contains("paused"), "{why:?}");
        assert!(why[1].contains("n2 streams from n3"), "{why:?}");
        assert!(
            why[2].contains("n3 is standby stopped") && why[2].contains("connection refused"),
            "{why:?}"
        );
        let (status, mut cluster) = healthy();
        cluster.leader = None;
        let why = assess(&status, &cluster, &names()).unwrap_err();
        assert!(
            why.iter()
                .any(|w| w.contains("no member holds the leader lease")),
            "{why:?}"
        );
    }
}
