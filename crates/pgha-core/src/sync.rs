//! Synchronous standby management: which standbys, how PostgreSQL counts them, and the order
//! of applying to PostgreSQL versus publishing to the store.

use crate::config::{ClusterConfig, SyncMethod, SyncMode};
use crate::observe::{MemberRecord, ReplicaState};
use crate::types::{Lsn, MemberName, Millis};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The synchronous set as published in the store's `sync` key: the members that may be
/// promoted without losing an acknowledged commit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncSet {
    /// The leader that published it. It holds every commit it acknowledged, so it stays
    /// eligible itself (strict mode left with no standby must not be left with no candidate).
    #[serde(default)]
    pub leader: Option<MemberName>,
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

impl SyncApplied {
    /// Reads back a value rendered by [`SyncApplied`]'s `Display` (`FIRST n ("a", "b")`,
    /// `ANY n (...)`, or empty); `None` for anything pgha did not write.
    pub fn parse(text: &str) -> Option<SyncApplied> {
        let text = text.trim();
        if text.is_empty() {
            return Some(SyncApplied::default());
        }
        let (word, rest) = text.split_once(' ')?;
        let method = match word.to_ascii_uppercase().as_str() {
            "FIRST" => SyncMethod::Priority,
            "ANY" => SyncMethod::Quorum,
            _ => return None,
        };
        let (count, list) = rest.trim().split_once(' ')?;
        let count: u32 = count.parse().ok()?;
        let list = list.trim().strip_prefix('(')?.strip_suffix(')')?;
        let names = list
            .split(',')
            .map(|n| {
                let n = n.trim();
                let n = n
                    .strip_prefix('"')
                    .and_then(|n| n.strip_suffix('"'))
                    .unwrap_or(n);
                (!n.is_empty()).then(|| MemberName::new(n))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(SyncApplied {
            method,
            count,
            names,
        })
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
/// Candidates are standbys streaming from the leader, known as members, tagged neither
/// `nosync` nor `nofailover` (a synchronous standby must be promotable), in priority order
/// (higher priority, then name).
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
        // A standby that may not be promoted cannot carry I4: never synchronous.
        .filter(|(_, record)| !record.tags.nosync && !record.tags.nofailover)
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
        .filter(|(n, r)| *n != leader && !r.tags.nosync && !r.tags.nofailover)
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

/// Orders the change so that the published set always covers every standby PostgreSQL may
/// count (failover takes the most advanced member of the set, which then holds every
/// acknowledged commit): additions reach the store before PostgreSQL, removals reach the store
/// only after PostgreSQL applied them. While a change is under way the published count is the
/// smallest and the method the stricter (quorum) of the two configurations.
pub fn next_step(
    leader: &MemberName,
    desired: &SyncApplied,
    applied: &SyncApplied,
    published: &SyncSet,
) -> SyncStep {
    let wanted = desired.as_set();
    let counted = applied.as_set();
    let covered = published.members.is_superset(&wanted) && published.members.is_superset(&counted);
    let counts = [
        (!published.members.is_empty()).then_some(published.count),
        (!counted.is_empty()).then_some(applied.count),
        (!wanted.is_empty()).then_some(desired.count),
    ];
    let lowest = counts.into_iter().flatten().min().unwrap_or(desired.count);
    let quorum = [
        (!published.members.is_empty(), published.method),
        (!counted.is_empty(), applied.method),
        (!wanted.is_empty(), desired.method),
    ]
    .into_iter()
    .any(|(used, method)| used && method == SyncMethod::Quorum);
    let changing = applied != desired;
    if !covered || (changing && !published.members.is_empty() && published.count > lowest) {
        let mut members = published.members.clone();
        members.extend(wanted.iter().cloned());
        members.extend(counted.iter().cloned());
        return SyncStep::Publish(SyncSet {
            leader: Some(leader.clone()),
            members,
            count: lowest,
            method: if quorum {
                SyncMethod::Quorum
            } else {
                desired.method
            },
        });
    }
    if changing {
        return SyncStep::Apply(desired.clone());
    }
    let target = SyncSet {
        leader: Some(leader.clone()),
        members: wanted,
        count: desired.count,
        method: desired.method,
    };
    if target != *published {
        return SyncStep::Publish(target);
    }
    SyncStep::Settled
}

/// What `synchronous_standby_names` must be before `me` is promoted, if not what PostgreSQL
/// applies now: a standby's configuration may still carry a list from an earlier term, and
/// a promoted PostgreSQL counts it at once, possibly members outside the published set (a
/// commit they alone confirmed would be lost by the next failover). Keeps only listed members
/// of the published set; with none left, `on` starts asynchronous and `strict` waits on a
/// placeholder until the new leader publishes and applies its own set.
pub fn before_promotion(
    config: &ClusterConfig,
    me: &MemberName,
    applied: &SyncApplied,
    published: &SyncSet,
) -> Option<SyncApplied> {
    if config.synchronous_mode == SyncMode::Off {
        return None;
    }
    let names: Vec<MemberName> = applied
        .names
        .iter()
        .filter(|n| *n != me && published.members.contains(*n))
        .cloned()
        .collect();
    let wanted = if !names.is_empty() {
        SyncApplied {
            method: applied.method,
            count: applied.count.clamp(1, names.len() as u32),
            names,
        }
    } else if config.synchronous_mode == SyncMode::Strict {
        SyncApplied {
            method: config.synchronous_method,
            count: 1,
            names: vec![MemberName::new(NO_STANDBY)],
        }
    } else {
        SyncApplied {
            method: applied.method,
            ..SyncApplied::default()
        }
    };
    (wanted != *applied).then_some(wanted)
}

/// A removal from the published set under way: which members stay, and the primary's
/// position once PostgreSQL had stopped counting the leaving ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemovalMark {
    /// The leader term (its key's revision) the removal belongs to.
    term: u64,
    staying: BTreeSet<MemberName>,
    first_seen: Millis,
    lsn: Lsn,
}

/// Whether `target` may now replace `published` in the store. A member leaves the set only
/// once a member that stays has flushed every commit PostgreSQL may have acknowledged through
/// the leaving one: the primary's position, re-read for `settle_ms` after the change was first
/// seen applied (by then every WAL sender has reloaded), must be flushed by a staying member
/// that streams. Otherwise a failover would choose among the staying members only and could
/// lose commits that the leaving member alone confirmed. Additions, and an empty target (in
/// `on` mode every member is then eligible and the most advanced wins), need no wait. A mark
/// counts only for the same removal in the same term (`term`: the leader key's revision);
/// callers drop it whenever the next step is not a publication.
#[allow(clippy::too_many_arguments)]
pub fn removal_ready(
    mark: &mut Option<RemovalMark>,
    term: u64,
    target: &SyncSet,
    published: &SyncSet,
    replicas: &[ReplicaState],
    primary_lsn: Lsn,
    now: Millis,
    settle_ms: u64,
) -> bool {
    let removes = !target.members.is_superset(&published.members);
    if !removes || target.members.is_empty() {
        *mark = None;
        return true;
    }
    let current = mark
        .take()
        .filter(|m| m.term == term && m.staying == target.members);
    let mut m = current.unwrap_or(RemovalMark {
        term,
        staying: target.members.clone(),
        first_seen: now,
        lsn: primary_lsn,
    });
    if now.since(m.first_seen) < settle_ms {
        m.lsn = m.lsn.max(primary_lsn);
        *mark = Some(m);
        return false;
    }
    let caught_up = replicas
        .iter()
        .any(|r| r.streaming && target.members.contains(&r.name) && r.flush_lsn >= m.lsn);
    if !caught_up {
        *mark = Some(m);
    }
    caught_up
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

    /// Found by the simulation: a `nofailover` standby as the only synchronous one leaves no
    /// member that may be promoted in a synchronous mode.
    #[test]
    fn a_nofailover_standby_is_never_synchronous() {
        let mut members = BTreeMap::new();
        members.insert(MemberName::new("n2"), record(1, false));
        let mut pinned = record(5, false);
        pinned.tags.nofailover = true;
        members.insert(MemberName::new("n3"), pinned);
        let want = desired(
            &on(1),
            &MemberName::new("n1"),
            &[replica("n2"), replica("n3")],
            &members,
            &SyncApplied::default(),
        );
        assert_eq!(want.names, vec![MemberName::new("n2")]);
    }

    #[test]
    fn reads_back_what_it_renders() {
        for applied in [
            SyncApplied::default(),
            SyncApplied {
                method: SyncMethod::Priority,
                count: 1,
                names: vec!["n2".into(), "n3".into()],
            },
            SyncApplied {
                method: SyncMethod::Quorum,
                count: 2,
                names: vec!["n2".into(), "n3".into(), "n4".into()],
            },
        ] {
            assert_eq!(SyncApplied::parse(&applied.to_string()), Some(applied));
        }
        assert_eq!(SyncApplied::parse("*"), None);
        assert_eq!(SyncApplied::parse("FIRST x (n2)"), None);
    }

    /// Issue 9, item 7: the store's set never lacks a standby PostgreSQL counts.
    #[test]
    fn the_store_covers_what_postgresql_counts_at_every_step() {
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
            leader: Some("n1".into()),
            members: ["n2".into()].into(),
            count: 1,
            method: SyncMethod::Priority,
        };
        // n3 joins the store first (while PostgreSQL still counts n2 only).
        let SyncStep::Publish(both) = next_step(&"n1".into(), &new, &old, &published) else {
            panic!("an addition must reach the store first");
        };
        assert_eq!(both.members, ["n2".into(), "n3".into()].into());
        // Then PostgreSQL switches to n3, and only then n2 leaves the store.
        assert_eq!(
            next_step(&"n1".into(), &new, &old, &both),
            SyncStep::Apply(new.clone())
        );
        let SyncStep::Publish(only_new) = next_step(&"n1".into(), &new, &new, &both) else {
            panic!("the removal is published once PostgreSQL applied it");
        };
        assert_eq!(only_new.members, ["n3".into()].into());
        assert_eq!(
            next_step(&"n1".into(), &new, &new, &only_new),
            SyncStep::Settled
        );
    }

    #[test]
    fn a_count_change_publishes_the_lower_count_while_under_way() {
        let two = SyncApplied {
            method: SyncMethod::Quorum,
            count: 2,
            names: vec!["n2".into(), "n3".into()],
        };
        let one = SyncApplied {
            count: 1,
            ..two.clone()
        };
        let published = SyncSet {
            leader: Some("n1".into()),
            members: ["n2".into(), "n3".into()].into(),
            count: 2,
            method: SyncMethod::Quorum,
        };
        // Lowering: ANY 1 needs more members compared at failover: published before applied.
        let SyncStep::Publish(lowered) = next_step(&"n1".into(), &one, &two, &published) else {
            panic!("a lower quorum count reaches the store first");
        };
        assert_eq!(lowered.count, 1);
        assert_eq!(
            next_step(&"n1".into(), &one, &two, &lowered),
            SyncStep::Apply(one.clone())
        );
        assert_eq!(
            next_step(&"n1".into(), &one, &one, &lowered),
            SyncStep::Settled
        );
        // Raising: applied first, published after.
        assert_eq!(
            next_step(&"n1".into(), &two, &one, &lowered),
            SyncStep::Apply(two.clone())
        );
        let SyncStep::Publish(raised) = next_step(&"n1".into(), &two, &two, &lowered) else {
            panic!("the higher count is published once applied");
        };
        assert_eq!(raised.count, 2);
    }
}
