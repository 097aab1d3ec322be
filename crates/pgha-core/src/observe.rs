//! What a member sees at one instant: its local PostgreSQL, the store's cluster view, outcomes.

use crate::config::ClusterConfig;
use crate::history::HistoryEvent;
use crate::rejoin::TimelineSwitch;
use crate::switchover::SwitchoverRequest;
use crate::sync::{SyncApplied, SyncSet};
use crate::types::{Lsn, MemberName, Millis, SystemId, Tags, Timeline};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

mod outcome;
pub use outcome::{JobFailure, JobKind, Outcome};

/// Everything the core may know at one step. The agent builds it by reading the store first and
/// the local PostgreSQL second (so a local reading is never older than the view it comes with).
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    /// The agent's monotonic clock now.
    pub now: Millis,
    pub local: LocalPg,
    pub cluster: StoreView,
    /// Results of actions from earlier decisions, each reported exactly once.
    pub outcomes: Vec<Outcome>,
    /// The leader's timeline history (switch points), when the agent could fetch it.
    /// Without it the core falls back to the promotions recorded in the cluster history.
    pub leader_timelines: Option<Vec<TimelineSwitch>>,
    /// Failsafe (store down everywhere): this member confirmed the leader over its REST API
    /// and promised not to take the lease before this instant (own clock).
    pub failsafe_promised_until: Option<Millis>,
    /// Whether the agent could open a connection to the leader's PostgreSQL in this step;
    /// measured only while this standby is configured for the leader but not streaming
    /// (`None` otherwise). A standby that cannot reach its leader waits: a cut link is not
    /// divergence.
    pub leader_reachable: Option<bool>,
    /// An operator asked for this member's PostgreSQL to be restarted in place (`pgha restart
    /// --in-place`); the decision either restarts it or says why not now.
    pub restart_requested: bool,
    /// The agent could not write the fencing deadline the last step called for (the file
    /// system holding the lease file is full, ...): its supervisor still fences PostgreSQL at
    /// this instant (own clock), or holds none (then this is the step's instant: nothing would
    /// fence PostgreSQL). `None` when the last write succeeded.
    pub fence_stuck_at: Option<Millis>,
    /// The deadline the supervisor holds now (own clock), whoever armed it and whether or not
    /// the last write succeeded: `None` when it holds none (disarmed, or nothing written yet).
    pub fence_armed_at: Option<Millis>,
    /// Since when (own clock) the data directory's file system has not shown that it takes a
    /// write: the agent's check (one page written and synced there) in flight since then, or
    /// failing since then. `None`: its last check succeeded, or there is no data directory.
    pub data_dir_unwritable_since: Option<Millis>,
    /// The `synchronous_commit` the agent last rendered and reloaded into PostgreSQL (`None`:
    /// not yet, or its last attempt failed).
    pub commit_level_applied: Option<crate::config::CommitLevel>,
}

impl Observation {
    /// What a step at `now` knows of `local` PostgreSQL, the `cluster` and the `outcomes` of
    /// earlier jobs, and nothing more: no leader timelines, no failsafe promise, no
    /// reachability measured, no restart asked, the fencing deadline written (and none held:
    /// set [`Observation::fence_armed_at`] where the supervisor's deadline matters), the data
    /// directory taking writes, no `synchronous_commit` known to be applied.
    pub fn new(now: Millis, local: LocalPg, cluster: StoreView, outcomes: Vec<Outcome>) -> Self {
        Observation {
            now,
            local,
            cluster,
            outcomes,
            leader_timelines: None,
            failsafe_promised_until: None,
            leader_reachable: None,
            restart_requested: false,
            fence_stuck_at: None,
            fence_armed_at: None,
            data_dir_unwritable_since: None,
            commit_level_applied: None,
        }
    }
}

/// The store as this member sees it now.
#[derive(Clone, Debug, PartialEq)]
pub enum StoreView {
    Up(Box<ClusterView>),
    /// The store could not be read (timeout, partition, ...).
    Down {
        error: String,
    },
}

/// One consistent read of the cluster keys.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusterView {
    /// The `initialize` key: who bootstrapped (absent on a new cluster).
    pub initialize: Option<SystemId>,
    pub leader: Option<LeaderKey>,
    /// Live member keys (expired ones are absent).
    pub members: BTreeMap<MemberName, MemberRecord>,
    pub config: ClusterConfig,
    pub sync: SyncSet,
    /// The store revision the `sync` key was last written at (0: absent); a leader's write of
    /// the key compares it.
    pub sync_revision: u64,
    /// The store holds no `sync` key, and `sync` is the set this member last read there (etcd
    /// lost its data, or someone deleted the key): a member that never read it would take the
    /// set for empty, so the leader puts it back.
    pub sync_from_memory: bool,
    pub switchover: Option<PendingSwitchover>,
    pub history: Vec<HistoryEvent>,
    /// The `position` key: the last WAL position a leader published (it outlives the lease).
    pub leader_position: Option<LeaderPosition>,
    /// The store revision the `position` key was last written at (0: absent); a leader's
    /// write of the key compares it.
    pub position_revision: u64,
    /// The `failsafe` key: whom the leader would ask to confirm it while the store is down.
    pub failsafe: Option<FailsafeList>,
    /// The store revision the `failsafe` key was last written at (0: absent); a leader's write
    /// of the key compares it.
    pub failsafe_revision: u64,
}

