//! The store's snapshot (JSON values pgha wrote) decoded into the core's `ClusterView`, and
//! the history entries. Decisions are never made on a guess: a value that does not decode is
//! an error naming its key, not a default.

use std::time::SystemTime;

use pgha_core::{
    ClusterConfig, ClusterView, FailsafeList, HistoryEvent, LeaderKey, LeaderPosition, MemberName,
    MemberRecord, PendingSwitchover, SwitchoverRequest, SyncSet, SystemId,
};
use serde::{Deserialize, Serialize};

use crate::{Key, Snapshot};

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

/// A value in the store that pgha cannot read (written by hand, or by an incompatible
/// version). Members treat the cluster as unreadable, as if the store were down, rather than
/// decide on defaults (a missing synchronous set or position could promote the wrong member).
#[derive(Debug, thiserror::Error)]
pub enum Unreadable {
    #[error(
        "the store's {key} key holds an unreadable {what}: {source} (restore it, or delete it \
         with etcdctl if pgha may recreate it; `pgha config set` validates what it writes)"
    )]
    Value {
        /// The key, as pgha names it under the cluster prefix (`config`, `members/n1`, ...).
        key: String,
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "the store's config key holds a configuration pgha cannot run with: {source} (set it \
         again with `pgha config set`, which validates what it writes)"
    )]
    InvalidConfig {
        #[source]
        source: pgha_core::ConfigError,
    },
    #[error(
        "the store holds a member key with the invalid name {name:?} (1 to 63 letters, digits, \
         '_', '-' or '.'): delete members/{name} with etcdctl"
    )]
    MemberName { name: String },
}

impl Unreadable {
    /// The key it is about, under the cluster prefix.
    pub fn key(&self) -> String {
        match self {
            Unreadable::Value { key, .. } => key.clone(),
            Unreadable::InvalidConfig { .. } => "config".into(),
            Unreadable::MemberName { name } => format!("members/{name}"),
        }
    }
}

fn decode<T: for<'de> Deserialize<'de>>(
    key: impl Into<String>,
    what: &'static str,
    text: &str,
) -> Result<T, Unreadable> {
    serde_json::from_str(text).map_err(|source| Unreadable::Value {
        key: key.into(),
        what,
        source,
    })
}

/// The configuration as the store holds it, decoded but not validated: what `pgha config set`
/// changes, so that it can mend one that fails validation. `None`: the store has none.
pub fn stored_config(snapshot: &Snapshot) -> Result<Option<ClusterConfig>, Unreadable> {
    snapshot
        .get(Key::Config)
        .map(|v| decode("config", "cluster configuration", &v.value))
        .transpose()
}

/// Builds the core's view of `snapshot`; any unreadable decision input is an error. History
/// entries only explain the past: one that does not decode is left out (and logged).
pub fn cluster_view(snapshot: &Snapshot) -> Result<ClusterView, Unreadable> {
    let mut members = std::collections::BTreeMap::new();
    for (name, v) in &snapshot.members {
        if !MemberName::valid(name) {
            return Err(Unreadable::MemberName { name: name.clone() });
        }
        let record: MemberRecord = decode(format!("members/{name}"), "member record", &v.value)?;
        members.insert(MemberName::new(name.as_str()), record);
    }
    let key = |k: Key| snapshot.get(k).map(|v| (v.value.as_str(), v.revision));
    let initialize = match key(Key::Initialize) {
        Some((v, _)) => Some(decode::<SystemId>("initialize", "system identifier", v)?),
        None => None,
    };
    let config = match stored_config(snapshot)? {
        Some(config) => {
            config
                .validate()
                .map_err(|source| Unreadable::InvalidConfig { source })?;
            config
        }
        None => ClusterConfig::default(),
    };
    let sync = match key(Key::Sync) {
        Some((v, _)) => decode::<SyncSet>("sync", "synchronous set", v)?,
        None => SyncSet::default(),
    };
    let switchover = match key(Key::Switchover) {
        Some((v, revision)) => Some(PendingSwitchover {
            request: decode::<SwitchoverRequest>("switchover", "switchover request", v)?,
            revision,
        }),
        None => None,
    };
    let failsafe = match key(Key::Failsafe) {
        Some((v, _)) => Some(decode::<FailsafeList>("failsafe", "failsafe list", v)?),
        None => None,
    };
    let leader_position = match key(Key::Position) {
        Some((v, _)) => Some(decode::<LeaderPosition>("position", "leader position", v)?),
        None => None,
    };
    Ok(ClusterView {
        initialize,
        leader: leader_key(snapshot),
        members,
        config,
        sync,
        sync_revision: key(Key::Sync).map_or(0, |(_, revision)| revision),
        // what the store holds; an agent that kept the set it last read says so
        sync_from_memory: false,
        switchover,
        failsafe,
        failsafe_revision: key(Key::Failsafe).map_or(0, |(_, revision)| revision),
        leader_position,
        position_revision: key(Key::Position).map_or(0, |(_, revision)| revision),
        history: history_entries(snapshot)
            .into_iter()
            .map(|h| h.event)
            .collect(),
    })
}

