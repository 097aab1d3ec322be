//! Synchronous standby management: which standbys, how PostgreSQL counts them, and the order
//! of applying to PostgreSQL versus publishing to the store.

use crate::config::{ClusterConfig, SyncMethod, SyncMode};
use crate::observe::{MemberRecord, ReplicaState};
use crate::types::MemberName;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The synchronous set as published in the store's `sync` key: the members that may be
/// promoted without losing an acknowledged commit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncSet {
    pub members: BTreeSet<MemberName>,
    /// Acknowledgements each commit waits for (`n` of `FIRST n`/`ANY n`).
    pub count: u32,
    pub method: SyncMethod,
}

/// `synchronous_standby_names` as rendered into (or read from) PostgreSQL.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncApplied {
    pub method: SyncMethod,
    pub count: u32,
    /// In priority order; empty means asynchronous.
    pub names: Vec<MemberName>,
}

impl SyncApplied {
    pub fn is_async(&self) -> bool {
        self.names.is_empty()
    }
    fn as_set(&self) -> BTreeSet<MemberName> {
        self.names
            .iter()
            .filter(|n| n.as_str() != NO_STANDBY)
            .cloned()
            .collect()
    }
}

impl fmt::Display for SyncApplied {
    /// The value for `synchronous_standby_names`, e.g. `FIRST 1 ("n2")`, or empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.names.is_empty() {
            return Ok(());
        }
        let word = match self.method {
            SyncMethod::Priority => "FIRST",
            SyncMethod::Quorum => "ANY",
        };
        let names: Vec<String> = self.names.iter().map(|n| format!("\"{n}\"")).collect();
        write!(f, "{word} {} ({})", self.count, names.join(", "))
    }
}

/// The next step towards the desired synchronous configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncStep {
    /// PostgreSQL and the store both match the desired configuration.
    Settled,
    /// Write the store's set first (a member leaves the set before PostgreSQL forgets it).
    Publish(SyncSet),
    /// Apply to PostgreSQL; publish once the next observation shows it applied.
    Apply(SyncApplied),
}

/// The synchronous configuration the leader wants now.
///
/// Candidates are standbys streaming from the leader, known as members, not tagged `nosync`,
/// in priority order (higher priority, then name).
pub fn desired(
    config: &ClusterConfig,
    leader: &MemberName,
    replicas: &[ReplicaState],
    members: &BTreeMap<MemberName, MemberRecord>,
    applied: &SyncApplied,
) -> SyncApplied {
    let method = config.synchronous_method;
    if config.synchronous_mode == SyncMode::Off {
        return SyncApplied {
            method,
            ..SyncApplied::default()
        };
    }
    let mut candidates: Vec<(&MemberName, &MemberRecord)> = replicas
        .iter()
        .filter(|r| r.streaming)
        .filter_map(|r| members.get_key_value(&r.name))
        .filter(|(_, record)| !record.tags.nosync)
        .collect();
    // Priority order: higher priority, then name. Every healthy candidate is listed, so
    // PostgreSQL shows the first `count` as `sync` and the rest as `potential`, and moves the
    // role between them by itself when one disconnects; all of them are in the published set,
    // and failover takes the most advanced, which holds every acknowledged commit.
    candidates.sort_by(|(a, ra), (b, rb)| {
        (std::cmp::Reverse(ra.tags.priority), *a).cmp(&(std::cmp::Reverse(rb.tags.priority), *b))
    });
    let names: Vec<MemberName> = candidates.iter().map(|(n, _)| (*n).clone()).collect();
    if names.is_empty() && config.synchronous_mode == SyncMode::Strict {
        // Strict never degrades: keep waiting on the standbys it had, and never start
        // asynchronous (a new primary, or a switch from `on` while degraded).
        if !applied.is_async() {
            return applied.clone();
        }
        return blocking(config, leader, members);
    }
    let count = (names.len() as u32).min(config.synchronous_count);
    SyncApplied {
        method,
        count,
        names,
    }
}

/// Name used in `synchronous_standby_names` when strict mode knows no standby at all: commits
/// wait until a real standby takes its place. Never published as a set member.
pub const NO_STANDBY: &str = "pgha_no_standby";

/// The list that makes commits wait in strict mode when no standby streams: every other known
/// member that may be synchronous, or a placeholder.
pub fn blocking(
    config: &ClusterConfig,
    leader: &MemberName,
    members: &BTreeMap<MemberName, MemberRecord>,
) -> SyncApplied {
    let mut names: Vec<MemberName> = members
        .iter()
        .filter(|(n, r)| *n != leader && !r.tags.nosync)
        .map(|(n, _)| n.clone())
        .collect();
    if names.is_empty() {
        names.push(MemberName::new(NO_STANDBY));
    }
    SyncApplied {
        method: config.synchronous_method,
        count: config.synchronous_count.min(names.len() as u32),
        names,
    }
}

