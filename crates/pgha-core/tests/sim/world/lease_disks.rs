//! Lease files that cannot be written: the supervisor keeps its deadline, the agent says so.

use super::*;

impl Node {
    /// Writes the supervisor's deadline as pgha-agent's `fence.rs` does: while the file system
    /// holding the lease file is full a write fails and the supervisor keeps the deadline it
    /// holds; one left as it is needs no write, and counts as written. (The disarms of jobs
    /// that start a standby always succeed here: in pgha-agent such a start fails instead,
    /// which errs the same way for I1.)
    pub(super) fn write_fence(&mut self, wanted: Option<u64>, now: u64) {
        let full = self.lease_disk_full_until > now;
        self.fence_write_failed = full && wanted != self.fence_at;
        if !full {
            self.fence_at = wanted;
        }
    }
}

impl World {
    /// Runs in which the file system holding a member's lease file fills up now and then,
    /// among the other faults (live ttl changes, agents killed: a ttl lowered while a leader's
    /// deadline cannot be moved must not leave it past the store's expiry).
    pub fn with_full_lease_disks(mut self) -> World {
        self.full_lease_disks = true;
        self
    }

    /// Member `i`'s lease file takes no write until `until` (the leader's instead, one time
    /// in two); one time in three the ttl changes live at the same moment (both by the clock,
    /// not drawn: every seed keeps its draws).
    pub(super) fn fill_lease_disk(&mut self, i: usize, until: u64) {
        let tick = self.now / TICK;
        let i = match self.store.leader {
            Some((leader, _, _)) if tick % 4 < 2 => leader,
            _ => i,
        };
        if tick % 3 == 0 {
            self.change_ttl();
        }
        let n = &mut self.nodes[i];
        n.lease_disk_full_until = n.lease_disk_full_until.max(until);
        self.stats.full_lease_disks += 1;
    }
}