/// The members a leader asks in a store outage (itself included); only they may confirm it,
/// and nobody outside the list runs for leader while the list may be in use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailsafeList {
    pub leader: MemberName,
    pub members: std::collections::BTreeSet<MemberName>,
}

impl FailsafeList {
    /// The members that would have to confirm `leader`: everyone listed but the leader.
    pub fn confirmers(&self) -> impl Iterator<Item = &MemberName> {
        self.members.iter().filter(move |m| **m != self.leader)
    }
}

/// How far a leader's WAL had come, as it last published it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderPosition {
    pub leader: MemberName,
    pub timeline: Timeline,
    pub lsn: Lsn,
    /// The term (leader key revision) it was published in (absent from older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term: Option<u64>,
    /// The leader's fencing was off when it published this (maintenance mode): its PostgreSQL
    /// may go on accepting writes after its lease expires, until its agent demotes it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unfenced: bool,
}

/// The leader key: who holds the lease, and the key's revision (constant during one term).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderKey {
    pub holder: MemberName,
    pub revision: u64,
}

/// A switchover/failover request and the revision of its key (to clear it by compare-and-set).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingSwitchover {
    pub request: SwitchoverRequest,
    pub revision: u64,
}

/// What a member publishes about itself under `members/<name>` (bound to its own lease).
/// The default is a member that publishes nothing yet: stopped, at timeline 0 and LSN 0.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    pub running: bool,
    pub in_recovery: bool,
    pub timeline: Timeline,
    /// Furthest WAL position of this member (written on a primary, received on a standby).
    pub lsn: Lsn,
    pub replay_lsn: Lsn,
    /// Whom it streams from right now (None when not streaming).
    pub streaming_from: Option<MemberName>,
    pub tags: Tags,
    /// The leader in the view this record was computed from: `None` proves that the position
    /// was read after the leader key was gone (used to confirm election candidates).
    pub leader_seen: Option<MemberName>,
    /// The newest term (leader key revision) this member knew of when it computed this record.
    /// With `leader_seen` None the position was read in the vacancy after that term; an
    /// election counts it as current only if no newer term is known ([`Self::read_after`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term_seen: Option<u64>,
    /// Free-form addresses from the member's configuration (PostgreSQL, REST API).
    pub addresses: BTreeMap<String, String>,
    /// On a PostgreSQL 17+ standby: how many synchronized logical slots a promotion would find
    /// usable. Between candidates at the same position, more wins (their consumers carry on).
    #[serde(default)]
    pub synced_slots: u32,
    /// Its promotion was not made: its `pre_promote` callback refused it, or its agent could
    /// not write its fencing deadline. No failover picks it until another member leads or the
    /// veto's hold ends ([`crate::ClusterConfig::veto_hold_ms`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub promotion_vetoed: bool,
    /// Its data directory has taken no write for [`crate::DATA_DIR_STALL_MS`] (a frozen, hung
    /// or failing disk): no failover picks it, since its promotion would wait on that disk.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub data_dir_stalled: bool,
    /// How long the failsafe promises it gave (not to take the lease) still ran when this was
    /// published, in ms (0: none). Absent from agents older than it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failsafe_promise_ms: Option<u64>,
    /// Why this member last stopped leading, until it leads again: the member that takes over
    /// says so in the history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stepped_down: Option<crate::SteppedDown>,
    /// The leader's: the synchronous settings it has in force (PostgreSQL and the store's set
    /// match them); absent while a change is under way, and on every other member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_in_force: Option<crate::sync::SyncInForce>,
    /// A standby that received nothing since its PostgreSQL started and whose replay still
    /// advances through WAL of its own (`pg_wal`, the archive): its position is a lower bound
    /// of the WAL it holds until replay stops. An election waits for it as for a stale record.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replaying_local_wal: bool,
    /// A standby that receives nothing more: no `primary_conninfo`, no WAL receiver. In a
    /// synchronous mode an election counts a position read in a vacancy only once it is final
    /// so: a standby still streaming from an old primary that writes on (its key removed
    /// early) could acknowledge commits beyond it. Absent from agents older than it (judged
    /// as before, by when the position was read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_stopped: Option<bool>,
    /// The pgha version of the agent that publishes it ([`crate::VERSION`]). Absent from
    /// agents older than the report of the settings in force, so a client can tell a leader
    /// that cannot report them (a rolling upgrade) from one that has not applied them yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pgha_version: Option<String>,
}

impl MemberRecord {
    /// Running as a standby (a possible failover candidate).
    pub fn is_standby(&self) -> bool {
        self.running && self.in_recovery
    }

    /// Whether this record was read with no leader, after `term` ended (the newest term the
    /// one judging knows): only then is its position current. A record from an earlier
    /// vacancy (its member cut off from the store since, while a newer leader came and went)
    /// may be far behind the WAL that member has now. A record without a term (published by
    /// an older pgha during a rolling upgrade) is judged by `leader_seen` alone, as before.
    pub fn read_after(&self, term: Option<u64>) -> bool {
        self.leader_seen.is_none() && (self.term_seen.is_none() || self.term_seen >= term)
    }