/// What routing reads of `snapshot`: the leader key and the member records, each record on
/// its own. A record that does not decode is left out and returned beside the view: its
/// member takes no sessions (the lease holder's among them: writes then go nowhere, never to
/// a member whose record was not read). Keys routing does not read (the configuration, the
/// synchronous set, ...) are not decoded at all, so that one a newer version wrote does not
/// freeze the proxy's routing.
pub fn routing_view(snapshot: &Snapshot) -> (ClusterView, Vec<Unreadable>) {
    let mut unreadable = Vec::new();
    let mut members = std::collections::BTreeMap::new();
    for (name, v) in &snapshot.members {
        if !MemberName::valid(name) {
            unreadable.push(Unreadable::MemberName { name: name.clone() });
            continue;
        }
        match decode::<MemberRecord>(format!("members/{name}"), "member record", &v.value) {
            Ok(record) => {
                members.insert(MemberName::new(name.as_str()), record);
            }
            Err(e) => unreadable.push(e),
        }
    }
    let view = ClusterView {
        leader: leader_key(snapshot),
        members,
        ..ClusterView::default()
    };
    (view, unreadable)
}

fn leader_key(snapshot: &Snapshot) -> Option<LeaderKey> {
    snapshot.leader.as_ref().map(|l| LeaderKey {
        holder: MemberName::new(l.holder.as_str()),
        revision: l.revision,
    })
}

/// The `failsafe` key's value naming `holder` alone: what taking the leader key writes.
pub(crate) fn failsafe_list_of_alone(holder: &str) -> String {
    let list = FailsafeList {
        leader: MemberName::new(holder),
        members: [MemberName::new(holder)].into(),
    };
    serde_json::to_string(&list).expect("a failsafe list serialises")
}

