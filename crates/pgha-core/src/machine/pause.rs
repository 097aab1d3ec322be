//! Maintenance mode and fencing: a paused leader is unfenced only once the store says so, and
//! nobody takes over from a leader that lost its lease unfenced until it is known demoted.

use super::Member;
use crate::observe::ClusterView;
use crate::types::MemberName;

impl Member {
    /// Whether maintenance mode may disarm this leader's supervisor: the cluster is paused and
    /// the store already shows this leader's position, in its term, marked unfenced. Until
    /// then the deadline stays armed; once it shows, nobody takes over from this leader when
    /// its lease lapses until one of its agents reports PostgreSQL not writable
    /// (`Reason::FormerLeaderUnfenced`).
    pub fn pause_disarms_fencing(&self, view: &ClusterView) -> bool {
        let Some(revision) = self.lease_revision() else {
            return false;
        };
        view.config.paused
            && view
                .leader_position
                .as_ref()
                .is_some_and(|p| p.unfenced && &p.leader == self.name() && p.term == Some(revision))
    }
}

/// The last leader, when it published that its fencing was off (maintenance mode) and no
/// record of it shows its PostgreSQL not writable since: its lease lapsed with nothing to stop
/// its PostgreSQL (its agent gone while paused), so another member taking over would make a
/// second writer. Its agent, back, demotes it and publishes a standby's (or a stopped) record;
/// an operator's `pgha failover` is not held back.
pub(crate) fn unfenced_former_leader(me: &MemberName, view: &ClusterView) -> Option<MemberName> {
    let last = view.leader_position.as_ref().filter(|p| p.unfenced)?;
    if &last.leader == me {
        return None;
    }
    let not_writable = view
        .members
        .get(&last.leader)
        .is_some_and(|r| !r.running || r.in_recovery);
    (!not_writable).then(|| last.leader.clone())
}
