//! What the core asks the agent to do, in order; at most one long-running job per decision.

use crate::history::HistoryEvent;
use crate::observe::{JobKind, MemberRecord};
use crate::sync::{SyncApplied, SyncSet};
use crate::types::{MemberName, Timeline};
use serde::{Deserialize, Serialize};

/// How PostgreSQL is stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StopMode {
    /// `pg_ctl stop -m fast`: clean shutdown, every WAL record is sent to connected standbys.
    Fast,
    /// `pg_ctl stop -m immediate`: at once (fencing).
    Immediate,
}

/// The role PostgreSQL starts in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StartRole {
    /// No `standby.signal`: writable. Only ever asked of the lease holder.
    Primary,
    /// With `standby.signal`, streaming from `upstream` (through its slot) when given.
    Standby { upstream: Option<MemberName> },
}

/// One thing to do. Store actions and quick local actions run in order and report through the
/// next observation; *job* actions (see [`Action::job`]) may take long and report an
/// [`crate::Outcome::Job`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    // --- store ---
    /// Create the leader key bound to a new lease of `ttl`, only if absent and while the
    /// `failsafe` key is still at `failsafe_revision` (0: absent), as read when deciding. Taking
    /// the key rewrites that list (naming the new holder alone), so an acquisition whose
    /// answer was lost cannot land after a term it never saw began, nor after a newer
    /// leader's list (it would free members outside it while that leader may still write on
    /// its listed members' promises).
    AcquireLeader {
        ttl: crate::types::Ttl,
        failsafe_revision: u64,
    },
    /// Refresh the lease, only if the leader key still has `revision` (compare-and-set), and
    /// make its TTL `ttl` (the store re-grants it when the configured ttl changed).
    RenewLeader {
        revision: u64,
        ttl: crate::types::Ttl,
    },
    /// Delete the leader key (compare-and-set on `revision`) and revoke its lease.
    ReleaseLeader {
        revision: u64,
    },
    /// Put the `position` key (leader only, guarded by the leader key at `leader_revision` and
    /// by the key still at `key_revision`, as the read it was decided on showed it; 0: absent:
    /// a write decided before a read that showed the fencing mark can never land after it).
    PublishPosition {
        position: crate::observe::LeaderPosition,
        leader_revision: u64,
        key_revision: u64,
    },
    /// Put the `failsafe` key (leader only, guarded by the leader key at `leader_revision` and
    /// by the key still at `key_revision`, as the read it was decided on showed it; 0: absent).
    PublishFailsafe {
        list: crate::observe::FailsafeList,
        leader_revision: u64,
        key_revision: u64,
    },
    /// Put `members/<self>` bound to the member's own lease.
    PublishMember(MemberRecord),
    /// Write the `initialize` key if absent (after a successful bootstrap, or adopting data).
    WriteInitialize {
        system_id: crate::types::SystemId,
    },
    /// Write the `sync` key, guarded by the leader term `leader_revision` and by the key still
    /// at `key_revision`, as the read it was decided on showed it (0: absent): a write whose
    /// answer was lost can land only before anything else is written there.
    PublishSync {
        set: SyncSet,
        leader_revision: u64,
        key_revision: u64,
    },
    /// Give back the failsafe promises this member was given as leader in `term` (the
    /// members that confirmed it while the store was down promised not to take the lease for
    /// a ttl): emitted as the term is given up with PostgreSQL not writable (demoted for a
    /// switchover, down, never promoted), so that the next leader need not wait those
    /// promises out. Best effort: a promise not given back runs out.
    ReturnPromises {
        term: u64,
    },
    /// Delete the `switchover` key, guarded by its `revision`.
    ClearSwitchover {
        revision: u64,
    },
    /// Append to the cluster history (the agent stamps the wall-clock time).
    RecordHistory(HistoryEvent),

    // --- quick local PostgreSQL actions (bounded by a timeout, no outcome) ---
    /// Set `synchronous_standby_names` and reload.
    SetSync(SyncApplied),
    /// End the WAL receiver so that PostgreSQL starts a new one at once: after a cut link
    /// heals, the old one may sit in TCP connection retries for minutes.
    RestartWalReceiver,
    /// Create physical replication slots for these members (if missing).
    CreateSlots {
        names: Vec<MemberName>,
    },
    /// Drop these physical replication slots.
    DropSlots {
        names: Vec<MemberName>,
    },
    /// `ALTER SYSTEM RESET` these parameters pgha owns, and reload: `postgresql.auto.conf` is
    /// read after pgha's own file, so a value set there would silently override pgha's (a
    /// `synchronous_commit = local` would acknowledge commits no standby has).
    UndoAlterSystem {
        parameters: Vec<String>,
    },
    /// SIGKILL to every process of the local PostgreSQL (its postmaster's tree, then any
    /// process of its program left in its data directory), for a demoted primary whose stop
    /// did not take: processes blocked on a stalled disk cannot end, but a pending SIGKILL
    /// ends each before it runs again (the next observation tells whether all are killed).
    KillPostgres,

    // --- jobs (long-running; outcome reported once) ---
    /// initdb, configure, start as primary.
    Bootstrap,
    StartPostgres(StartRole),
    StopPostgres(StopMode),
    /// Stop PostgreSQL (fast) and start it again in the role it has (`pgha restart
    /// --in-place`): a leader keeps its lease throughout, so nobody fails over.
    RestartPostgres(StartRole),
    /// `pg_ctl promote` and wait until writable, on a timeline above `newest_timeline`, the
    /// newest the cluster knows of: a member that never received a timeline's history (cut
    /// off while another member was promoted) would otherwise start a timeline of the same
    /// number, and two histories of one timeline are told apart by nothing, pg_rewind
    /// included. The agent lays a placeholder history file for each timeline PostgreSQL does
    /// not know of up to it, which PostgreSQL counts when it picks the new one.
    Promote {
        newest_timeline: Timeline,
    },
    /// Stop accepting writes: stop (`mode`) and start again as a standby without upstream.
    /// May be emitted while another job runs: the agent cancels that job first.
    Demote {
        mode: StopMode,
        /// The lease is lost, or may be: PostgreSQL is stopped first and the store told
        /// meanwhile (it may be out of reach). Otherwise (a handover) the store is told first,
        /// so that the proxy stops routing new sessions here before PostgreSQL refuses them.
        fencing: bool,
    },
    /// Reconfigure as a standby of `leader` (primary_conninfo, slot, standby.signal) and
    /// reload (PostgreSQL 13+) or restart; starts PostgreSQL if stopped.
    Follow {
        leader: MemberName,
    },
    /// Take `primary_conninfo` away (reload) and wait until the WAL receiver has ended: from
    /// then on this standby receives, flushes and acknowledges nothing, so its position is
    /// final. Asked of each standby that sees no leader in a synchronous mode, before its
    /// position counts in an election: an old primary still writing (its key removed before
    /// its lease could run out: etcd-io/etcd#15247, a hand deletion) would otherwise have its
    /// commits acknowledged by a standby that goes on streaming (`FIRST 1` moves the role to
    /// the next one listed) after the winner stopped receiving to promote.
    StopStreaming,
    /// `pg_rewind` from `from` (PostgreSQL stopped), then restore pgha's config.
    Rewind {
        from: MemberName,
    },
    /// `pg_basebackup` from `from`; an existing data directory is first moved aside
    /// (`move_aside`), never deleted.
    Reclone {
        from: MemberName,
        move_aside: bool,
    },
}

impl Action {
    /// The job kind when this action is a long-running job.
    pub fn job(&self) -> Option<JobKind> {
        Some(match self {
            Action::Bootstrap => JobKind::Bootstrap,
            Action::StartPostgres(_) => JobKind::Start,
            Action::StopPostgres(_) => JobKind::Stop,
            Action::RestartPostgres(_) => JobKind::Restart,
            Action::Promote { .. } => JobKind::Promote,
            Action::Demote { .. } => JobKind::Demote,
            Action::Follow { .. } => JobKind::Follow,
            Action::StopStreaming => JobKind::StopStreaming,
            Action::Rewind { .. } => JobKind::Rewind,
            Action::Reclone { .. } => JobKind::Reclone,
            _ => return None,
        })
    }

    /// Whether this job may leave PostgreSQL writable: a primary started, restarted or
    /// initialised, or a promotion. While one runs, a member that loses its lease must treat
    /// PostgreSQL as writable already (demote, and keep the supervisor armed).
    pub fn may_make_writable(&self) -> bool {
        matches!(
            self,
            Action::Bootstrap
                | Action::Promote { .. }
                | Action::StartPostgres(StartRole::Primary)
                | Action::RestartPostgres(StartRole::Primary)
        )
    }
}
