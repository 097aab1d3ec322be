//! When a member may leave the published set (or its count rise): once enough staying members
//! flushed all the leaving configuration may have confirmed.

use crate::observe::ReplicaState;
use crate::types::{Lsn, MemberName, Millis};
use std::collections::BTreeSet;

use super::SyncSet;

/// A removal from the published set under way: which members stay, and the primary's
/// position once PostgreSQL had stopped counting the leaving ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemovalMark {
    /// The leader term (its key's revision) the removal belongs to.
    term: u64,
    staying: BTreeSet<MemberName>,
    count: u32,
    first_seen: Millis,
    lsn: Lsn,
}

/// Whether `target` may now replace `published` in the store. A member leaves the set only
/// once a member that stays has flushed every commit PostgreSQL may have acknowledged through
/// the leaving one: the primary's position, re-read for `settle_ms` after the change was first
/// seen applied (by then every WAL sender has reloaded), must be flushed by a staying member
/// that streams. Otherwise a failover would choose among the staying members only and could
/// lose commits that the leaving member alone confirmed. A higher count waits the same way (an
/// election needs fewer records under it). With a count of `k`, `k` staying members must hold
/// that position: any `|set| - k + 1` records then include one of them. Additions need no wait
/// (the first members of a set naming only its leader come with every standby that may hold
/// what was acknowledged: [`super::with_possible_holders`]).
/// An empty target makes every standby eligible, and the most advanced running one wins: it
/// waits until some standby that streams holds that position (a stopped set member may be the
/// only one holding commits it confirmed), unless `emptying_waits` is false (the settings
/// turned synchronous replication off, giving up I4). A mark counts only for the same removal
/// in the same term (`term`: the leader key's revision); callers drop it whenever the next
/// step is not a publication.
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
    emptying_waits: bool,
) -> bool {
    let removes = !target.members.is_superset(&published.members);
    let raises = !published.members.is_empty() && target.count > published.count;
    let emptied = target.members.is_empty();
    if !(removes || raises) || (emptied && !emptying_waits) {
        *mark = None;
        return true;
    }
    let current = mark
        .take()
        .filter(|m| m.term == term && m.staying == target.members && m.count == target.count);
    let mut m = current.unwrap_or(RemovalMark {
        term,
        staying: target.members.clone(),
        count: target.count,
        first_seen: now,
        lsn: primary_lsn,
    });
    if now.since(m.first_seen) < settle_ms {
        m.lsn = m.lsn.max(primary_lsn);
        *mark = Some(m);
        return false;
    }
    let holders = replicas
        .iter()
        .filter(|r| emptied || target.members.contains(&r.name))
        .filter(|r| r.streaming && r.flush_lsn >= m.lsn)
        .count();
    let caught_up = holders >= (target.count as usize).max(1);
    if !caught_up {
        *mark = Some(m);
    }
    caught_up
}
