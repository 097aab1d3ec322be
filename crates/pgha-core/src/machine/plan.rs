//! A decision being built: the actions in order (one job at most) and the earliest wake-up.

use crate::action::Action;
use crate::history::EventKind;
use crate::types::Millis;

/// Builds a decision: collects actions, keeps the earliest wake-up.
pub(crate) struct Plan {
    pub actions: Vec<Action>,
    pub wake_at: Millis,
    /// The promotion this step recorded as done (see `record_promotion_if_done`).
    pub promoted: Option<EventKind>,
}

impl Plan {
    pub fn push(&mut self, action: Action) {
        if let Some(kind) = action.job() {
            debug_assert!(
                self.actions.iter().all(|a| a.job().is_none()),
                "second job {kind:?} in one decision"
            );
        }
        self.actions.push(action);
    }
    pub fn wake_by(&mut self, at: Millis) {
        self.wake_at = self.wake_at.min(at);
    }
}