/// The history entries with their times, oldest first; unreadable ones are left out.
pub fn history_entries(snapshot: &Snapshot) -> Vec<HistoryEntry> {
    snapshot
        .history
        .iter()
        .filter_map(|v| match serde_json::from_str(&v.value) {
            Ok(entry) => Some(entry),
            Err(e) => {
                tracing::warn!("leaving out an unreadable history entry: {e}");
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Versioned;

    fn snapshot(keys: &[(Key, &str)], members: &[(&str, &str)], history: &[&str]) -> Snapshot {
        let v = |text: &str| Versioned {
            value: text.to_string(),
            revision: 5,
        };
        Snapshot {
            revision: 9,
            leader: None,
            members: members.iter().map(|(n, t)| (n.to_string(), v(t))).collect(),
            keys: keys.iter().map(|(k, t)| (*k, v(t))).collect(),
            history: history.iter().map(|t| v(t)).collect(),
        }
    }

    #[test]
    fn an_empty_store_reads_as_defaults() {
        let view = cluster_view(&snapshot(&[], &[], &[])).unwrap();
        assert_eq!(view.config, ClusterConfig::default());
        assert_eq!(view.sync, SyncSet::default());
        assert!(view.members.is_empty() && view.leader_position.is_none());
        assert_eq!(view.sync_revision, 0, "a sync key never written");
    }

    /// The key's revision comes with the set: a leader's write of the set compares it.
    #[test]
    fn the_sync_key_reads_with_its_revision() {
        let set = serde_json::to_string(&SyncSet::default()).unwrap();
        let view = cluster_view(&snapshot(&[(Key::Sync, &set)], &[], &[])).unwrap();
        assert_eq!(view.sync_revision, 5);
    }

    /// A hand-edited config once read as the defaults (ttl 10 s whatever the cluster ran
    /// with); an unreadable synchronous set as empty (every member eligible in `on` mode).
    #[test]
    fn an_unreadable_decision_input_is_an_error_naming_its_key() {
        let cases = [
            (
                snapshot(&[(Key::Config, r#"{"ttl_ms": "ten"}"#)], &[], &[]),
                "config",
            ),
            (snapshot(&[(Key::Sync, "[")], &[], &[]), "sync"),
            (snapshot(&[(Key::Position, "{}")], &[], &[]), "position"),
            (snapshot(&[(Key::Failsafe, "7")], &[], &[]), "failsafe"),
            (
                snapshot(&[(Key::Switchover, "null")], &[], &[]),
                "switchover",
            ),
            (
                snapshot(&[], &[("n2", "{\"running\": 1}")], &[]),
                "members/n2",
            ),
        ];
        for (snap, key) in cases {
            let err = cluster_view(&snap).expect_err(key);
            assert_eq!(err.key(), key);
            let text = err.to_string();
            assert!(text.contains(&format!("{key} key")), "{text}");
        }
    }

    /// A configuration that decodes but that pgha cannot run with (written around `pgha
    /// config set`: by hand, or a partial one completed with defaults) was acted on: with the
    /// margin at the ttl, the trust in a lease ended before its next renewal. An error now,
    /// naming the key and the setting.
    #[test]
    fn a_configuration_that_fails_validation_is_an_error_naming_the_setting() {
        for (config, setting) in [
            (
                r#"{"ttl_ms": 3000, "safety_margin_ms": 3000}"#,
                "safety_margin_ms",
            ),
            (r#"{"ttl_ms": 3000}"#, "loop_wait_ms"),
            (r#"{"synchronous_count": 0}"#, "synchronous_count"),
        ] {
            let err =
                cluster_view(&snapshot(&[(Key::Config, config)], &[], &[])).expect_err(config);
            assert_eq!(err.key(), "config");
            let text = err.to_string();
            assert!(
                text.contains(setting) && text.contains("config key"),
                "{text}"
            );
        }
        let valid = serde_json::to_string(&ClusterConfig::default()).unwrap();
        assert!(cluster_view(&snapshot(&[(Key::Config, &valid)], &[], &[])).is_ok());
    }

    /// Routing reads only the leader key and the member records: a key it does not read that
    /// does not decode (a newer version's configuration) changes nothing, and a record that
    /// does not decode leaves out its member alone, named.
    #[test]
    fn routing_reads_the_leader_and_each_record_on_its_own() {
        let standby = serde_json::to_string(&MemberRecord {
            running: true,
            in_recovery: true,
            ..MemberRecord::default()
        })
        .unwrap();
        let mut snap = snapshot(
            &[(Key::Config, r#"{"ttl_ms": "ten"}"#), (Key::Sync, "[")],
            &[
                ("n1", "{\"running\": 1}"),
                ("n2", &standby),
                ("a b", &standby),
            ],
            &[],
        );
        snap.leader = Some(crate::LeaderRecord {
            holder: "n1".into(),
            revision: 3,
        });
        assert!(
            cluster_view(&snap).is_err(),
            "the decisions' view refuses it"
        );
        let (view, unreadable) = routing_view(&snap);
        assert_eq!(view.leader.as_ref().map(|l| l.holder.as_str()), Some("n1"));
        let names: Vec<&str> = view.members.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["n2"]);
        let keys: Vec<String> = unreadable.iter().map(Unreadable::key).collect();
        assert_eq!(keys, ["members/a b", "members/n1"]);
        assert_eq!(pgha_core::routing::write_candidate(&view), None);
    }

    /// A rolling upgrade: a record as an agent older than `pgha_version` writes it reads with
    /// no version (how `pgha config set` knows not to wait for its report), and one of this
    /// version's agents reads back with its own.
    #[test]
    fn a_record_of_an_older_agent_reads_with_no_version() {
        let older = r#"{"running":true,"in_recovery":false,"timeline":1,"lsn":"0/0","replay_lsn":"0/0","streaming_from":null,"tags":{},"leader_seen":null,"addresses":{}}"#;
        let newer = serde_json::to_string(&MemberRecord {
            pgha_version: Some(pgha_core::VERSION.into()),
            ..MemberRecord::default()
        })
        .unwrap();
        let view = cluster_view(&snapshot(&[], &[("n1", older), ("n2", &newer)], &[])).unwrap();
        let version = |name: &str| view.members[&MemberName::new(name)].pgha_version.clone();
        assert_eq!(version("n1"), None);
        assert_eq!(version("n2").as_deref(), Some(pgha_core::VERSION));
    }

    /// A member name is quoted into synchronous_standby_names and application_name: one
    /// written into the store by hand that could break out of the quotes is refused.
    #[test]
    fn a_member_key_with_an_invalid_name_is_an_error() {
        let record = r#"{"running":true}"#;
        for name in ["n2\", FIRST 9 (\"x", "", "a b"] {
            let snap = snapshot(&[], &[(name, record)], &[]);
            match cluster_view(&snap) {
                Err(Unreadable::MemberName { name: got }) => assert_eq!(got, name),
                other => panic!("{name:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn an_unreadable_history_entry_is_left_out() {
        let event = HistoryEntry::now(HistoryEvent {
            kind: pgha_core::EventKind::Failover,
            from: Some("n1".into()),
            to: Some("n2".into()),
            timeline: pgha_core::Timeline(2),
            lsn: pgha_core::Lsn(42),
            reason: "test".into(),
        });
        let good = serde_json::to_string(&event).unwrap();
        let snap = snapshot(&[], &[], &["not json", &good]);
        assert_eq!(history_entries(&snap), vec![event.clone()]);
        assert_eq!(cluster_view(&snap).unwrap().history, vec![event.event]);
    }
}
