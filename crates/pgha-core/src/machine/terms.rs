//! The newest term this member knows of: what tells a position read in this vacancy from one
//! read in an earlier one.

use super::Member;
use crate::observe::{ClusterView, PendingSwitchover};

impl Member {
    /// The newest term (leader key revision) in this member's memory or anywhere in `view`:
    /// the leader key, the `position` key, and the terms other members' records saw. With no
    /// leader in `view`, every one of them has ended.
    pub(crate) fn newest_term_in(&self, view: &ClusterView) -> Option<u64> {
        let leader = view.leader.as_ref().map(|l| l.revision);
        let position = view.leader_position.as_ref().and_then(|p| p.term);
        let records = view.members.values().filter_map(|r| r.term_seen);
        leader
            .into_iter()
            .chain(position)
            .chain(records)
            .fold(self.newest_term, |newest, term| newest.max(Some(term)))
    }

    /// Whether `pending` was written before a term this member knows of began: the leader key
    /// it read last, or the `position` key the leader of a term publishes. A request is made
    /// to the leader of its term; after that term it would let its target take over out of
    /// turn (ahead of members with more WAL) in a vacancy it was never meant for.
    pub(crate) fn predates_a_later_term(
        &self,
        view: &ClusterView,
        pending: &PendingSwitchover,
    ) -> bool {
        let position = view.leader_position.as_ref().and_then(|p| p.term);
        [self.term_last_read, position]
            .into_iter()
            .flatten()
            .any(|term| term > pending.revision)
    }
}
