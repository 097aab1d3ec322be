//! `pgha status`: what every member is doing, as a table a DBA reads at a glance or as JSON.

use std::time::Duration;

use pgha_pg::probe::{format_lsn, probe, PgState};
use serde::{Deserialize, Serialize};

use crate::cluster::LocalCluster;

/// The whole cluster as `pgha status --json` prints it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClusterStatus {
    pub cluster: String,
    /// The member holding the leader lease (while `pgha up` runs), else the member acting as
    /// primary; null when there is none.
    pub leader: Option<String>,
    /// Whether `pgha up` (and so automatic failover) is running.
    #[serde(default)]
    pub managed: bool,
    /// Maintenance mode: no automatic action.
    #[serde(default)]
    pub paused: bool,
    pub members: Vec<MemberStatus>,
    /// The client entry points (pgha's proxy).
    pub proxy: ProxyStatus,
    /// Synchronous replication as configured and as it stands (while `pgha up` runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synchronous: Option<SyncStatus>,
}

/// The configured synchronous mode, the published synchronous set, and whether commits wait.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SyncStatus {
    pub mode: String,
    pub method: String,
    pub count: u32,
    pub commit: String,
    /// Members that may be promoted without losing an acknowledged commit.
    pub set: Vec<String>,
    /// Why commits wait, or that the cluster degraded to asynchronous; null when all is well.
    pub warning: Option<String>,
}

/// The proxy's addresses and, while it runs, its per-listener counters.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProxyStatus {
    /// Read-write entry point, "host:port".
    pub rw: String,
    /// Read-only entry point, "host:port".
    pub ro: String,
    /// Active/total connections, bytes, held connections, errors per listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listeners: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MemberStatus {
    pub name: String,
    pub role: Role,
    pub state: State,
    pub host: String,
    pub port: u16,
    pub timeline: Option<u32>,
    /// Current WAL position on a primary; last received on a standby.
    pub lsn: Option<String>,
    pub received_lsn: Option<String>,
    pub replayed_lsn: Option<String>,
    /// How far the standby's replay is behind the primary's current position.
    pub lag_bytes: Option<u64>,
    pub lag_seconds: Option<f64>,
    /// As the primary's pg_stat_replication reports it: async, sync, potential, quorum.
    pub sync_state: Option<String>,
    /// Why the member could not be probed, when it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The member agent's last decision, as logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
}

/// What a member's PostgreSQL is (as `pgha status` shows it; JSON: lowercase).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Primary,
    Standby,
    /// Not reachable, and nothing on disk says.
    Unknown,
}

/// How a member's PostgreSQL is doing (JSON: lowercase).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// A primary that answers.
    Running,
    /// A standby receiving WAL from its upstream.
    Streaming,
    /// A standby that answers but does not stream.
    Recovering,
    Stopped,
    /// A postmaster runs (or may) but does not answer.
    Unreachable,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Primary => "primary",
            Role::Standby => "standby",
            Role::Unknown => "unknown",
        })
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            State::Running => "running",
            State::Streaming => "streaming",
            State::Recovering => "recovering",
            State::Stopped => "stopped",
            State::Unreachable => "unreachable",
        })
    }
}

/// One member to probe: where it listens and what is known without connecting.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub host: String,
    pub port: u16,
    /// Whether a postmaster is known to run (local data directory), or `None` when only a
    /// connection can tell (a remote member).
    pub running: Option<bool>,
    /// The role its data directory has while stopped (standby.signal present or not).
    pub stopped_role: Option<Role>,
}

/// Probes every member of a local cluster concurrently.
pub async fn gather(cluster: &LocalCluster) -> ClusterStatus {
    let targets: Vec<Target> = cluster
        .members
        .iter()
        .map(|m| Target {
            name: m.name.clone(),
            host: m.host.clone(),
            port: m.port,
            running: Some(m.instance.is_running()),
            stopped_role: if m.instance.has_standby_signal() {
                Some(Role::Standby)
            } else if m.instance.is_initialized() {
                Some(Role::Primary)
            } else {
                None
            },
        })
        .collect();
    let (rw, ro) = crate::entry::addresses(cluster);
    let proxy = ProxyStatus {
        rw,
        ro,
        listeners: None,
    };
    gather_targets(
        &cluster.config.cluster.name,
        &targets,
        &cluster.credentials(),
        proxy,
    )
    .await
}

