//! The proxy's input: the backend for read-write sessions and the standbys for read-only ones.

use serde::{Deserialize, Serialize};

/// One PostgreSQL server the proxy may route to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Backend {
    /// Member name, for logs and metrics.
    pub name: String,
    /// `host:port` to connect to (resolved at connect time).
    pub addr: String,
}

impl Backend {
    /// A backend named `name` reachable at `addr` (`host:port`).
    pub fn new(name: impl Into<String>, addr: impl Into<String>) -> Self {
        Backend {
            name: name.into(),
            addr: addr.into(),
        }
    }
}

/// A standby confirmed in recovery, with its replay lag behind the primary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Standby {
    /// Where to connect.
    pub backend: Backend,
    /// Bytes of WAL the standby has still to replay; `None` when unknown (no primary to compare).
    pub lag_bytes: Option<u64>,
    /// Whether its WAL receiver is streaming, from the confirmed primary when there is one
    /// (read-only sessions go only to streaming standbys).
    pub streaming: bool,
}

/// The routing targets, published on a `tokio::sync::watch` channel by whoever confirms them
/// (the agent, or [`crate::Prober`]). `rw` must be set only for the member that holds the leader
/// lease *and* answered `pg_is_in_recovery() = false` in a fresh check (invariant I2).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Targets {
    /// The confirmed primary, or `None` while unknown (new read-write sessions are held).
    pub rw: Option<Backend>,
    /// The lease holder whose latest check got no answer (a probe stuck behind load, or its
    /// connection lost while `max_connections` is full): no new session goes there, but the
    /// sessions open to it stay, for nothing says it stopped being the primary. `None` once it
    /// answers, or once the store names another holder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unanswered: Option<Backend>,
    /// Standbys that may serve read-only sessions.
    pub ro: Vec<Standby>,
    /// Standbys the store lists whose latest check got no answer: as for `unanswered`, no new
    /// session goes there and the open ones stay (one late check of a loaded standby closing
    /// all its sessions would turn a load spike into a reconnect storm).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ro_unanswered: Vec<Backend>,
    /// Bumped by the publisher on every change; informational (logs, metrics).
    pub generation: u64,
}

impl Targets {
    /// Targets with no primary and no standby.
    pub fn none() -> Self {
        Targets::default()
    }

    /// Targets with only a primary.
    pub fn primary(backend: Backend) -> Self {
        Targets {
            rw: Some(backend),
            ..Targets::default()
        }
    }
}
