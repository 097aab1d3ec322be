//! The store's clock: leases and member keys that expire, partitions that heal, outages that end.

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
}
