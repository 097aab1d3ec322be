//! An agent that has seen no leader since it started waits for the last one to report.

use super::Member;
use crate::observe::{ClusterView, MemberRecord};
use crate::types::MemberName;

impl Member {
    /// The last leader the store's `position` key names, when this agent has heard no leader
    /// alive since it started and that leader has not reported, as a running standby, a
    /// position read without a leader since its term: no record, a stale one, or one of a
    /// PostgreSQL not started yet (an agent's first record comes before it starts PostgreSQL
    /// to compare, and says nothing of its WAL). Member keys do not outlive a clean stop, so
    /// when every agent of a stopped cluster starts again, no record says who holds what: the
    /// first to judge would win over a last leader whose agent started a moment later, and its
    /// writes be rewound away. After every host lost power for less than a ttl, the keys are
    /// still there, a dead agent's among them: a leader key seen is no leader heard. An agent
    /// that streamed from that leader (or led) and saw it go knows it is gone, and does not
    /// wait.
    pub(crate) fn last_leader_unheard(
        &self,
        view: &ClusterView,
        mine: &MemberRecord,
    ) -> Option<MemberName> {
        if self.leader_heard {
            return None;
        }
        let leader = &view.leader_position.as_ref()?.leader;
        if leader == self.name() {
            return None;
        }
        let heard = view
            .members
            .get(leader)
            .is_some_and(|record| record.settled_after(mine.term_seen) && record.is_standby());
        (!heard).then(|| leader.clone())
    }
}
