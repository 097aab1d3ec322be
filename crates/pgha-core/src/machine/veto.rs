//! How long a `pre_promote` veto keeps this member out of failovers.

use super::{Member, Plan};
use crate::observe::StoreView;
use crate::types::Millis;

impl Member {
    /// A veto holds until another member leads (the failover it refused is over) or until its
    /// hold ends (then this member may run again, and its callback is asked again).
    pub(super) fn veto_lapses(&mut self, now: Millis, cluster: &StoreView, plan: &mut Plan) {
        let Some(until) = self.vetoed_until else {
            return;
        };
        let another_leads = match cluster {
            StoreView::Up(view) => view
                .leader
                .as_ref()
                .is_some_and(|l| &l.holder != self.name()),
            StoreView::Down { .. } => false,
        };
        if another_leads || now >= until {
            self.vetoed_until = None;
        } else {
            plan.wake_by(until);
        }
    }
}