/// Probes `targets` concurrently and assembles the status (leader: the one primary found).
pub async fn gather_targets(
    cluster_name: &str,
    targets: &[Target],
    credentials: &pgha_pg::probe::Credentials,
    proxy: ProxyStatus,
) -> ClusterStatus {
    let probes = targets.iter().map(|t| probe_target(t, credentials));
    let results: Vec<(bool, Result<PgState, String>)> = futures::future::join_all(probes).await;
    let primaries: Vec<(&Target, &PgState)> = targets
        .iter()
        .zip(&results)
        .filter_map(|(t, (_, r))| r.as_ref().ok().filter(|s| !s.in_recovery).map(|s| (t, s)))
        .collect();
    let primary = if primaries.len() == 1 {
        Some(primaries[0])
    } else {
        None
    };
    let members = targets
        .iter()
        .zip(&results)
        .map(|(t, (running, result))| describe(t, *running, result.clone(), primary))
        .collect();
    ClusterStatus {
        cluster: cluster_name.to_string(),
        leader: primary.map(|(t, _)| t.name.clone()),
        managed: false,
        paused: false,
        members,
        proxy,
        synchronous: None,
    }
}

/// The status of a cluster run by this process: the leader from the store, each agent's
/// last decision, and the probes.
pub async fn gather_running(rt: &crate::runtime::Runtime) -> ClusterStatus {
    let mut status = gather(&rt.cluster).await;
    status.managed = true;
    if let Ok(view) = rt.view().await {
        status.leader = view.leader.as_ref().map(|l| l.holder.to_string());
        status.paused = view.config.paused;
        status.synchronous = Some(sync_status(&view, &status.members));
    }
    if let Some(metrics) = rt.proxy_metrics() {
        status.proxy.listeners = serde_json::to_value(metrics.snapshot().listeners).ok();
    }
    let reports = rt.reports().await;
    for m in &mut status.members {
        m.decision = reports
            .get(&m.name)
            .and_then(|r| r.reason.as_ref().map(|reason| reason.to_string()));
    }
    status
}

async fn probe_target(
    target: &Target,
    credentials: &pgha_pg::probe::Credentials,
) -> (bool, Result<PgState, String>) {
    if target.running == Some(false) {
        return (false, Err("not running".into()));
    }
    let result = async {
        let client = pgha_pg::probe::connect(
            &target.name,
            &target.host,
            target.port,
            credentials,
            Duration::from_secs(2),
        )
        .await?;
        probe(&client, &target.name).await
    }
    .await
    .map_err(|e| e.to_string());
    // A remote member that does not answer may simply be down.
    let running = target.running.unwrap_or(result.is_ok());
    (running, result)
}

fn describe(
    member: &Target,
    running: bool,
    result: Result<PgState, String>,
    primary: Option<(&Target, &PgState)>,
) -> MemberStatus {
    let mut status = MemberStatus {
        name: member.name.clone(),
        role: Role::Unknown,
        state: if running {
            State::Unreachable
        } else {
            State::Stopped
        },
        host: member.host.clone(),
        port: member.port,
        timeline: None,
        lsn: None,
        received_lsn: None,
        replayed_lsn: None,
        lag_bytes: None,
        lag_seconds: None,
        sync_state: None,
        error: None,
        decision: None,
    };
    let state = match result {
        Ok(state) => state,
        Err(e) => {
            if running {
                status.error = Some(e);
            } else if let Some(role) = member.stopped_role {
                status.role = role;
            }
            return status;
        }
    };
    status.timeline = state.timeline;
    if !state.in_recovery {
        status.role = Role::Primary;
        status.state = State::Running;
        status.lsn = state.current_lsn.map(format_lsn);
        return status;
    }
    status.role = Role::Standby;
    status.state = if state.is_streaming() {
        State::Streaming
    } else {
        State::Recovering
    };
    status.lsn = state.position().map(format_lsn);
    status.received_lsn = state.receive_lsn.map(format_lsn);
    status.replayed_lsn = state.replay_lsn.map(format_lsn);
    if let Some((_, p)) = primary {
        if let (Some(current), Some(replayed)) = (p.current_lsn, state.replay_lsn) {
            status.lag_bytes = Some(current.saturating_sub(replayed));
        }
        if let Some(peer) = p
            .replication
            .iter()
            .find(|r| r.application_name == member.name)
        {
            status.sync_state = Some(peer.sync_state.clone());
            status.lag_seconds = peer.replay_lag_seconds.or(if status.lag_bytes == Some(0) {
                Some(0.0)
            } else {
                None
            });
        }
    }
    status
}

