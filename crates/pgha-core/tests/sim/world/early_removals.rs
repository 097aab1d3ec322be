//! A store that removes the leader key before its lease ran out (etcd-io/etcd#15247 as a
//! stalled etcd leader resumes, an `etcdctl del` by hand): its holder writes on, not told,
//! until it next reads the store. I1 is the store's to keep then; I4 holds all the same.

use super::*;

impl World {
    /// Runs in which the store now and then removes the leader key at once, among the other
    /// faults.
    pub fn with_early_removals(mut self) -> World {
        self.early_removals = true;
        self
    }

    /// The leader key removed now, whatever its lease says; its holder is not told.
    pub(super) fn remove_key_early(&mut self) {
        let Some((holder, _, _)) = self.store.leader else {
            return;
        };
        self.store.leader = None;
        self.store.leader_gone_at = Some(self.now);
        self.removed_early_at = Some(self.now);
        let acknowledged = self.acknowledged.as_ref().map_or(0, |a| a.lsn);
        self.removed_early.retain(|r| r.0 != holder);
        self.removed_early.push((holder, acknowledged));
        self.stats.early_removals += 1;
        self.wake_all();
    }

    /// The holders of keys removed early that may still write, not knowing (I1 is not asked
    /// of them); each forgotten once it neither writes nor may again: no job under way (a
    /// start of its primary begun before it knew), its agent trusting no lease.
    pub(super) fn writing_on_removed_keys(&mut self) -> Vec<usize> {
        let now = self.now;
        let nodes = &self.nodes;
        self.removed_early.retain(|r| {
            let n = &nodes[r.0];
            let trusts = n
                .member
                .as_ref()
                .is_some_and(|m| m.lease_deadline_after(&[], Millis(n.local(now))).is_some());
            writable(&n.pg) || n.job.is_some() || trusts
        });
        self.removed_early.iter().map(|r| r.0).collect()
    }

    /// Whether a commit the holder of a key removed early (`p`) acknowledges at `lsn` is a
    /// new one to go in I4's ledger. None may come once a member promoted after it writes
    /// (`newer_writes`): that one was promoted without it, and it is lost.
    pub(super) fn new_acknowledgement_on_a_removed_key(
        &mut self,
        p: usize,
        lsn: u64,
        newer_writes: bool,
    ) -> bool {
        let Some(at) = self.removed_early.iter().position(|r| r.0 == p) else {
            return true;
        };
        if lsn <= self.removed_early[at].1 {
            return false;
        }
        if newer_writes {
            self.fail(format!(
                "I4: {} acknowledged a commit at {lsn} after its key was removed early and \
                 another member was promoted without it",
                self.nodes[p].name
            ));
        }
        self.removed_early[at].1 = lsn;
        self.stats.acknowledged_on_removed_keys += 1;
        true
    }
}
