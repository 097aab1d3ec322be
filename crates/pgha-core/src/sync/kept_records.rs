//! Records of standbys PostgreSQL counts as synchronous, kept for a ttl once gone from the store.
//!
//! A member's key lives on its own lease, renewed with each record its agent publishes; a store
//! that answers no read for longer than a ttl (etcd's disk stalled, etcd unreachable from every
//! member) lets every member key expire, while the leader key, kept alive by the leader's
//! renewals, may outlive it. The leader's first step once the store answers again then reads
//! no standby's record, a loop before they publish again. Dropping standbys that stream and
//! confirm for want of a record would empty `synchronous_standby_names` for nothing (`on`
//! degrading to asynchronous): each keeps the record last read for a ttl from when the leader
//! first misses it, while PostgreSQL counts it and it streams. After that it goes: its agent
//! may be gone for good, and the published set must let the others take over.

use std::collections::BTreeMap;

use crate::observe::{MemberRecord, ReplicaState};
use crate::types::{MemberName, Millis};

use super::SyncApplied;

/// The record last read of each member in one leader term, and since when it has been missing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeptRecords {
    term: u64,
    last: BTreeMap<MemberName, Kept>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Kept {
    record: MemberRecord,
    missing_since: Option<Millis>,
}

impl KeptRecords {
    /// The members the leader chooses synchronous standbys among at `now`, in the term whose
    /// leader key has revision `term`: the records read (`members`), and for each standby that
    /// PostgreSQL counts (`applied`) and that streams, whose record has been missing for less
    /// than `keep_ms`, the one last read in this term (a record from an earlier one may say
    /// what no longer holds: its tags).
    pub fn members_for_sync(
        &mut self,
        term: u64,
        members: &BTreeMap<MemberName, MemberRecord>,
        replicas: &[ReplicaState],
        applied: &SyncApplied,
        now: Millis,
        keep_ms: u64,
    ) -> BTreeMap<MemberName, MemberRecord> {
        if term != self.term {
            *self = KeptRecords {
                term,
                ..Default::default()
            };
        }
        for (name, record) in members {
            let kept = Kept {
                record: record.clone(),
                missing_since: None,
            };
            self.last.insert(name.clone(), kept);
        }
        self.last.retain(|name, kept| {
            if members.contains_key(name) {
                return true;
            }
            let since = *kept.missing_since.get_or_insert(now);
            now.since(since) < keep_ms
        });
        let mut chosen_among = members.clone();
        let counted = |name: &MemberName| {
            applied.names.contains(name) && replicas.iter().any(|r| r.name == *name && r.streaming)
        };
        for (name, kept) in &self.last {
            if !members.contains_key(name) && counted(name) {
                chosen_among.insert(name.clone(), kept.record.clone());
            }
        }
        chosen_among
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SyncMethod;
    use crate::types::Lsn;

    fn name(n: &str) -> MemberName {
        MemberName::new(n)
    }

    fn streaming(n: &str) -> ReplicaState {
        ReplicaState {
            name: name(n),
            streaming: true,
            flush_lsn: Lsn(1),
            replay_lsn: Lsn(1),
        }
    }

    /// Kept while counted and streaming, for `keep_ms` from the first step that misses it; a
    /// standby PostgreSQL does not count, or that no longer streams, is not.
    #[test]
    fn a_missing_record_is_kept_for_counted_streaming_standbys_only_and_for_a_while() {
        let mut kept = KeptRecords::default();
        let record = MemberRecord {
            running: true,
            in_recovery: true,
            ..Default::default()
        };
        let all: BTreeMap<_, _> = ["n2", "n3", "n4"]
            .into_iter()
            .map(|n| (name(n), record.clone()))
            .collect();
        let applied = SyncApplied {
            method: SyncMethod::Priority,
            count: 1,
            names: vec![name("n2"), name("n3")],
        };
        let mut n3_stopped = streaming("n3");
        n3_stopped.streaming = false;
        let replicas = [streaming("n2"), n3_stopped, streaming("n4")];
        let names = |m: BTreeMap<MemberName, MemberRecord>| m.into_keys().collect::<Vec<_>>();
        let read = kept.members_for_sync(7, &all, &replicas, &applied, Millis(0), 10_000);
        assert_eq!(read, all);
        let none = BTreeMap::new();
        for at in [1_000, 10_999] {
            let chosen = kept.members_for_sync(7, &none, &replicas, &applied, Millis(at), 10_000);
            assert_eq!(names(chosen), [name("n2")], "at {at} ms");
        }
        let chosen = kept.members_for_sync(7, &none, &replicas, &applied, Millis(11_000), 10_000);
        assert!(chosen.is_empty(), "{chosen:?}");
        // read again, then missing again: kept again, from that moment
        kept.members_for_sync(7, &all, &replicas, &applied, Millis(12_000), 10_000);
        let chosen = kept.members_for_sync(7, &none, &replicas, &applied, Millis(21_000), 10_000);
        assert_eq!(names(chosen), [name("n2")]);
        // another term: nothing read in it yet, nothing kept
        let chosen = kept.members_for_sync(9, &none, &replicas, &applied, Millis(21_500), 10_000);
        assert!(chosen.is_empty(), "{chosen:?}");
    }
}