pub fn sync_status(view: &pgha_core::ClusterView, members: &[MemberStatus]) -> SyncStatus {
    use pgha_core::SyncMode;
    let c = &view.config;
    let text = |v: serde_json::Value| v.as_str().unwrap_or_default().to_string();
    let set: Vec<String> = view.sync.members.iter().map(|m| m.to_string()).collect();
    let confirming = members
        .iter()
        .any(|m| matches!(m.sync_state.as_deref(), Some("sync" | "quorum")));
    let warning = match c.synchronous_mode {
        SyncMode::Off => None,
        _ if confirming => None,
        SyncMode::Strict => Some(format!(
            "commits wait: no synchronous standby is streaming (waiting for {})",
            if set.is_empty() {
                "any standby".to_string()
            } else {
                set.join(" or ")
            }
        )),
        SyncMode::On => {
            Some("degraded to asynchronous: no healthy standby to confirm commits".into())
        }
    };
    SyncStatus {
        mode: text(serde_json::to_value(c.synchronous_mode).unwrap_or_default()),
        method: text(serde_json::to_value(c.synchronous_method).unwrap_or_default()),
        count: c.synchronous_count,
        commit: c.synchronous_commit.to_string(),
        set,
        warning,
    }
}

/// Renders the status as an aligned table.
pub fn render_table(status: &ClusterStatus) -> String {
    let header = [
        "MEMBER", "ROLE", "STATE", "ADDRESS", "TL", "LSN", "RECEIVED", "REPLAYED", "LAG",
        "LAG TIME", "SYNC",
    ];
    let dash = || "-".to_string();
    let rows: Vec<Vec<String>> = status
        .members
        .iter()
        .map(|m| {
            vec![
                m.name.clone(),
                m.role.to_string(),
                m.state.to_string(),
                format!("{}:{}", m.host, m.port),
                m.timeline.map(|t| t.to_string()).unwrap_or_else(dash),
                m.lsn.clone().unwrap_or_else(dash),
                m.received_lsn.clone().unwrap_or_else(dash),
                m.replayed_lsn.clone().unwrap_or_else(dash),
                m.lag_bytes.map(human_bytes).unwrap_or_else(dash),
                m.lag_seconds
                    .map(|s| format!("{s:.1}s"))
                    .unwrap_or_else(dash),
                m.sync_state.clone().unwrap_or_else(dash),
            ]
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<String>| -> String {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mode = match (status.managed, status.paused) {
        (false, _) => " (not running: no automatic failover)",
        (true, true) => " (PAUSED: no automatic action)",
        (true, false) => "",
    };
    let mut out = format!(
        "Cluster {} — leader: {}{mode}\n",
        status.cluster,
        status.leader.as_deref().unwrap_or("none")
    );
    out.push_str(&line(header.iter().map(|h| h.to_string()).collect()));
    out.push('\n');
    for row in rows {
        out.push_str(&line(row));
        out.push('\n');
    }
    if let Some(sync) = status.synchronous.as_ref().filter(|s| s.mode != "off") {
        out.push_str(&format!(
            "Synchronous: {} ({} {}, synchronous_commit={}), set [{}]\n",
            sync.mode,
            sync.method,
            sync.count,
            sync.commit,
            sync.set.join(", ")
        ));
        if let Some(w) = &sync.warning {
            out.push_str(&format!("WARNING: {w}\n"));
        }
    }
    out.push_str(&format!(
        "Clients: read-write {}, read-only {}",
        status.proxy.rw, status.proxy.ro
    ));
    if let Some(listeners) = status.proxy.listeners.as_ref().and_then(|l| l.as_array()) {
        let counts: Vec<String> = listeners
            .iter()
            .map(|l| {
                format!(
                    "{} {} active/{} total",
                    l["listener"].as_str().unwrap_or("?"),
                    l["active"],
                    l["total"]
                )
            })
            .collect();
        out.push_str(&format!(" ({})", counts.join(", ")));
    }
    out.push('\n');
    for m in &status.members {
        if let Some(e) = &m.error {
            out.push_str(&format!("{}: {}\n", m.name, e));
        }
        if let Some(d) = &m.decision {
            out.push_str(&format!("  {}: {}\n", m.name, d));
        }
    }
    out
}

/// Bytes in a short human form: 0 B, 12 kB, 3.4 MB.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_reads_well() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(2048), "2.0 kB");
        assert_eq!(human_bytes(5 * 1024 * 1024), "5.0 MB");
    }
}
