//! Translating the store's snapshot (opaque JSON values) into the core's `ClusterView`, and
//! the history entries pgha writes.

use std::time::SystemTime;

use pgha_core::{
    ClusterConfig, ClusterView, HistoryEvent, LeaderKey, MemberName, MemberRecord,
    PendingSwitchover, SwitchoverRequest, SyncSet, SystemId,
};
use pgha_store::{Key, Snapshot};
use serde::{Deserialize, Serialize};

/// One history entry as stored: the core's event plus when it happened (wall clock).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HistoryEntry {
    /// RFC 3339, UTC, seconds precision.
    pub at: String,
    #[serde(flatten)]
    pub event: HistoryEvent,
}

impl HistoryEntry {
    pub fn now(event: HistoryEvent) -> Self {
        HistoryEntry {
            at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            event,
        }
    }
}

/// Builds the core's view; values that do not parse are ignored (and logged), never fatal.
pub fn cluster_view(snapshot: &Snapshot) -> ClusterView {
    fn parse<T: for<'de> Deserialize<'de>>(what: &str, text: &str) -> Option<T> {
        match serde_json::from_str(text) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!("ignoring unreadable {what} in the store: {e}");
                None
            }
        }
    }
    let members = snapshot
        .members
        .iter()
        .filter_map(|(name, v)| {
            Some((
                MemberName::new(name.as_str()),
                parse::<MemberRecord>("member record", &v.value)?,
            ))
        })
        .collect();
    let key = |k: Key| snapshot.get(k).map(|v| (v.value.as_str(), v.revision));
    ClusterView {
        initialize: key(Key::Initialize).and_then(|(v, _)| parse::<SystemId>("initialize key", v)),
        leader: snapshot.leader.as_ref().map(|l| LeaderKey {
            holder: MemberName::new(l.holder.as_str()),
            revision: l.revision,
        }),
        members,
        config: key(Key::Config)
            .and_then(|(v, _)| parse::<ClusterConfig>("config", v))
            .unwrap_or_default(),
        sync: key(Key::Sync)
            .and_then(|(v, _)| parse::<SyncSet>("sync set", v))
            .unwrap_or_default(),
        switchover: key(Key::Switchover).and_then(|(v, revision)| {
            parse::<SwitchoverRequest>("switchover request", v)
                .map(|request| PendingSwitchover { request, revision })
        }),
        failsafe: key(Key::Failsafe)
            .and_then(|(v, _)| parse::<pgha_core::FailsafeList>("failsafe list", v)),
        leader_position: key(Key::Position)
            .and_then(|(v, _)| parse::<pgha_core::LeaderPosition>("position", v)),
        history: snapshot
            .history
            .iter()
            .filter_map(|v| parse::<HistoryEntry>("history entry", &v.value).map(|h| h.event))
            .collect(),
    }
}

/// The history entries with their times, oldest first.
pub fn history_entries(snapshot: &Snapshot) -> Vec<HistoryEntry> {
    snapshot
        .history
        .iter()
        .filter_map(|v| serde_json::from_str(&v.value).ok())
        .collect()
}
