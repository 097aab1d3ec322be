//! Standbys that stopped confirming: the primary has flushed WAL beyond one for a while and the
//! position commits wait for (flushed; replayed under `remote_apply`) has not moved, so it no
//! longer counts as streaming for the synchronous set.
//!
//! A standby cut off from the leader (either way), or whose disk stalls, stays in
//! `pg_stat_replication` as `streaming` until the replication timeout (a ttl) ends its
//! connection, and every commit waits on it meanwhile; under `remote_apply` so do commits on a
//! standby whose replay stands (paused by hand, held by a conflicting query). Its position is
//! what shows it: a healthy standby confirms what the primary flushed within milliseconds, and
//! a slow one (a bulk load) still moves; one that stands still while the primary is ahead of it
//! for [`ClusterConfig::stalled_standby_ms`](crate::config::ClusterConfig::stalled_standby_ms)
//! is taken out of what PostgreSQL counts (the published set follows only once a member that
//! stays holds what it may have confirmed), and back as soon as it moves again.

use std::collections::BTreeMap;

use crate::observe::ReplicaState;
use crate::types::{Lsn, MemberName, Millis};

/// The position of a standby that commits wait for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Confirms {
    /// What it flushed (`on`, `remote_write`: the closest position PostgreSQL shows).
    Flushed,
    /// What it replayed (`remote_apply`).
    Replayed,
}

impl Confirms {
    fn of(self, r: &ReplicaState) -> Lsn {
        match self {
            Confirms::Flushed => r.flush_lsn,
            Confirms::Replayed => r.replay_lsn,
        }
    }

    /// The verb history uses: "flushed", "replayed".
    pub fn verb(self) -> &'static str {
        match self {
            Confirms::Flushed => "flushed",
            Confirms::Replayed => "replayed",
        }
    }
}

/// Since when each standby has stood at the same position with the primary ahead of it, within
/// one leader term and one kind of position.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StandbyStalls {
    term: u64,
    confirms: Option<Confirms>,
    observed_at: Option<Millis>,
    behind: BTreeMap<MemberName, Behind>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Behind {
    at: Lsn,
    since: Millis,
}

/// A standby that stopped confirming.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stalled {
    pub name: MemberName,
    /// Where it stands.
    pub at: Lsn,
    /// For how long it has stood there with the primary ahead of it.
    pub for_ms: u64,
    /// The position that stands.
    pub what: Confirms,
}

impl StandbyStalls {
    /// Notes what the leader's replication shows at `now` (its own flushed position `primary`,
    /// its term `term`, commits waiting for what `confirms` names) and returns the standbys
    /// that stood still for `limit_ms` or longer. A new term, another kind of position, or a
    /// gap longer than `limit_ms` since the last observation starts afresh: standing still is
    /// measured only over observations of one leader in a row.
    pub fn observe(
        &mut self,
        term: u64,
        replicas: &[ReplicaState],
        primary: Lsn,
        confirms: Confirms,
        now: Millis,
        limit_ms: u64,
    ) -> Vec<Stalled> {
        let fresh = self.term != term
            || self.confirms != Some(confirms)
            || self.observed_at.is_none_or(|at| now.since(at) > limit_ms);
        if fresh {
            self.behind.clear();
        }
        self.term = term;
        self.confirms = Some(confirms);
        self.observed_at = Some(now);
        let mut behind = BTreeMap::new();
        let mut stalled = Vec::new();
        // Caught up: nothing to wait for, whether it moves or not.
        for r in replicas
            .iter()
            .filter(|r| r.streaming && confirms.of(r) < primary)
        {
            let at = confirms.of(r);
            let entry = match self.behind.get(&r.name) {
                Some(b) if b.at == at => *b,
                _ => Behind { at, since: now },
            };
            let for_ms = now.since(entry.since);
            if for_ms >= limit_ms {
                stalled.push(Stalled {
                    name: r.name.clone(),
                    at,
                    for_ms,
                    what: confirms,
                });
            }
            behind.insert(r.name.clone(), entry);
        }
        self.behind = behind;
        stalled
    }
}

