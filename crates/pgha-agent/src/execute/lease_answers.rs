//! The store's answers to an acquisition or renewal of the leader key: an outcome for the next
//! step, and the term this agent holds (what leaving may release).

use pgha_core::{Millis, Outcome};
use pgha_store::StoreError;

use crate::agent::Agent;

impl Agent {
    /// Records the store's answer to an acquisition or renewal for the next step, and the
    /// term it held if it did (what leaving may release, see `leave.rs`). A refusal says
    /// nothing here: etcd refuses a renewal whose lease lapsed while the key is still ours.
    pub(crate) fn lease_answered(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::LeaderAcquired { revision, .. } | Outcome::LeaderRenewed { revision, .. } => {
                self.held_term = Some(revision)
            }
            _ => {}
        }
        self.outcomes.push(outcome);
    }
}

pub(super) fn lease_outcome(
    result: Result<(u64, pgha_core::Ttl), StoreError>,
    sent: Millis,
    acquire: bool,
) -> Outcome {
    match result {
        Ok((revision, ttl)) if acquire => Outcome::LeaderAcquired {
            requested_at: sent,
            revision,
            ttl,
        },
        Ok((revision, ttl)) => Outcome::LeaderRenewed {
            requested_at: sent,
            revision,
            ttl,
        },
        Err(StoreError::Conflict { .. }) => Outcome::LeaderRefused,
        Err(_) => Outcome::LeaderUnknown,
    }
}
