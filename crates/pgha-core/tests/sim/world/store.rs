//! The store's clock: leases and member keys that expire, partitions that heal, outages that end,
//! and leader writes whose answers were lost landing late.

use super::*;

impl World {
    /// The store is back from an outage: its leases run again from their full TTL (etcd
    /// refreshes every lease when a new etcd leader takes over).
    pub(super) fn store_back(&mut self) {
        self.store_down_until = 0;
        let fresh = self.now + self.config.ttl_ms;
        if let Some(l) = self.store.leader.as_mut() {
            l.2 = l.2.max(fresh);
        }
        for m in self.store.members.values_mut() {
            m.1 = m.1.max(fresh);
        }
    }

    pub(super) fn expire(&mut self) {
        if self.store_down_until > 0 {
            if self.now < self.store_down_until {
                for n in &mut self.nodes {
                    n.reachable = false;
                }
                return; // a store that is down expires nothing
            }
            self.store_back();
        }
        for n in &mut self.nodes {
            if !n.reachable && n.partition_until <= self.now {
                n.reachable = true;
                n.slow_link = false;
            }
        }
        let now = self.now;
        if self.store.leader.is_some_and(|l| l.2 <= now) {
            self.store.leader = None;
            self.store.leader_gone_at = Some(now);
            self.wake_all();
        }
        let before = self.store.members.len();
        self.store.members.retain(|_, m| m.1 > now);
        if before != self.store.members.len() {
            self.wake_all();
        }
    }

    /// A leader's write of its `sync`, `failsafe` or `position` key. With the store slow, a
    /// write of any of them may land up to 3 s later, its answer
    /// lost (the core never hears of a publication: it learns from reads), in any order with
    /// the member's other writes, after its agent was killed too, and only if the key is still
    /// at the revision it compares.
    /// Whether the write landed and its answer came back.
    pub(super) fn publish(&mut self, i: usize, action: &Action) -> bool {
        let may_be_late = true;
        if may_be_late && self.slow_store && self.rng.chance(300) {
            let at = self.now + self.rng.below(3_000);
            self.late_writes.push((at, i, action.clone(), None));
            false
        } else {
            self.land(action)
        }
    }

    /// Over a slow link (a member unreachable but for its lease writes), `action` lands 1 to
    /// 2 s from now, its answer lost; whether it was sent so.
    pub(super) fn send_over_slow_link(&mut self, i: usize, action: &Action) -> bool {
        let n = &self.nodes[i];
        if n.reachable || !n.slow_link || self.store_down_until > self.now {
            return false;
        }
        let at = self.now + 1_000 + self.now % 1_000;
        let written = self.nodes[i].key_written;
        self.late_writes.push((at, i, action.clone(), written));
        true
    }

    /// Member `i`'s leader key of term `revision` renewed for `ttl` from now, if the key is
    /// still of that term (as etcd does); whether it was. Sent by a process that knew no
    /// write of the key (`written` None: it adopts it), the renewal writes the key again.
    pub(super) fn renew_key(
        &mut self,
        i: usize,
        revision: u64,
        ttl: Ttl,
        written: Option<u64>,
    ) -> bool {
        let now = self.now;
        let held = self
            .store
            .leader
            .as_mut()
            .filter(|l| l.0 == i && l.1 == revision);
        let renewed = held.map(|l| l.2 = now + ttl.millis()).is_some();
        if renewed && written.is_none() {
            self.store.leader_written += 1;
        }
        renewed
    }

    /// Member `i`'s leader key of term `revision` deleted, if the key is still of that term
    /// and, when its sender's process knew a write of it (`written`), still as written then;
    /// whether it was.
    pub(super) fn release_key(&mut self, i: usize, revision: u64, written: Option<u64>) -> bool {
        let as_written = written.is_none_or(|w| w == self.store.leader_written);
        if !as_written
            || !self
                .store
                .leader
                .is_some_and(|l| l.0 == i && l.1 == revision)
        {
            return false;
        }
        self.store.leader = None;
        self.store.leader_gone_at = Some(self.now);
        true
    }

