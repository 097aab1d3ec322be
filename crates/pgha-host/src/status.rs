//! The cluster's status as `GET /status` answers and `pgha status` prints it: every member's
//! role, state, positions and lag, the leader, the synchronous state, the entry points.

use serde::{Deserialize, Serialize};

/// The whole cluster as `pgha status --json` prints it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClusterStatus {
    pub cluster: String,
    /// A switchover or failover asked for and not yet done (scheduled ones carry `at`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switchover: Option<pgha_core::SwitchoverRequest>,
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
    pub mode: pgha_core::SyncMode,
    pub method: pgha_core::SyncMethod,
    /// How many standbys acknowledge each commit.
    pub count: u32,
    /// `synchronous_commit`: how far those standbys take a commit before it returns.
    pub commit: pgha_core::CommitLevel,
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
    /// Where its PostgreSQL listens.
    pub host: String,
    pub port: u16,
    /// The timeline its WAL is on (null when it does not answer).
    pub timeline: Option<u32>,
    /// Current WAL position on a primary; last received on a standby.
    pub lsn: Option<String>,
    /// On a standby: the last WAL position it received and flushed (`pg_last_wal_receive_lsn()`).
    pub received_lsn: Option<String>,
    /// On a standby: the last WAL position it replayed (`pg_last_wal_replay_lsn()`).
    pub replayed_lsn: Option<String>,
    /// How far the standby's replay is behind the primary's current position.
    pub lag_bytes: Option<u64>,
    /// The replay lag the primary measures for it (`pg_stat_replication.replay_lag`; 0 when
    /// it has replayed everything).
    pub lag_seconds: Option<f64>,
    /// As the primary's pg_stat_replication reports it: async, sync, potential, quorum.
    pub sync_state: Option<String>,
    /// On a primary: the standbys its PostgreSQL counts for commits
    /// (`synchronous_standby_names`, empty when it counts none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synchronous_standby_names: Option<String>,
    /// Why the member could not be probed, when it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The member agent's last decision, as logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
    /// Its logical replication slots: on a primary, which follow a failover (17+); on a
    /// standby, its synchronized copies and whether a promotion would find them usable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logical_slots: Vec<pgha_pg::logical_slots::LogicalSlot>,
    /// Parameters changed in its configuration whose new value needs a restart
    /// (`pg_settings.pending_restart`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_restart: Vec<String>,
    /// PostgreSQL's version, e.g. "15.14" (when it answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    /// Which cluster its data directory belongs to (`pg_control_system()`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_identifier: Option<String>,
    /// The member it streams from, as its agent published it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// Its tags (nofailover, nosync, priority, noloadbalance), as its agent published them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<pgha_core::Tags>,
    /// The pgha version of its agent, as published (`None` with `tags` set: an agent older
    /// than the version's report).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pgha_version: Option<String>,
}

impl MemberStatus {
    /// A member at `host:port` in `role` and `state`, with nothing else known yet.
    pub fn new(name: &str, host: &str, port: u16, role: Role, state: State) -> Self {
        MemberStatus {
            name: name.to_string(),
            role,
            state,
            host: host.to_string(),
            port,
            timeline: None,
            lsn: None,
            received_lsn: None,
            replayed_lsn: None,
            lag_bytes: None,
            lag_seconds: None,
            sync_state: None,
            synchronous_standby_names: None,
            error: None,
            decision: None,
            logical_slots: Vec::new(),
            pending_restart: Vec::new(),
            server_version: None,
            system_identifier: None,
            upstream: None,
            tags: None,
            pgha_version: None,
        }
    }
}

/// What a member's PostgreSQL is (as `pgha status` shows it; JSON: lowercase).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Primary,
    Standby,
    /// Stopped with a primary's data while another member leads: it rejoins as a standby
    /// when it starts (JSON: `former_primary`).
    #[serde(rename = "former_primary")]
    FormerPrimary,
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
            Role::FormerPrimary => "former primary",
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

/// The synchronous part of the status: the published set, and why commits wait if they do.
pub fn sync_status(view: &pgha_core::ClusterView, members: &[MemberStatus]) -> SyncStatus {
    use pgha_core::SyncMode;
    let c = &view.config;
    let set: Vec<String> = view.sync.members.iter().map(|m| m.to_string()).collect();
    let confirming: Vec<String> = members
        .iter()
        .filter(|m| matches!(m.sync_state.as_deref(), Some("sync" | "quorum")))
        .map(|m| m.name.clone())
        .collect();
    // What the primary's PostgreSQL counts: in `on` too, commits wait while it names standbys
    // (a new primary's, for a replication timeout while they connect).
    let applied: Vec<pgha_core::SyncApplied> = members
        .iter()
        .filter(|m| m.role == Role::Primary && m.state == State::Running)
        .filter_map(|m| m.synchronous_standby_names.as_deref())
        .filter_map(pgha_core::SyncApplied::parse)
        .filter(|applied| !applied.is_async())
        .collect();
    let needed = applied.iter().map(|a| a.count).max().unwrap_or(1) as usize;
    // strict's placeholder (no standby known) makes commits wait for any standby.
    let mut unconfirmed: Vec<String> = Vec::new();
    for name in applied.iter().flat_map(|a| &a.names) {
        let name = name.to_string();
        let counts = name != pgha_core::sync::NO_STANDBY && !confirming.contains(&name);
        if counts && !unconfirmed.contains(&name) {
            unconfirmed.push(name);
        }
    }
    let warning = match c.synchronous_mode {
        SyncMode::Off => None,
        _ if !applied.is_empty() => {
            (confirming.len() < needed).then(|| commits_wait(needed, &confirming, &unconfirmed))
        }
        _ if !confirming.is_empty() => None,
        SyncMode::Strict => Some(commits_wait(1, &[], &set)),
        SyncMode::On if set.is_empty() => {
            Some("degraded to asynchronous: no healthy standby to confirm commits".into())
        }
        SyncMode::On => Some(format!(
            "degraded to asynchronous: no healthy standby to confirm commits; only {} may take \
             over (the synchronous set keeps them: they may hold commits the others lack)",
            set.join(" or ")
        )),
    };
    SyncStatus {
        mode: c.synchronous_mode,
        method: c.synchronous_method,
        count: c.synchronous_count,
        commit: c.synchronous_commit,
        set,
        warning,
    }
}

/// Why commits wait: each needs `needed` synchronous standbys, `confirming` stream, and one
/// of `unconfirmed` (or `needed − confirming` of them) must come; none named: any standby.
fn commits_wait(needed: usize, confirming: &[String], unconfirmed: &[String]) -> String {
    let missing = needed.saturating_sub(confirming.len());
    let whom = match unconfirmed.len() {
        0 => "any standby".to_string(),
        n if n <= missing => unconfirmed.join(" and "),
        _ if missing == 1 => unconfirmed.join(" or "),
        _ => format!("{missing} of {}", unconfirmed.join(", ")),
    };
    if confirming.is_empty() && needed == 1 {
        return format!("commits wait: no synchronous standby is streaming (waiting for {whom})");
    }
    let streaming = match confirming {
        [] => "none streams".to_string(),
        [one] => format!("only {one} streams"),
        many => format!("only {} stream", many.join(", ")),
    };
    format!(
        "commits wait: each needs {needed} synchronous standbys and {streaming} (waiting for \
         {whom})"
    )
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
