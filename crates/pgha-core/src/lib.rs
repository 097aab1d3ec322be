//! # pgha-core: the pure decision core of pgha
//!
//! Each member of a cluster runs an agent loop on top of this crate:
//!
//! ```text
//! loop {
//!     let observation = observe();          // store view first, then local PostgreSQL
//!     let decision = member.step(&observation);
//!     log(decision.reason);                 // one line per decision (I6)
//!     execute(decision.actions);            // in order; outcomes go into the next observation
//!     sleep_until(decision.wake_at) or a store watch event or a local change;
//! }
//! ```
//!
//! The core does no I/O, reads no clock and uses no randomness: time arrives as
//! [`Observation::now`] (the agent's *monotonic* clock in [`Millis`]), so tests drive time by
//! hand and the same inputs always give the same [`Decision`].
//!
//! ## Contract of [`Member::step`]
//!
//! * **Observation.** [`Observation::cluster`] is one consistent read of the store
//!   ([`StoreView::Up`]) or [`StoreView::Down`]; [`Observation::local`] is the local PostgreSQL
//!   probed *after* the store was read; [`Observation::outcomes`] reports each earlier action
//!   result exactly once: lease results ([`Outcome::LeaderAcquired`] / `LeaderRenewed` carry the
//!   instant the request was **sent**, on the monotonic clock) and job results.
//! * **Actions** run in order. Store actions ([`Action::AcquireLeader`], `RenewLeader`,
//!   `ReleaseLeader`, `PublishMember`, `PublishSync`, `RecordHistory`, ...) and quick local ones
//!   (`SetSync`, `CreateSlots`, `DropSlots`) need no outcome except the lease ones. At most one
//!   *job* ([`Action::job`]: start, stop, promote, demote, follow, rewind, re-clone, bootstrap)
//!   is in a decision, always last; run it as a task and report [`Outcome::Job`] when done.
//!   A [`Action::Demote`] may arrive while another job runs: cancel that job and demote.
//! * **I1.** The leader trusts its lease until `sent time of last successful renew + ttl -
//!   safety_margin`; at that instant it emits `Demote`. `wake_at` is never later than that
//!   deadline, so the agent **must** step again by `wake_at`.
//! * **Reason.** Every decision has exactly one [`Reason`], whose `Display` reads as a log line.
//!
//! ## Modules
//!
//! [`types`] value types · [`config`] dynamic settings · [`observe`] observations ·
//! [`action`] actions · [`machine`] the state machine · [`election`] candidate ranking ·
//! [`rejoin`] follow/rewind/re-clone · [`restart`] decisions before the agents start · [`sync`] synchronous set · [`switchover`] requests ·
//! [`routing`] proxy routing · [`failsafe_room`] timing that may leave the failsafe no room · [`history`] history events · [`reason`] decision reasons · [`job_what`] what a job does.

pub mod action;
mod candidacy;
pub mod config;
pub mod duration_text;
pub mod election;
pub mod failsafe_room;
mod follower;
pub mod history;
pub mod job_what;
mod leader;
mod leader_promote;
mod leader_stalls;
mod leader_sync;
pub mod machine;
pub mod observe;
pub mod reason;
pub mod rejoin;
pub mod restart;
pub mod routing;
pub mod step_down;
pub mod switchover;
pub mod sync;
pub mod types;
mod vacancy;

pub use action::{Action, StartRole, StopMode};
pub use config::{ClusterConfig, CommitLevel, ConfigError, SyncMethod, SyncMode};
pub use history::{EventKind, HistoryEvent};
pub use job_what::JobWhat;
pub use machine::{Decision, FailsafeUncounted, Member, MemberSettings, DATA_DIR_STALL_MS};
pub use observe::{
    ClusterView, DataDir, FailsafeList, JobFailure, JobKind, LeaderKey, LeaderPosition, LocalPg,
    MemberRecord, Observation, Outcome, PendingSwitchover, ReplicaState, StoreView,
};
pub use reason::Reason;
pub use step_down::{StepDown, SteppedDown};
pub use switchover::{RequestKind, SwitchoverRequest};
pub use sync::{SyncApplied, SyncSet};
pub use types::{Lsn, MemberName, Millis, SystemId, Tags, Timeline, Ttl};

/// This pgha's version, published in every member record.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
