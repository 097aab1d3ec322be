//! A data directory that takes no write: its member leaves the failovers until it does.

use super::{Member, Plan};
use crate::observe::Observation;

/// How long a data directory may go without taking a write (one page written and synced by
/// its agent) before its member counts as stalled: no failover picks it, since a promotion
/// there (`pg_ctl promote` writes a file, the end of recovery a checkpoint) would wait on the
/// disk. A healthy disk syncs a page in milliseconds, a busy one within a second or two; a
/// frozen, hung or failing one (`EIO`, remounted read-only, full) never does.
pub const DATA_DIR_STALL_MS: u64 = 4_000;

impl Member {
    /// Notes whether this member's data directory has been unwritable for
    /// [`DATA_DIR_STALL_MS`] (published in its record), and wakes when it would be.
    pub(super) fn note_data_dir(&mut self, obs: &Observation, plan: &mut Plan) {
        self.data_dir_stalled = match obs.data_dir_unwritable_since {
            Some(since) if obs.now.since(since) >= DATA_DIR_STALL_MS => true,
            Some(since) => {
                plan.wake_by(since.plus(DATA_DIR_STALL_MS));
                false
            }
            None => false,
        };
    }
}