/// `replicas` with each of `stalled` marked as not streaming.
pub fn without_stalled(replicas: &[ReplicaState], stalled: &[Stalled]) -> Vec<ReplicaState> {
    replicas
        .iter()
        .map(|r| ReplicaState {
            streaming: r.streaming && !stalled.iter().any(|s| s.name == r.name),
            ..r.clone()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(name: &str, flush: u64) -> ReplicaState {
        ReplicaState {
            name: MemberName::new(name),
            streaming: true,
            flush_lsn: Lsn(flush),
            replay_lsn: Lsn(flush),
        }
    }

    /// What `w` finds at `t` ms (flushed positions, a 3 s limit): the stalled standbys' names.
    fn look(
        w: &mut StandbyStalls,
        term: u64,
        replicas: &[ReplicaState],
        primary: u64,
        t: u64,
    ) -> Vec<String> {
        w.observe(
            term,
            replicas,
            Lsn(primary),
            Confirms::Flushed,
            Millis(t),
            3000,
        )
        .into_iter()
        .map(|s| s.name.to_string())
        .collect()
    }

    #[test]
    fn a_standby_standing_still_behind_the_primary_for_the_limit_is_stalled() {
        let mut w = StandbyStalls::default();
        // n2 stands at 100 from t=0; n3 follows the primary.
        let at = |n3: u64| [replica("n2", 100), replica("n3", n3)];
        assert!(look(&mut w, 7, &at(150), 200, 0).is_empty());
        assert!(look(&mut w, 7, &at(250), 300, 2999).is_empty());
        assert_eq!(look(&mut w, 7, &at(350), 400, 3000), ["n2"]);
        assert_eq!(look(&mut w, 7, &at(450), 500, 4000), ["n2"]);
        // it flushes again: back at once
        let moved = [replica("n2", 101), replica("n3", 450)];
        assert!(look(&mut w, 7, &moved, 500, 5000).is_empty());
    }

    #[test]
    fn a_standby_that_moves_or_is_caught_up_is_never_stalled() {
        let mut w = StandbyStalls::default();
        for t in 0..10u64 {
            // n2 slow but moving (a bulk load), n3 caught up with an idle primary
            let replicas = [replica("n2", 10 * t), replica("n3", 1000)];
            assert!(look(&mut w, 7, &replicas, 1000, t * 1000).is_empty());
        }
    }

    #[test]
    fn standing_still_is_measured_within_one_term_and_without_a_gap() {
        let mut w = StandbyStalls::default();
        let n2 = [replica("n2", 100)];
        assert!(look(&mut w, 7, &n2, 200, 0).is_empty());
        // the next term: afresh
        assert!(look(&mut w, 9, &n2, 200, 3000).is_empty());
        // an observation more than the limit after the last one: afresh
        assert!(look(&mut w, 9, &n2, 200, 6001).is_empty());
        let s = w.observe(9, &n2, Lsn(200), Confirms::Flushed, Millis(9001), 3000);
        assert_eq!(s.len(), 1);
        // without_stalled marks it alone
        let marked = without_stalled(&[replica("n2", 100), replica("n3", 200)], &s);
        assert!(!marked[0].streaming && marked[1].streaming);
    }

    /// Under `remote_apply` a standby whose replay stands while it still flushes is stalled;
    /// the same standby is not when commits wait for its flushed position only, and a change
    /// of the kind of position starts afresh.
    #[test]
    fn under_remote_apply_a_standing_replay_is_a_stall() {
        let replaying_at = |flush: u64| ReplicaState {
            replay_lsn: Lsn(100),
            ..replica("n2", flush)
        };
        for confirms in [Confirms::Flushed, Confirms::Replayed] {
            let mut w = StandbyStalls::default();
            let mut found = Vec::new();
            for t in 0..=4u64 {
                let n2 = [replaying_at(150 + t)];
                found = w.observe(7, &n2, Lsn(200 + t), confirms, Millis(t * 1000), 3000);
            }
            assert_eq!(
                found.len(),
                usize::from(confirms == Confirms::Replayed),
                "{confirms:?}"
            );
        }
        let mut w = StandbyStalls::default();
        let n2 = [replaying_at(150)];
        w.observe(7, &n2, Lsn(200), Confirms::Replayed, Millis(0), 3000);
        let s = w.observe(7, &n2, Lsn(200), Confirms::Flushed, Millis(3000), 3000);
        assert!(s.is_empty(), "{s:?}");
    }
}