/// Orders the change: removals reach the store before PostgreSQL, additions reach the store
/// only after PostgreSQL applied them.
pub fn next_step(desired: &SyncApplied, applied: &SyncApplied, published: &SyncSet) -> SyncStep {
    let wanted = desired.as_set();
    let kept: BTreeSet<MemberName> = published.members.intersection(&wanted).cloned().collect();
    if kept != published.members {
        return SyncStep::Publish(SyncSet {
            members: kept,
            count: published.count,
            method: published.method,
        });
    }
    if applied != desired {
        return SyncStep::Apply(desired.clone());
    }
    let target = SyncSet {
        members: wanted,
        count: desired.count,
        method: desired.method,
    };
    if target != *published {
        return SyncStep::Publish(target);
    }
    SyncStep::Settled
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Lsn, Tags, Timeline};

    fn record(priority: u32, nosync: bool) -> MemberRecord {
        MemberRecord {
            running: true,
            in_recovery: true,
            timeline: Timeline(1),
            lsn: Lsn(0),
            replay_lsn: Lsn(0),
            streaming_from: Some("n1".into()),
            tags: Tags {
                priority,
                nosync,
                ..Tags::default()
            },
            leader_seen: Some("n1".into()),
            addresses: BTreeMap::new(),
        }
    }

    fn replica(name: &str) -> ReplicaState {
        ReplicaState {
            name: name.into(),
            streaming: true,
            flush_lsn: Lsn(0),
            replay_lsn: Lsn(0),
        }
    }

    fn on(count: u32) -> ClusterConfig {
        ClusterConfig {
            synchronous_mode: SyncMode::On,
            synchronous_count: count,
            ..ClusterConfig::default()
        }
    }

    #[test]
    fn picks_by_priority_then_name_and_skips_nosync() {
        let members = BTreeMap::from([
            ("n2".into(), record(1, false)),
            ("n3".into(), record(5, false)),
            ("n4".into(), record(9, true)),
        ]);
        let replicas = [replica("n2"), replica("n3"), replica("n4")];
        let want = desired(
            &on(1),
            &"n1".into(),
            &replicas,
            &members,
            &SyncApplied::default(),
        );
        assert_eq!(
            want.names,
            vec![MemberName::from("n3"), MemberName::from("n2")]
        );
        assert_eq!(want.to_string(), "FIRST 1 (\"n3\", \"n2\")");
    }

    #[test]
    fn on_degrades_and_strict_keeps_waiting() {
        let applied = SyncApplied {
            method: SyncMethod::Priority,
            count: 1,
            names: vec!["n2".into()],
        };
        let none = BTreeMap::new();
        assert!(desired(&on(1), &"n1".into(), &[], &none, &applied).is_async());
        let strict = ClusterConfig {
            synchronous_mode: SyncMode::Strict,
            ..on(1)
        };
        assert_eq!(
            desired(&strict, &"n1".into(), &[], &none, &applied),
            applied
        );
    }

    #[test]
    fn strict_never_starts_asynchronous() {
        let strict = ClusterConfig {
            synchronous_mode: SyncMode::Strict,
            ..on(1)
        };
        let members = BTreeMap::from([
            ("n1".into(), record(0, false)),
            ("n2".into(), record(0, false)),
            ("n3".into(), record(0, true)),
        ]);
        let want = desired(
            &strict,
            &"n1".into(),
            &[],
            &members,
            &SyncApplied::default(),
        );
        assert_eq!(want.names, vec![MemberName::from("n2")]);
        assert_eq!(want.count, 1);
        // Alone, it waits on a placeholder that is never published as a member.
        let alone = BTreeMap::from([("n1".into(), record(0, false))]);
        let want = desired(&strict, &"n1".into(), &[], &alone, &SyncApplied::default());
        assert_eq!(want.names, vec![MemberName::from(NO_STANDBY)]);
        assert!(!want.is_async());
        assert!(want.as_set().is_empty());
    }

    #[test]
    fn removal_is_published_first_and_addition_last() {
        let old = SyncApplied {
            method: SyncMethod::Priority,
            count: 1,
            names: vec!["n2".into()],
        };
        let new = SyncApplied {
            names: vec!["n3".into()],
            ..old.clone()
        };
        let published = SyncSet {
            members: ["n2".into()].into(),
            count: 1,
            method: SyncMethod::Priority,
        };
        let SyncStep::Publish(emptied) = next_step(&new, &old, &published) else {
            panic!("removal must reach the store first");
        };
        assert!(emptied.members.is_empty());
        assert_eq!(
            next_step(&new, &old, &emptied),
            SyncStep::Apply(new.clone())
        );
        let SyncStep::Publish(added) = next_step(&new, &new, &emptied) else {
            panic!("addition is published after apply");
        };
        assert_eq!(added.members, ["n3".into()].into());
        assert_eq!(next_step(&new, &new, &added), SyncStep::Settled);
    }
}
