//! What became of the actions of earlier decisions: leases asked for, jobs run, as the next
//! observation carries them to the core.

use crate::types::Millis;
use serde::{Deserialize, Serialize};

/// Which long-running local action a job outcome is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    Bootstrap,
    Start,
    Stop,
    Restart,
    Promote,
    Demote,
    Follow,
    /// Take `primary_conninfo` away and wait for the WAL receiver to end (a standby during a
    /// vacancy, synchronous modes): see [`crate::Action::StopStreaming`].
    StopStreaming,
    Rewind,
    Reclone,
}

/// The result of an action of an earlier decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `AcquireLeader` succeeded; `requested_at` is when the request was *sent* (own clock);
    /// `ttl` is the TTL of the lease the store bound the key to.
    LeaderAcquired {
        requested_at: Millis,
        revision: u64,
        ttl: crate::types::Ttl,
    },
    /// `RenewLeader` succeeded; `requested_at` is when the request was *sent* (own clock);
    /// `ttl` is the TTL the lease runs with now, as the store reports it (the one asked
    /// for once the store has re-granted it: trust never outlives the store's real lease).
    LeaderRenewed {
        requested_at: Millis,
        revision: u64,
        ttl: crate::types::Ttl,
    },
    /// The store answered that the key is not (or no longer) ours.
    LeaderRefused,
    /// The store did not answer (timeout, unreachable): nothing is known.
    LeaderUnknown,
    /// Failsafe: with the store unreachable, every member of the failsafe list confirmed this
    /// leader over its REST API, each promising not to take the lease for some time;
    /// `promised_ms` is the shortest of those promises (each member promises its own view of
    /// the ttl, which a live change may have left different from this leader's), and
    /// `requested_at` when the confirmations were asked for (own clock).
    FailsafeConfirmed {
        requested_at: Millis,
        promised_ms: u64,
    },
    /// A job finished: `Ok`, or why not.
    Job {
        kind: JobKind,
        result: Result<(), JobFailure>,
    },
}

/// Why a job did not do what it was for.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JobFailure {
    /// It failed: the error, as the agent logs it.
    #[error("{0}")]
    Failed(String),
    /// The `pre_promote` callback refused the promotion (its exit status and output): the
    /// member lets go of the lease, and the next candidate is picked without it.
    #[error("vetoed by the pre_promote callback: {0}")]
    Vetoed(String),
    /// The agent could not write the deadline its supervisor fences PostgreSQL by, so the job
    /// (a promotion, a primary's start) was not begun: without that deadline nothing would
    /// stop the primary should this agent die or pause. Held out of failovers like a veto.
    #[error("the fencing deadline could not be written ({0}), so the supervisor could not fence a primary here")]
    Unfenced(String),
    /// A re-clone was not begun: the member's file system lacks the room for a copy beside
    /// the data it would move aside. The data stays in place; the member waits for room.
    #[error("{0}")]
    NoRoom(String),
    /// A rewind could not reach its source before it changed anything here: that says nothing
    /// of this member's data (no divergence shown), so the rewind is tried again, no re-clone.
    #[error("{0}")]
    SourceUnreachable(String),
    /// Not begun: an action it relies on, earlier in the same decision, failed (the set
    /// publication or the synchronous setting before a promotion). Nothing was done; the core
    /// decides again.
    #[error("not begun: {0}")]
    NotBegun(String),
}

impl JobFailure {
    /// The member must stay out of failovers for a while: a veto, or no way to fence itself.
    pub fn holds_out(&self) -> bool {
        matches!(self, JobFailure::Vetoed(_) | JobFailure::Unfenced(_))
    }
}

impl From<&str> for JobFailure {
    fn from(error: &str) -> Self {
        JobFailure::Failed(error.to_string())
    }
}

impl From<String> for JobFailure {
    fn from(error: String) -> Self {
        JobFailure::Failed(error)
    }
}
