//! The members a member last formed its cluster with, and the majority of them a store that
//! lost the cluster needs before anyone leads it.

use std::collections::BTreeMap;

use super::Member;
use crate::observe::{ClusterView, DataDir, LocalPg, MemberRecord};
use crate::reason::Reason;
use crate::types::{MemberName, Millis};

impl Member {
    /// The members (this one too) this member formed its cluster with, remembered beside its
    /// data by the agent (see [`Member::peers`]).
    pub fn knows_peers(&mut self, names: impl IntoIterator<Item = MemberName>) {
        self.peers = names.into_iter().map(|n| (n, None)).collect();
    }

    /// The members with data this member has seen in a store that holds its cluster, for the
    /// agent to keep beside the data (sorted). A member absent from it for longer than
    /// `member_slots_ttl_ms` is forgotten (a host taken out of the cluster).
    pub fn peers(&self) -> Vec<MemberName> {
        self.peers.keys().cloned().collect()
    }

    /// Notes who holds data in `view`, a store that holds the cluster (its identifier).
    pub(super) fn note_peers(&mut self, view: &ClusterView, now: Millis) {
        if view.initialize.is_none() {
            return;
        }
        let me = self.name().clone();
        let forget_after = self.config.member_slots_ttl_ms;
        for (name, record) in &view.members {
            if holds_data(record) {
                self.peers.insert(name.clone(), None);
            }
        }
        self.peers.insert(me.clone(), None);
        self.peers.retain(|name, absent_since| {
            if *name == me || view.members.contains_key(name) {
                *absent_since = None;
                return true;
            }
            let since = *absent_since.get_or_insert(now);
            now.since(since) <= forget_after
        });
    }

    /// A store without the cluster's identifier lost its keys (etcd's data gone) or is another
    /// store altogether (a wrong endpoint, an etcd rebuilt beside the cluster's): alone there,
    /// a member with data would see no leader and nobody ahead of it, and promote itself beside
    /// a primary that lives on. Such a store is led again only once a majority of the members
    /// this one last formed its cluster with publish data in it (after a wipe they all do).
    pub(crate) fn without_its_peers(&self, local: &LocalPg, view: &ClusterView) -> Option<Reason> {
        if view.initialize.is_some() || local.data == DataDir::Missing || self.peers.len() < 2 {
            return None;
        }
        let present = self
            .peers
            .keys()
            .filter(|p| *p == self.name() || view.members.get(*p).is_some_and(holds_data))
            .count();
        (present * 2 <= self.peers.len()).then(|| Reason::StoreWithoutItsPeers {
            present,
            known: self.peers.keys().cloned().collect(),
        })
    }
}

/// Whether a member record shows data (a timeline, or a running PostgreSQL).
fn holds_data(record: &MemberRecord) -> bool {
    record.timeline.0 > 0 || record.running
}

/// Peers by name, with since when each has been absent from the store (None: present).
pub(crate) type Peers = BTreeMap<MemberName, Option<Millis>>;
