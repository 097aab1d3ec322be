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
    /// `lsn` was read at least `settle_ms` after `first_seen`, and moves no more.
    settled: bool,
}

/// Whether `target` may now replace `published` in the store. A member leaves the set only
/// once a member that stays has flushed every commit PostgreSQL may have acknowledged through
/// the leaving one: the primary's position, re-read until a step at least `settle_ms` after the
/// change was first seen applied (by then every WAL sender has reloaded; a commit one of them
/// acknowledged with the old setting lies before it), must be flushed by a staying member
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
        settled: false,
    });
    if !m.settled {
        m.lsn = m.lsn.max(primary_lsn);
        m.settled = now.since(m.first_seen) >= settle_ms;
        if !m.settled {
            *mark = Some(m);
            return false;
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SyncMethod;

    fn set(members: &[&str]) -> SyncSet {
        SyncSet {
            leader: Some("n1".into()),
            members: members.iter().map(|m| MemberName::from(*m)).collect(),
            count: 1,
            method: SyncMethod::Priority,
            mode: None,
        }
    }

    fn streaming(name: &str, flushed: u64) -> ReplicaState {
        ReplicaState {
            name: name.into(),
            streaming: true,
            flush_lsn: Lsn(flushed),
            replay_lsn: Lsn(flushed),
        }
    }

    /// n3 leaves the set {n2, n3}. The change is first seen applied at 0 with the primary at
    /// 100, but a WAL sender that has not reloaded yet may still count n3 and acknowledge
    /// commits up to 200 meanwhile: the position that n2 must hold is the one read a whole
    /// settle period after (200), not the one at first sight.
    #[test]
    fn the_position_to_hold_is_read_a_settle_period_after_the_change_was_first_seen() {
        let (target, published) = (set(&["n2"]), set(&["n2", "n3"]));
        let mut mark = None;
        let mut ready = |primary: u64, n2_flushed: u64, now: u64| {
            let replicas = [streaming("n2", n2_flushed), streaming("n3", primary)];
            removal_ready(
                &mut mark,
                7,
                &target,
                &published,
                &replicas,
                Lsn(primary),
                Millis(now),
                1_000,
                true,
            )
        };
        assert!(
            !ready(100, 100, 0),
            "judged before the WAL senders reloaded"
        );
        assert!(
            !ready(200, 100, 1_000),
            "n2 holds only the position read at first sight"
        );
        assert!(
            !ready(300, 199, 2_000),
            "the position to hold moved past 200"
        );
        assert!(
            ready(300, 200, 3_000),
            "n2 holds what was read after the settle"
        );
    }
}
