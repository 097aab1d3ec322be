//! Which standbys should be synchronous: now, in strict mode with none streaming, before promotion.

use crate::config::{ClusterConfig, SyncMethod, SyncMode};
use crate::observe::{MemberRecord, ReplicaState};
use crate::types::{MemberName, Tags};
use std::collections::BTreeMap;

use super::{SyncApplied, SyncSet};

/// The synchronous configuration the leader wants now.
///
/// Candidates are standbys streaming from the leader, known as members, tagged neither
/// `nosync` nor `nofailover` (a synchronous standby must be promotable), in priority order
/// (higher priority, then those `applied` lists in its order, then name).
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
    // Priority order: higher priority, then the standbys already listed in their order, then
    // name. Every healthy candidate is listed, so PostgreSQL shows the first `count` as `sync`
    // and the rest as `potential`, and moves the role between them by itself when one
    // disconnects; all of them are in the published set, and failover takes the most
    // advanced, which holds every acknowledged commit. A standby that (re)joins does not take
    // the role from one that holds it: it may be back on the link that made it drop out.
    let listed = |name: &MemberName| applied.names.iter().position(|n| n == name);
    candidates.sort_by_key(|(name, record)| {
        (
            std::cmp::Reverse(record.tags.priority),
            listed(name).unwrap_or(usize::MAX),
            *name,
        )
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

/// What `synchronous_standby_names` must be before `me` is promoted, if not what PostgreSQL
/// applies now: a standby's configuration may still carry a list from an earlier term, and
/// a promoted PostgreSQL counts it at once, possibly members outside the published set (a
/// commit they alone confirmed would be lost by the next failover). Keeps only listed members
/// of the published set. With none listed (a standby that never led lists nobody), it counts
/// the set's other members that an election may promote (all but those `members` shows tagged
/// `nofailover`): the store's set goes on saying the new term's commits are on them, and an
/// asynchronous start would make that untrue (an election inside the set then loses what the
/// new leader acknowledged alone). With none of those either, `on` starts asynchronous and `strict` waits on a
/// placeholder until the new leader publishes and applies its own set.
pub fn before_promotion(
    config: &ClusterConfig,
    me: &MemberName,
    applied: &SyncApplied,
    published: &SyncSet,
    members: &BTreeMap<MemberName, MemberRecord>,
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
    let others = set_members_besides(me, published, members);
    let wanted = if !names.is_empty() {
        SyncApplied {
            method: applied.method,
            count: applied.count.clamp(1, names.len() as u32),
            names,
        }
    } else if !others.is_empty() {
        SyncApplied {
            method: config.synchronous_method,
            count: config.synchronous_count.clamp(1, others.len() as u32),
            names: others,
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

/// The members of the published set other than `me` that an election may promote: all of
/// them but those whose record says `nofailover` (one whose record is gone, or tagged `nosync`
/// since, may still be elected from the set), in priority order, then by name.
fn set_members_besides(
    me: &MemberName,
    published: &SyncSet,
    members: &BTreeMap<MemberName, MemberRecord>,
) -> Vec<MemberName> {
    let mut listed: Vec<(&MemberName, Option<&MemberRecord>)> = published
        .members
        .iter()
        .filter(|n| *n != me)
        .map(|n| (n, members.get(n)))
        .filter(|(_, record)| !record.is_some_and(|r| r.tags.nofailover))
        .collect();
    listed.sort_by_key(|(name, record)| {
        let priority = record.map_or(Tags::default().priority, |r| r.tags.priority);
        (std::cmp::Reverse(priority), *name)
    });
    listed.into_iter().map(|(name, _)| name.clone()).collect()
}

/// The set a winner of the lease publishes before its PostgreSQL takes a write, if the store's
/// differs: it names the winner as the set's leader (the set's leader needs no quorum to be
/// elected, and the one the store names stopped writing when the winner took over) and counts
/// no more standbys than PostgreSQL will (`counted`, what it applies on promotion: a count the
/// store overstates lets an election settle for too few records). The members stay as
/// published: one leaves only once a staying member holds what it confirmed.
pub fn set_at_promotion(
    config: &ClusterConfig,
    me: &MemberName,
    counted: &SyncApplied,
    published: &SyncSet,
) -> Option<SyncSet> {
    if config.synchronous_mode == SyncMode::Off || published.members.is_empty() {
        return None;
    }
    let mut set = published.clone();
    set.leader = Some(me.clone());
    // A placeholder confirms nothing and commits wait; asynchronous, none is counted at all.
    if !counted.as_set().is_empty() {
        set.count = set.count.min(counted.count);
        if counted.method == SyncMethod::Quorum {
            set.method = SyncMethod::Quorum;
        }
        set.members.extend(counted.as_set());
    }
    (set != *published).then_some(set)
}
