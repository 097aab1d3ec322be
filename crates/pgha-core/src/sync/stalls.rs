//! Standbys that stopped flushing: the primary has flushed WAL beyond one for a while and its
//! flushed position has not moved, so it no longer counts as streaming for the synchronous set.
//!
//! A standby cut off from the leader (either way), or whose disk stalls, stays in
//! `pg_stat_replication` as `streaming` until the replication timeout (a ttl) ends its
//! connection, and every commit waits on it meanwhile. Its position is what shows it: a
//! healthy standby flushes what the primary writes within milliseconds, and a slow one
//! (a bulk load) still moves; one that stands still while the primary is ahead of it for
//! [`ClusterConfig::stalled_standby_ms`](crate::config::ClusterConfig::stalled_standby_ms) is
//! taken out of what PostgreSQL counts (the published set follows only once a member that
//! stays holds what it may have confirmed), and back as soon as it flushes again.

use std::collections::BTreeMap;

use crate::observe::ReplicaState;
use crate::types::{Lsn, MemberName, Millis};

/// Since when each standby has stood at the same flushed position with the primary ahead of it,
/// within one leader term.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlushStalls {
    term: u64,
    observed_at: Option<Millis>,
    behind: BTreeMap<MemberName, Behind>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Behind {
    flush: Lsn,
    since: Millis,
    /// Already returned as newly stalled.
    told: bool,
}

/// A standby that stopped flushing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stalled {
    pub name: MemberName,
    /// Where it stands.
    pub flush: Lsn,
    /// For how long it has stood there with the primary ahead of it.
    pub for_ms: u64,
    /// First found stalled at this observation.
    pub newly: bool,
}

impl FlushStalls {
    /// Notes what the leader's replication shows at `now` (its own flushed position `primary`, term
    /// `term`) and returns the standbys that stood still for `limit_ms` or longer. A new term,
    /// or a gap longer than `limit_ms` since the last observation, starts afresh: standing
    /// still is measured only over observations of one leader in a row.
    pub fn observe(
        &mut self,
        term: u64,
        replicas: &[ReplicaState],
        primary: Lsn,
        now: Millis,
        limit_ms: u64,
    ) -> Vec<Stalled> {
        let fresh = self.term != term || self.observed_at.is_none_or(|at| now.since(at) > limit_ms);
        if fresh {
            self.behind.clear();
        }
        self.term = term;
        self.observed_at = Some(now);
        let mut behind = BTreeMap::new();
        let mut stalled = Vec::new();
        // Caught up: nothing to wait for, whether it moves or not.
        for r in replicas
            .iter()
            .filter(|r| r.streaming && r.flush_lsn < primary)
        {
            let mut entry = match self.behind.get(&r.name) {
                Some(b) if b.flush == r.flush_lsn => *b,
                _ => Behind {
                    flush: r.flush_lsn,
                    since: now,
                    told: false,
                },
            };
            let for_ms = now.since(entry.since);
            if for_ms >= limit_ms {
                stalled.push(Stalled {
                    name: r.name.clone(),
                    flush: r.flush_lsn,
                    for_ms,
                    newly: !entry.told,
                });
                entry.told = true;
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

    fn names(stalled: &[Stalled]) -> Vec<(&str, bool)> {
        stalled.iter().map(|s| (s.name.as_str(), s.newly)).collect()
    }

    #[test]
    fn a_standby_standing_still_behind_the_primary_for_the_limit_is_stalled_once() {
        let mut w = FlushStalls::default();
        let at = |t| Millis(t);
        // n2 stands at 100 from t=0; n3 follows the primary.
        assert!(w
            .observe(
                7,
                &[replica("n2", 100), replica("n3", 150)],
                Lsn(200),
                at(0),
                3000
            )
            .is_empty());
        assert!(w
            .observe(
                7,
                &[replica("n2", 100), replica("n3", 250)],
                Lsn(300),
                at(2999),
                3000
            )
            .is_empty());
        let s = w.observe(
            7,
            &[replica("n2", 100), replica("n3", 350)],
            Lsn(400),
            at(3000),
            3000,
        );
        assert_eq!(names(&s), [("n2", true)]);
        assert_eq!(s[0].for_ms, 3000);
        let s = w.observe(
            7,
            &[replica("n2", 100), replica("n3", 450)],
            Lsn(500),
            at(4000),
            3000,
        );
        assert_eq!(names(&s), [("n2", false)], "told once");
        // it flushes again: back at once
        assert!(w
            .observe(
                7,
                &[replica("n2", 101), replica("n3", 450)],
                Lsn(500),
                at(5000),
                3000
            )
            .is_empty());
    }

    #[test]
    fn a_standby_that_moves_or_is_caught_up_is_never_stalled() {
        let mut w = FlushStalls::default();
        for t in 0..10u64 {
            // n2 slow but moving (a bulk load), n3 caught up with an idle primary
            let s = w.observe(
                7,
                &[replica("n2", 10 * t), replica("n3", 1000)],
                Lsn(1000),
                Millis(t * 1000),
                3000,
            );
            assert!(s.is_empty(), "{s:?}");
        }
    }

    #[test]
    fn standing_still_is_measured_within_one_term_and_without_a_gap() {
        let mut w = FlushStalls::default();
        assert!(w
            .observe(7, &[replica("n2", 100)], Lsn(200), Millis(0), 3000)
            .is_empty());
        // the next term: afresh
        assert!(w
            .observe(9, &[replica("n2", 100)], Lsn(200), Millis(3000), 3000)
            .is_empty());
        // an observation more than the limit after the last one: afresh
        assert!(w
            .observe(9, &[replica("n2", 100)], Lsn(200), Millis(6001), 3000)
            .is_empty());
        let s = w.observe(9, &[replica("n2", 100)], Lsn(200), Millis(9001), 3000);
        assert_eq!(names(&s), [("n2", true)]);
        // without_stalled marks it alone
        let marked = without_stalled(&[replica("n2", 100), replica("n3", 200)], &s);
        assert!(!marked[0].streaming && marked[1].streaming);
    }
}
