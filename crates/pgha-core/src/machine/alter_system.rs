//! Settings pgha owns that `ALTER SYSTEM` changed: reset.

use super::{Member, Plan};
use crate::action::Action;
use crate::observe::Observation;

impl Member {
    /// The settings pgha owns are pgha's: one `ALTER SYSTEM` set is reset while PostgreSQL
    /// runs and no job is under way (not while the cluster is paused: hands off).
    pub(super) fn undo_alter_system(&self, obs: &Observation, plan: &mut Plan) {
        let altered = &obs.local.altered_by_alter_system;
        let busy = plan.actions.iter().any(|a| a.job().is_some()) || self.job.is_some();
        if altered.is_empty() || !obs.local.running || busy || self.config.paused {
            return;
        }
        plan.push(Action::UndoAlterSystem {
            parameters: altered.clone(),
        });
    }
}