    /// Its position counts as its end of WAL for `term`, not a lower bound (see above).
    pub fn settled_after(&self, term: Option<u64>) -> bool {
        self.read_after(term) && !self.replaying_local_wal
    }

    /// [`Self::settled_after`], and, while a stream could still confirm commits past the
    /// position published (`streams_may_confirm`), no longer receiving.
    pub fn final_after(&self, term: Option<u64>, streams_may_confirm: bool) -> bool {
        self.settled_after(term) && !(streams_may_confirm && self.stream_stopped == Some(false))
    }
}

/// The local data directory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DataDir {
    /// Absent or empty: needs initdb or a clone.
    #[default]
    Missing,
    Present {
        system_id: SystemId,
    },
}

/// The local PostgreSQL as the agent probed it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LocalPg {
    pub data: DataDir,
    /// Postmaster up (accepting connections, unless `unresponsive`).
    pub running: bool,
    /// The postmaster lives but did not answer the probe (connection slots exhausted, an I/O
    /// stall): the role and positions are the last ones known, and nothing may be concluded
    /// from them — not "stopped", not "standby".
    pub unresponsive: bool,
    /// Unresponsive because PostgreSQL refuses new connections for want of slots (it answered
    /// "too many clients"): alive and busy, which a failover would not cure.
    pub refusing_connections: bool,
    /// `pg_is_in_recovery()` (for a stopped instance: whether `standby.signal` is present).
    pub in_recovery: bool,
    /// Every server process of the last postmaster this agent saw alive is gone, exiting, or
    /// killed past escaping (a SIGKILL pending in every thread of one blocked in the kernel,
    /// which dies as its I/O returns): none can run again, so nothing more can be committed or
    /// acknowledged here, nor WAL sent. `false` whenever that cannot be shown.
    pub killed: bool,
    /// Stopped without a shutdown checkpoint (a primary that crashed or was killed: its
    /// `pg_controldata` says "in production"): `lsn` is its last checkpoint, and WAL written
    /// after that may lie further on. Its end of WAL is unknown until crash recovery.
    pub crashed: bool,
    /// A pg_rewind of the data directory began and did not finish (it failed, or the agent or
    /// the host died meanwhile): its files may mix two histories. It must not be started nor
    /// run for leader; it is re-cloned (moved aside) from a leader.
    pub rewind_incomplete: bool,
    pub timeline: Timeline,
    /// Furthest WAL position of the data directory: `pg_current_wal_lsn()` on a primary,
    /// max(receive, replay) on a standby, the end of WAL from `pg_controldata` when stopped.
    pub lsn: Lsn,
    pub replay_lsn: Lsn,
    /// Upstream configured in `primary_conninfo`.
    pub upstream: Option<MemberName>,
    /// The WAL receiver is streaming from `upstream`.
    pub streaming: bool,
    /// A standby whose agent took `primary_conninfo` away ([`crate::Action::StopStreaming`]
    /// done, nothing configured since) and which runs no WAL receiver: it receives nothing
    /// more, so its position is final (see [`MemberRecord::stream_stopped`]).
    pub stream_stopped: bool,
    /// `synchronous_standby_names` as currently in effect.
    pub sync_applied: SyncApplied,
    /// Standbys in `pg_stat_replication` (on a primary).
    pub replicas: Vec<ReplicaState>,
    /// Physical replication slots present.
    pub slots: Vec<MemberName>,
    /// On a primary: its WAL flush position while some process waits on a WAL write or sync
    /// (None when none does). The same position for long means the disk stalled.
    pub wal_waiting_at: Option<Lsn>,
    /// On a primary: what its WAL has flushed (`pg_current_wal_flush_lsn()`), all a standby
    /// can have received (zero when not known).
    pub flushed_lsn: Lsn,
    /// On a PostgreSQL 17+ standby: its usable synchronized logical slots.
    pub synced_slots: u32,
    /// `lsn` is a lower bound: see [`MemberRecord::replaying_local_wal`].
    pub replaying_local_wal: bool,
    /// Parameters pgha owns that `ALTER SYSTEM` set (in `postgresql.auto.conf`, which
    /// PostgreSQL reads after pgha's file).
    pub altered_by_alter_system: Vec<String>,
    /// On a standby whose replay PostgreSQL paused because the primary's settings rose above
    /// its own (`max_connections`, ... raised and the primary restarted first): those
    /// settings. It replays nothing, and a promotion would shut it down, until it restarts
    /// with at least the primary's values.
    pub replay_held_by: Vec<String>,
}

impl LocalPg {
    /// Running and accepting writes.
    pub fn is_writable(&self) -> bool {
        self.running && !self.in_recovery
    }
}

/// One row of `pg_stat_replication`, keyed by `application_name` = member name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaState {
    pub name: MemberName,
    pub streaming: bool,
    pub flush_lsn: Lsn,
    pub replay_lsn: Lsn,
}