    /// A renewal or a release sent over a slow link, landing late.
    fn land_lease_write(&mut self, i: usize, action: &Action, written: Option<u64>) {
        match action {
            Action::RenewLeader { revision, ttl } => {
                if self.renew_key(i, *revision, *ttl, written) {
                    self.stats.late_lease_writes.0 += 1;
                }
            }
            Action::ReleaseLeader { revision } => {
                if self.release_key(i, *revision, written) {
                    self.stats.late_lease_writes.1 += 1;
                    self.wake_all();
                }
            }
            _ => unreachable!("only lease writes land here"),
        }
    }

    /// With the store slow, some acquisitions of the leader key land late, their answer lost:
    /// chosen by the clock and the member, not drawn from the seed's generator (every seed
    /// keeps its draws).
    pub(super) fn acquisition_is_late(&self, i: usize) -> bool {
        self.slow_store && (self.now / 100 + i as u64) % 5 == 0
    }

    /// The leader key for `i`, if absent and while the `failsafe` key is still at
    /// `failsafe_revision`, with the list naming `i` alone (as a real store takes it, see
    /// `Store::acquire_leader`); the new term.
    pub(super) fn take_leader_key(
        &mut self,
        i: usize,
        ttl: Ttl,
        failsafe_revision: u64,
    ) -> Option<u64> {
        if self.store.leader.is_some() || self.store.failsafe_revision != failsafe_revision {
            return None;
        }
        self.store.revision += 1;
        let revision = self.store.revision;
        self.store.leader = Some((i, revision, self.now + ttl.millis()));
        self.store.leader_written += 1;
        let name = self.nodes[i].name.clone();
        self.store.failsafe = Some(FailsafeList {
            leader: name.clone(),
            members: [name].into(),
        });
        self.store.failsafe_revision = revision;
        Some(revision)
    }

    /// Late writes whose time came land while the store is up.
    pub(super) fn land_late_writes(&mut self) {
        if self.store_down_until > self.now {
            return;
        }
        let now = self.now;
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.late_writes)
            .into_iter()
            .partition(|w| w.0 <= now);
        self.late_writes = later;
        for (_, i, action, written) in due {
            if let Action::AcquireLeader {
                ttl,
                failsafe_revision,
            } = action
            {
                // the member hears of it only from its next read (an adopted key)
                if let Some(revision) = self.take_leader_key(i, ttl, failsafe_revision) {
                    self.store.late_won = Some((i, revision));
                    self.late_won_vetoed = self.vetoed_when_sent.remove(&i).unwrap_or_default();
                    self.stats.late_acquisitions.0 += 1;
                    self.wake_all();
                } else if self.store.leader.is_none() {
                    self.stats.late_acquisitions.2 += 1;
                }
            } else if matches!(
                action,
                Action::RenewLeader { .. } | Action::ReleaseLeader { .. }
            ) {
                self.land_lease_write(i, &action, written);
            } else if self.land(&action) {
                self.store.revision += 1;
                self.wake_all();
            }
        }
    }

    /// Puts a leader's write in the store if its term still holds; whether it did.
    fn land(&mut self, action: &Action) -> bool {
        let (Action::PublishSync {
            leader_revision, ..
        }
        | Action::PublishFailsafe {
            leader_revision, ..
        }
        | Action::PublishPosition {
            leader_revision, ..
        }) = action
        else {
            unreachable!("only a leader's writes land here")
        };
        if self.store.leader.is_none_or(|l| l.1 != *leader_revision) {
            return false;
        }
        // The set and the list land only on the key's revision they were decided on.
        let key_moved = match action {
            Action::PublishSync { key_revision, .. } => self.store.sync_revision != *key_revision,
            Action::PublishFailsafe { key_revision, .. } => {
                self.store.failsafe_revision != *key_revision
            }
            Action::PublishPosition { key_revision, .. } => {
                self.store.position_revision != *key_revision
            }
            _ => false,
        };
        if key_moved {
            return false;
        }
        match action {
            Action::PublishSync { set, .. } => {
                self.store.revision += 1;
                self.store.sync = set.clone();
                self.store.sync_revision = self.store.revision;
            }
            Action::PublishFailsafe { list, .. } => {
                self.store.revision += 1;
                self.store.failsafe = Some(list.clone());
                self.store.failsafe_revision = self.store.revision;
            }
            Action::PublishPosition { position, .. } => {
                self.store.revision += 1;
                self.store.position = Some(position.clone());
                self.store.position_revision = self.store.revision;
            }
            _ => unreachable!(),
        }
        true
    }
}
