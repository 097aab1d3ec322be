//! How each [`Reason`] reads in a log line and in `pgha status`.

use super::Reason;
use crate::election::Ineligible;
use crate::types::MemberName;
use std::fmt;

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Reason::*;
        match self {
            StoreDown { error } => write!(f, "store unreachable ({error}); keeping current role"),
            StoreDownLeaseTrusted { remaining_ms } => write!(
                f,
                "store unreachable; lease still trusted for {remaining_ms} ms, then demoting"
            ),
            LeaseExpiredDemoting => write!(f, "leader lease not renewed in time: demoting"),
            LapsedLeaseReleased => write!(
                f,
                "leader key of a lease that lapsed here released: the election decides who leads"
            ),
            LapsedLeaseReleasedUnseen { term } => write!(
                f,
                "store unreachable, the lease lapsed here and PostgreSQL no longer writes: \
                 releasing the leader key of term {term} unseen (renewals that land late could \
                 keep it a ttl longer), so the election need not wait it out"
            ),
            WritableWithoutLease => write!(f, "writable without the leader lease: demoting"),
            WithdrawnAcquisitionReleased => write!(
                f,
                "leader key taken by an acquisition whose answer was lost, landed after this \
                 member had stopped running (its election moved on): released, the election \
                 decides who leads"
            ),
            AdoptedKeyReleasedNoFailover => write!(
                f,
                "leader key under this member's name from before (its agent restarted after its \
                 election), its PostgreSQL a standby, and it is tagged nofailover now: released \
                 unpromoted, the election decides who leads"
            ),
            AdoptingLease { new_cluster: false } => {
                write!(f, "leader key is ours from before: renewing to adopt it")
            }
            // The key was given to it (by `pgha up`) to bootstrap a cluster without data.
            AdoptingLease { new_cluster: true } => write!(
                f,
                "new cluster: the leader key was given to this member to bootstrap it; renewing it"
            ),
            LeaderKeyLost => write!(f, "leader key no longer ours"),
            NameTaken { theirs, ours } => write!(
                f,
                "this member's name is taken: the store's record under it names {theirs}, this \
                 member is {ours}. Another agent runs under this name (a configuration copied \
                 without changing member.name?): this one takes no lease, publishes nothing and \
                 runs for nothing until that record expires; give each member a name of its own"
            ),
            SystemIdMismatch { store, local } => write!(
                f,
                "data directory belongs to system {local}, cluster is {store}: refusing to act"
            ),
            Paused => write!(f, "cluster paused: no automatic action"),
            JobRunning { job, for_ms } => write!(f, "{job} running for {for_ms} ms"),
            RacingToBootstrap => write!(f, "new cluster: racing for the leader key to bootstrap"),
            StoreWithoutItsPeers { present, known } => write!(
                f,
                "the store does not hold this cluster (its keys lost, or another store: check \
                 the etcd endpoints), and only {present} of the {} members it was formed with \
                 ({}) publish data there: nobody leads it until a majority does",
                known.len(),
                known
                    .iter()
                    .map(|n| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            StoreLostItsCluster { with_data } => match with_data {
                Some(m) => write!(
                    f,
                    "no cluster in the store, but {m} has data: the store lost its keys? not \
                     initialising another cluster; waiting for a leader to clone from"
                ),
                None => write!(
                    f,
                    "no cluster in the store, but this member belonged to one: the store lost \
                     its keys? not initialising another cluster; waiting for a leader to clone \
                     from"
                ),
            },
            Bootstrapping => write!(f, "leader of a new cluster: bootstrapping"),
            WaitingForLeaderToClone => write!(f, "no data yet: waiting for a leader to clone"),
            LeaderWithoutData => write!(f, "leader without a data directory: releasing the lease"),
            Leading { standbys } => write!(f, "leading with {standbys} streaming standbys"),
            RestartingPrimary { down_ms } => {
                write!(f, "primary PostgreSQL down for {down_ms} ms: restarting it")
            }
            WaitingForLeaderToPromote { leader } => write!(
                f,
                "{leader} holds the lease but is not a running primary yet: waiting before deciding follow or rewind"
            ),
            FailsafePromise { remaining_ms } => write!(
                f,
                "no leader, but we confirmed the old one while the store was down: not taking the lease for {remaining_ms} ms"
            ),
            SyncPrimaryDownHandingOver => write!(
                f,
                "primary PostgreSQL down in a synchronous mode: handing the lease to a synchronous \
                 standby (a restart could show commits no standby confirmed)"
            ),
            OutsideFailsafeList { leader } => write!(
                f,
                "not in {leader}'s failsafe list: not running for leader while the listed members \
                 could still be confirming {leader} (none of them has read the store with no leader \
                 and seen the promises it gave run out)"
            ),
            LeaderUnreachable { leader, for_ms } => write!(
                f,
                "not streaming from {leader} for {for_ms} ms and its PostgreSQL cannot be reached: \
                 waiting (a cut link is not divergence; nothing is rewound)"
            ),
            PostgresUnresponsive { for_ms } => write!(
                f,
                "PostgreSQL runs but has not answered for {for_ms} ms (connection slots \
                 exhausted? I/O stalled?): waiting, nothing concluded from it"
            ),
            WalFlushStalled { for_ms, flushed } => write!(
                f,
                "primary's WAL has not reached its disk for {for_ms} ms (flushed up to {flushed}, \
                 more waiting: disk stalled?); commits wait; demoting past \
                 primary_start_timeout_ms"
            ),
            PrimaryUnresponsiveDemoting { for_ms } => write!(
                f,
                "primary PostgreSQL unresponsive for {for_ms} ms (over primary_start_timeout_ms): \
                 demoting it; the lease goes once none of its processes can run again, or runs \
                 out"
            ),
            UnresponsivePrimaryDemoted => write!(
                f,
                "unresponsive primary demoted: releasing the lease for failover"
            ),
            UnresponsivePrimaryKilled => write!(
                f,
                "every process of the unresponsive primary killed, none able to run again (those \
                 blocked on the disk die as their I/O returns): releasing the lease for failover \
                 now rather than letting it run out"
            ),
            PromotionStalledOnDisk => write!(
                f,
                "its data directory has taken no write for {} ms or more while it promotes (a \
                 stalled or failing disk: the promotion waits on it): demoting, and releasing \
                 the lease once none of its PostgreSQL's processes can run again, for a member \
                 whose disk takes writes",
                crate::DATA_DIR_STALL_MS
            ),
            StalledPromotionKilled => write!(
                f,
                "every process of its PostgreSQL, whose promotion waited on a stalled disk, \
                 killed, none able to run again (those blocked on the disk die as their I/O \
                 returns): releasing the lease for failover"
            ),
            WaitingForRoom { why } => write!(f, "{why}; waiting a ttl before trying again"),
            FenceStuckDemoting { fenced_in_ms } => write!(
                f,
                "cannot write the fencing deadline, and the supervisor fences PostgreSQL in \
                 {fenced_in_ms} ms at the one it holds: stopping it cleanly first, to hand over"
            ),
            FenceStuckHandedOver => write!(
                f,
                "primary demoted, its fencing deadline unwritable: releasing the lease for \
                 failover; out of failovers until another member leads"
            ),
            PrimaryNotRestartable { down_ms } => write!(
                f,
                "primary PostgreSQL down for {down_ms} ms: releasing the lease for failover"
            ),
            Promoting { kind } => write!(f, "lease acquired: promoting ({kind:?})"),
            Promoted { kind } => write!(f, "promoted ({kind:?}); recording history"),
            PromoteFailed { error } => write!(f, "promote failed ({error}): releasing the lease"),
            PromoteFailedStopping { error } => write!(
                f,
                "promote failed ({error}) with PostgreSQL still running, where the promotion \
                 may yet complete: stopping it before releasing the lease"
            ),
            RestartingInPlace { role } => write!(
                f,
                "restarting PostgreSQL in place as {} (asked by `pgha restart --in-place`)",
                match role {
                    crate::action::StartRole::Primary => "the primary, keeping the lease",
                    crate::action::StartRole::Standby { .. } => "a standby",
                }
            ),
            PromotionVetoed { why, hold_ms } => write!(
                f,
                "promotion not made ({why}): releasing the lease; out of failovers until another \
                 member leads, for {} s at most",
                hold_ms / 1000
            ),
            SwitchoverRefused(why) => write!(f, "switchover refused: {why}"),
            SwitchoverDemoting { target } => {
                write!(f, "switchover to {}: demoting first", name_or_best(target))
            }
            SwitchoverHandedOff { target } => {
                write!(
                    f,
                    "switchover: demoted, lease released for {}",
                    name_or_best(target)
                )
            }
            DemotingForLeader { leader } => write!(f, "{leader} holds the lease: demoting"),
            CloningFrom { source } => write!(f, "no data directory: cloning from {source}"),
            StoppingForRewind { leader } => {
                write!(f, "WAL diverged from {leader}: stopping to rewind")
            }
            Rewinding { leader } => write!(f, "WAL diverged from {leader}: running pg_rewind"),
            RecloningAfterFailedRewind { source } => write!(
                f,
                "rewind failed or did not finish: re-cloning from {source} (old data directory \
                 moved aside)"
            ),
            RecloningAfterIneffectiveRewind { source, timeline } => write!(
                f,
                "pg_rewind changed nothing: the member came back on timeline {timeline}, where it \
                 could not stream (the WAL it needs may be gone from its upstream, its slot \
                 invalidated by max_slot_wal_keep_size; or PostgreSQL 15 and older read the \
                 timeline from the last checkpoint, and miss a promotion none followed yet, \
                 such as one made by hand): re-cloning from {source} (old data directory moved \
                 aside)"
            ),
            RewindFailedRecloneDisabled => {
                write!(
                    f,
                    "rewind failed or did not finish and allow_reclone is off: staying stopped"
                )
            }
            Following { leader } => write!(f, "configuring as standby of {leader}"),
            Streaming { leader } => write!(f, "streaming from {leader}"),
            RestartingForPrimarySettings { settings } => write!(
                f,
                "replay paused by PostgreSQL: the primary runs with a higher {} than this \
                 standby; restarting it with the primary's values",
                settings.join(", ")
            ),
            NotStreaming { leader, for_ms } => {
                write!(
                    f,
                    "configured for {leader} but not streaming for {for_ms} ms"
                )
            }
            LeaderNotPublished { leader } => {
                write!(f, "waiting for leader {leader} to publish its state")
            }
            CloneFailing {
                failures,
                retry_in_ms,
            } => write!(
                f,
                "no usable data directory, and the last {failures} clones failed (see the job's \
                 error): trying again in {retry_in_ms} ms"
            ),
            StartFailing { failures } => {
                write!(f, "PostgreSQL failed to start {failures} times; retrying")
            }
            StartingToElect => write!(f, "no leader: starting PostgreSQL as standby to compare"),
            StoppingStream => write!(
                f,
                "no leader: stopping this standby's WAL stream, so that its position is final \
                 when compared (a primary still writing can have nothing more acknowledged \
                 through it)"
            ),
            RewindIncompleteWaitingForLeader => write!(
                f,
                "no leader, and a pg_rewind of the data directory did not finish: not starting \
                 it, waiting for a leader to re-clone from"
            ),
            Acquiring { kind } => write!(f, "best candidate: acquiring the lease ({kind:?})"),
            Behind { best } => write!(f, "no leader; {best} is the better candidate"),
            WaitingForPositions {
                unconfirmed,
                replaying,
            } => {
                write!(f, "no leader; waiting for fresh positions from ")?;
                write_names(f, unconfirmed)?;
                still_replaying(f, replaying)
            }
            WaitingForLastLeader { leader } => write!(
                f,
                "no leader, and none heard since this agent started: waiting for {leader}, \
                 which led last (the store's position key), to report its position (at most a \
                 ttl)"
            ),
            QuorumIncomplete {
                confirmed,
                needed,
                replaying,
            } => {
                write!(
                    f,
                    "no leader; {confirmed} of {needed} synchronous members confirmed: each \
                     commit is on some of the set, no telling which, so the others' positions \
                     are waited for (`pgha failover --to NAME` promotes one by hand, losing \
                     what it lacks)"
                )?;
                still_replaying(f, replaying)
            }
            NotEligible(why @ Ineligible::Lagging { .. }) => write!(
                f,
                "no leader; not eligible: {why} (`pgha failover --to NAME --force` promotes it \
                 by hand, losing what it lacks)"
            ),
            NotEligible(why @ Ineligible::OutsideSyncSet) => write!(
                f,
                "no leader; not eligible: {why} (`pgha failover --to NAME --allow-data-loss` \
                 promotes it by hand, losing the commits it lacks)"
            ),
            NotEligible(why) => write!(f, "no leader; not eligible: {why}"),
            IneligibleAhead { member, why } => write!(
                f,
                "no leader; {member} is further ahead and may hold commits it acknowledged that \
                 this member lacks, but cannot be promoted ({why}): waiting rather than lose them \
                 (`pgha failover --to NAME --allow-data-loss` promotes one by hand, losing them)"
            ),
            WaitingForSwitchoverTarget { target } => {
                write!(
                    f,
                    "switchover pending: waiting for {}",
                    name_or_best(target)
                )
            }
            CatchingUpForSwitchover { replayed, needed } => {
                write!(
                    f,
                    "switchover target: replayed {replayed}, waiting for {needed}"
                )
            }
            PausedWithoutLeader => write!(f, "cluster paused and no leader: waiting"),
            FormerLeaderUnfenced { leader } => write!(
                f,
                "{leader} led while the cluster was paused (its fencing off), and no agent of \
                 it has reported since that its PostgreSQL stopped accepting writes: nobody \
                 takes over. Start {leader}'s agent (it demotes and rejoins), or stop its \
                 PostgreSQL and run `pgha failover --to MEMBER`"
            ),
        }
    }
}

fn name_or_best(target: &Option<MemberName>) -> String {
    target
        .as_ref()
        .map_or("the best candidate".into(), |t| t.to_string())
}

fn write_names(f: &mut fmt::Formatter<'_>, names: &[MemberName]) -> fmt::Result {
    let names: Vec<&str> = names.iter().map(|n| n.as_str()).collect();
    f.write_str(&names.join(", "))
}

/// "; NAMES still replaying WAL of its own since a restart ...", for members whose positions
/// are lower bounds until their replay ends; nothing when there are none.
fn still_replaying(f: &mut fmt::Formatter<'_>, replaying: &[MemberName]) -> fmt::Result {
    if replaying.is_empty() {
        return Ok(());
    }
    write!(f, "; ")?;
    write_names(f, replaying)?;
    write!(
        f,
        " still replaying WAL of its own since a restart (its replay may be held: paused, \
         delayed, or waiting out a query), its position short of its end"
    )
}
