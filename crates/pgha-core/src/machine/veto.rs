//! How long a `pre_promote` veto keeps this member out of failovers.

use super::{Member, Plan};
use crate::observe::StoreView;
use crate::types::Millis;

impl Member {
    /// A veto holds until another member leads, promoted (the failover it refused is over:
    /// one that only took the lease may still veto too), or until its hold ends (then this
    /// member may run again, and its callback is asked again).
    pub(super) fn veto_lapses(&mut self, now: Millis, cluster: &StoreView, plan: &mut Plan) {
        let Some(until) = self.vetoed_until else {
            return;
        };
        let another_leads = match cluster {
            StoreView::Up(view) => view.leader.as_ref().is_some_and(|l| {
                &l.holder != self.name()
                    && view
                        .members
                        .get(&l.holder)
                        .is_some_and(|r| r.running && !r.in_recovery)
            }),
            StoreView::Down { .. } => false,
        };
        if another_leads || now >= until {
            self.vetoed_until = None;
        } else {
            plan.wake_by(until);
        }
    }
}
