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

    /// A ttl just lowered, one time in two: the store stops answering the leader (an etcd
    /// leader stalled, from its side) before it renews on the new ttl, then removes its key
    /// (as that etcd leader resumes): its trust still runs on the old one.
    pub(super) fn stall_then_remove_after_lowering(&mut self) {
        let Some((holder, _, _)) = self.store.leader else {
            return;
        };
        if !self.rng.chance(500) {
            return;
        }
        let n = &mut self.nodes[holder];
        n.reachable = false;
        n.slow_link = false;
        n.partition_until = n
            .partition_until
            .max(self.now + 2_000 + self.rng.below(6_000));
        self.removal_due = Some(self.now + 300 + self.rng.below(2_500));
    }

    /// The removal [`World::stall_then_remove_after_lowering`] set, once it is due.
    pub(super) fn remove_key_if_due(&mut self) {
        if self.removal_due.is_some_and(|at| at <= self.now) {
            self.removal_due = None;
            self.remove_key_early();
        }
    }

    /// The leader key removed now, whatever its lease says; its holder is not told. A standby
    /// streaming from it in three has its startup process held for up to 15 s (a query's
    /// lock, within `max_standby_streaming_delay`'s default 30 s): its receiver cannot be
    /// ended meanwhile, and goes on confirming.
    pub(super) fn remove_key_early(&mut self) {
        let Some((holder, _, _)) = self.store.leader else {
            return;
        };
        for i in 0..self.nodes.len() {
            let pg = &self.nodes[i].pg;
            if pg.upstream == Some(holder) && pg.streaming && self.rng.chance(333) {
                self.nodes[i].receiver_held_until = self.now + self.rng.below(15_000);
            }
        }
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
