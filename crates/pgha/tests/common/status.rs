//! Reading `pgha status --json` and `pgha history --json`: members, the primary, events.

use std::collections::BTreeMap;

use serde_json::Value;

pub fn members(status: &Value) -> Vec<Value> {
    status["members"].as_array().cloned().unwrap_or_default()
}

pub fn member_names(status: &Value) -> Vec<String> {
    members(status)
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect()
}

/// The leader, if it runs as a primary.
pub fn primary_of(status: &Value) -> Option<String> {
    let leader = status["leader"].as_str()?;
    members(status)
        .iter()
        .any(|m| m["name"] == leader && m["role"] == "primary" && m["state"] == "running")
        .then(|| leader.to_string())
}

/// How many members run as a primary.
pub fn primaries(status: &Value) -> usize {
    members(status)
        .iter()
        .filter(|m| m["role"] == "primary" && m["state"] == "running")
        .count()
}

/// Standby name → sync_state, for the standbys that report one.
pub fn sync_states(status: &Value) -> BTreeMap<String, String> {
    members(status)
        .iter()
        .filter_map(|m| {
            Some((
                m["name"].as_str()?.to_string(),
                m["sync_state"].as_str()?.to_string(),
            ))
        })
        .collect()
}

/// History entries of `kind` (e.g. "rejoin_rewind"), as (from, to).
pub fn events(history: &[Value], kind: &str) -> Vec<(String, String)> {
    history
        .iter()
        .filter(|e| e["kind"] == kind)
        .map(|e| {
            (
                e["from"].as_str().unwrap_or("-").to_string(),
                e["to"].as_str().unwrap_or("-").to_string(),
            )
        })
        .collect()
}

/// Whether no member rejoined through pg_rewind or a re-clone.
pub fn no_rewind(history: &[Value]) -> bool {
    events(history, "rejoin_rewind").is_empty() && events(history, "rejoin_reclone").is_empty()
}

/// An expected (from, to) of [`events`].
pub fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_string(), b.to_string())
}
