//! The one typed reason every decision carries (I6), written to read well in a log line.

use crate::election::Ineligible;
use crate::history::EventKind;
use crate::job_what::JobWhat;
use crate::switchover::Refusal;
use crate::types::{Lsn, MemberName, SystemId, Timeline};

mod text;
mod timeless;

/// Why the member did what it did in one step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    // store trouble and fencing (I1)
    StoreDown {
        error: String,
    },
    StoreDownLeaseTrusted {
        remaining_ms: u64,
    },
    LeaseExpiredDemoting,
    LapsedLeaseReleased,
    /// The lease of `term` lapsed here while the store did not answer, and PostgreSQL no
    /// longer writes: its key is released without being read.
    LapsedLeaseReleasedUnseen {
        term: u64,
    },
    /// The key landed from an acquisition whose answer was lost, after this member had
    /// decided not to run any more: released, the election decides.
    WithdrawnAcquisitionReleased,
    /// The key under this member's name was adopted with its PostgreSQL a standby (its agent
    /// restarted after its election), and it is tagged nofailover now: released, never
    /// promoted on.
    AdoptedKeyReleasedNoFailover,
    WritableWithoutLease,
    AdoptingLease {
        new_cluster: bool,
    },
    LeaderKeyLost,
    /// The store's record of this member's name names other addresses: another agent runs
    /// under this name.
    NameTaken {
        theirs: String,
        ours: String,
    },
    SystemIdMismatch {
        store: SystemId,
        local: SystemId,
    },
    Paused,
    JobRunning {
        job: JobWhat,
        for_ms: u64,
    },
    // bootstrap
    RacingToBootstrap,
    /// No cluster in the store, but a member has data (or this one belonged to a cluster):
    /// the store lost its keys. A member without data never initialises another cluster then; it waits
    /// for a leader to clone from.
    /// The store does not hold the cluster, and too few of the members this one formed it
    /// with publish data there.
    StoreWithoutItsPeers {
        present: usize,
        known: Vec<MemberName>,
    },
    StoreLostItsCluster {
        with_data: Option<MemberName>,
    },
    Bootstrapping,
    WaitingForLeaderToClone,
    LeaderWithoutData,
    // leader
    Leading {
        standbys: usize,
    },
    RestartingPrimary {
        down_ms: u64,
    },
    PostgresUnresponsive {
        for_ms: u64,
    },
    /// A primary whose WAL has not reached its disk past `flushed` for a while.
    WalFlushStalled {
        for_ms: u64,
        flushed: Lsn,
    },
    LeaderUnreachable {
        leader: MemberName,
        for_ms: u64,
    },
    OutsideFailsafeList {
        leader: MemberName,
    },
    PrimaryUnresponsiveDemoting {
        for_ms: u64,
    },
    UnresponsivePrimaryDemoted,
    UnresponsivePrimaryKilled,
    /// The lease holder's data directory took no write while it promoted: giving the
    /// promotion up (see `Member::give_up_promotion_on_stalled_disk`).
    PromotionStalledOnDisk,
    StalledPromotionKilled,
    WaitingForRoom {
        why: String,
    },
    FenceStuckDemoting {
        fenced_in_ms: u64,
    },
    FenceStuckHandedOver,
    PrimaryNotRestartable {
        down_ms: u64,
    },
    SyncPrimaryDownHandingOver,
    FailsafePromise {
        remaining_ms: u64,
    },
    WaitingForLeaderToPromote {
        leader: MemberName,
    },
    Promoting {
        kind: EventKind,
    },
    Promoted {
        kind: EventKind,
    },
    PromoteFailed {
        error: String,
    },
    PromoteFailedStopping {
        error: String,
    },
    PromotionVetoed {
        why: String,
        hold_ms: u64,
    },
    RestartingInPlace {
        role: crate::action::StartRole,
    },
    SwitchoverRefused(Refusal),
    SwitchoverDemoting {
        target: Option<MemberName>,
    },
    SwitchoverHandedOff {
        target: Option<MemberName>,
    },
    // standby
    DemotingForLeader {
        leader: MemberName,
    },
    CloningFrom {
        source: MemberName,
    },
    StoppingForRewind {
        leader: MemberName,
    },
    Rewinding {
        leader: MemberName,
    },
    RecloningAfterFailedRewind {
        source: MemberName,
    },
    /// A rewind succeeded yet the member came back on the timeline it had diverged on.
    RecloningAfterIneffectiveRewind {
        source: MemberName,
        timeline: Timeline,
    },
    RewindFailedRecloneDisabled,
    Following {
        leader: MemberName,
    },
    Streaming {
        leader: MemberName,
    },
    RestartingForPrimarySettings {
        settings: Vec<String>,
    },
    NotStreaming {
        leader: MemberName,
        for_ms: u64,
    },
    LeaderNotPublished {
        leader: MemberName,
    },
    CloneFailing {
        failures: u32,
        retry_in_ms: u64,
    },
    StartFailing {
        failures: u32,
    },
    // election
    StartingToElect,
    /// Without a leader, synchronous mode: this standby stops streaming before its position
    /// counts (see [`crate::Action::StopStreaming`]).
    StoppingStream,
    /// Without a leader, a data directory whose pg_rewind did not finish is not started (its
    /// position means nothing): it waits for a leader to re-clone from.
    RewindIncompleteWaitingForLeader,
    Acquiring {
        kind: EventKind,
    },
    Behind {
        best: MemberName,
    },
    WaitingForPositions {
        unconfirmed: Vec<MemberName>,
        /// Those of them that still replay WAL of their own since a restart.
        replaying: Vec<MemberName>,
    },
    /// This agent has seen no leader since it started, and the last leader the store names has
    /// not said where it is: it may have started a moment later than this one.
    WaitingForLastLeader {
        leader: MemberName,
    },
    QuorumIncomplete {
        confirmed: usize,
        needed: usize,
        /// Set members not counted because they still replay WAL of their own since a
        /// restart (see [`crate::MemberRecord::replaying_local_wal`]).
        replaying: Vec<MemberName>,
    },
    NotEligible(Ineligible),
    IneligibleAhead {
        member: MemberName,
        why: Ineligible,
    },
    WaitingForSwitchoverTarget {
        target: Option<MemberName>,
    },
    CatchingUpForSwitchover {
        replayed: Lsn,
        needed: Lsn,
    },
    PausedWithoutLeader,
    /// The last leader published that its fencing was off (paused), and no agent of it says
    /// its PostgreSQL stopped accepting writes since: taking over could make a second writer.
    FormerLeaderUnfenced {
        leader: MemberName,
    },
}
