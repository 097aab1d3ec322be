//! The simulated world: store, PostgreSQL instances, agents executing decisions, invariants.

use pgha_core::rejoin::TimelineSwitch;
use pgha_core::*;
use std::collections::BTreeMap;

mod agent;
mod chaos;
mod clocks;
mod cold_stop;
mod early_removals;
mod invariants;
mod lease_disks;
mod postgres;
mod run;
mod store;

const TICK: u64 = 50;

/// xorshift64*: small, seeded, good enough for event choice.
pub struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent_tenths: u64) -> bool {
        self.below(1000) < percent_tenths
    }
}

#[derive(Clone, Debug, Default)]
struct Pg {
    data: bool,
    running: bool,
    in_recovery: bool,
    tl: u32,
    lsn: u64,
    history: Vec<TimelineSwitch>,
    upstream: Option<usize>,
    streaming: bool,
    sync: SyncApplied,
    slots: Vec<MemberName>,
    /// Every process killed while blocked (unresponsive): none runs again, and they die when
    /// the block ends.
    killed: bool,
}

struct Job {
    action: Action,
    done_at: u64,
}

struct Node {
    name: MemberName,
    member: Option<Member>,
    pg: Pg,
    job: Option<Job>,
    outcomes: Vec<Outcome>,
    wake_at: u64,
    woken: Option<u64>,
    reachable: bool,
    partition_until: u64,
    /// While unreachable: its link to the store is slow, not cut. Its reads go unanswered,
    /// but its lease writes (acquisitions, renewals, releases) land a second or two late.
    slow_link: bool,
    offset: u64,
    /// How far its clock runs fast (positive) or slow, in millionths (see `clocks.rs`).
    rate_ppm: i64,
    tags: Tags,
    healthy_since: Option<u64>,
    /// The supervisor's fencing deadline (world time): PostgreSQL is killed once it passes,
    /// whether the agent lives or not, as `pgha supervise` does.
    fence_at: Option<u64>,
    /// The file system holding its lease file is full until then (world time; runs
    /// [`World::with_full_lease_disks`]): the agent's writes of the deadline fail.
    lease_disk_full_until: u64,
    /// The agent's last write of the deadline failed: the supervisor holds the one before.
    fence_write_failed: bool,
    /// The agent's last job stopped the stream and none began since (pgha-agent's
    /// `JobSlot::last_succeeded`): lost with the agent.
    stream_stop_done: bool,
    /// Its startup process is held until then (runs [`World::with_early_removals`]: a query's
    /// lock on the standby, a recovery conflict waited out): a reload cannot end its WAL
    /// receiver, which goes on receiving and confirming, so each StopStreaming job fails at
    /// its bound.
    receiver_held_until: u64,
    /// The agent is paused (SIGSTOP, a stalled VM): it does not step until then.
    paused_until: u64,
    /// PostgreSQL runs but does not answer probes until then.
    unresponsive_until: u64,
    /// Its WAL receiver falls behind (slow disk, busy network) until then.
    lagging_until: u64,
    /// While lagging: its stream stands still instead (a link cut either way, a stalled
    /// disk), the connection up until the replication timeout ends it.
    stalled_stream: bool,
    /// When the lag (or stall) began.
    lagging_since: u64,
    /// Its data disk stalled (a frozen or hung disk): from when, until when. Its stream
    /// stands still, its agent's check of the data directory hangs, and each job it begins
    /// meanwhile (a promotion writes a file there) ends no sooner than the stall.
    disk_stalled: Option<(u64, u64)>,
    /// Lease results on their way back from a slow store: (delivered at, outcome).
    in_flight: Vec<(u64, Outcome)>,
    /// Failsafe: the leader this agent saw in its last store read (what it would confirm).
    last_seen_leader: Option<usize>,
    /// The agent's last store read (a failsafe round goes by it, as pgha-agent's does).
    last_view: Option<ClusterView>,
    /// Failsafe: the promises this member gave leaders not to take the lease before a time
    /// (world time), each to (leader, term); kept on disk, so they survive agent restarts. A
    /// leader demoted for a switchover gives back those of its term.
    promises: Vec<(u64, usize, u64)>,
    /// Stopped with the whole cluster: its agent starts again then.
    restart_at: Option<u64>,
    /// The newest term the store's answers said this agent took or renewed: the only leader
    /// key its leaving releases (as pgha-agent's `held_term`).
    held_term: Option<u64>,
    /// The write of the leader key this agent's process knows it made (taken, or adopted:
    /// the key written again): a release it sends compares it, as pgha-store's etcd backend
    /// does, so that one from an earlier process cannot land after this one adopted the key.
    key_written: Option<u64>,
}

impl Node {
    /// The latest time this member promised not to take the lease before (0: never).
    fn promised_until(&self) -> u64 {
        self.promises
            .iter()
            .map(|(until, _, _)| *until)
            .max()
            .unwrap_or(0)
    }

    /// An answer of the store reaches the agent (and, if it took or renewed the leader key,
    /// tells it the term it holds).
    fn receive(&mut self, outcome: Outcome) {
        if let Outcome::LeaderAcquired { revision, .. } | Outcome::LeaderRenewed { revision, .. } =
            &outcome
        {
            self.held_term = Some(*revision);
        }
        self.outcomes.push(outcome);
    }
}

struct Store {
    revision: u64,
    leader: Option<(usize, u64, u64)>,
    /// Each write of the leader key (taken, or adopted by a process of its holder that knew
    /// no write of it) gets the next number: what a release compares.
    leader_written: u64,
    members: BTreeMap<MemberName, (MemberRecord, u64)>,
    sync: SyncSet,
    sync_revision: u64,
    switchover: Option<PendingSwitchover>,
    history: Vec<HistoryEvent>,
    initialize: Option<SystemId>,
    leader_gone_at: Option<u64>,
    /// The key's holder and term when an acquisition whose answer was lost landed later: its
    /// holder is judged for I3 when it promotes on it, not as it lands (its agent may have
    /// stopped running since, a better candidate back, and then releases it unused).
    late_won: Option<(usize, u64)>,
    position: Option<LeaderPosition>,
    position_revision: u64,
    failsafe: Option<FailsafeList>,
    failsafe_revision: u64,
}

#[derive(Default)]
pub struct Stats {
    pub failovers: u32,
    pub switchovers: u32,
    pub rewinds: u32,
    /// Promotions in a synchronous mode that kept every synchronously acknowledged write.
    pub sync_promotions: u32,
    /// Promotions that lost synchronously acknowledged writes because every standby that had
    /// confirmed them was gone too (two failures; I4 promises one).
    pub sync_lost_to_double_failure: u32,
    /// Promotions the `pre_promote` callback vetoed.
    pub vetoes: u32,
    /// Acquisitions of the leader key whose answer was lost that landed later, those their
    /// member promoted on (judged for I3 then), and those refused as they landed (the
    /// `failsafe` key had moved since they were decided).
    pub late_acquisitions: (u32, u32, u32),
    /// Renewals and releases of the leader key sent over a slow link that landed late, while
    /// the key was still of their term.
    pub late_lease_writes: (u32, u32),
    /// Whole-cluster stops, and the starts after them checked for the last leader's writes.
    pub cold_stops: u32,
    pub cold_starts_checked: u32,
    /// Every agent paused at once.
    pub whole_pauses: u32,
    /// Lease files whose file system filled up.
    pub full_lease_disks: u32,
    /// Leader keys the store removed early, and commits their holders acknowledged after.
    pub early_removals: u32,
    pub acknowledged_on_removed_keys: u32,
    /// Standbys whose stream stood still while their primary counted them, and those the
    /// leader stopped counting before the replication timeout ended their connection.
    pub stalled_streams: (u32, u32),
    /// Demoted primaries whose processes were killed while blocked, and the leases released
    /// once they were shown killed (before the lease ran out).
    pub killed_blocked: (u32, u32),
    /// Data disks stalled, and elections won while a member at least as far on was passed
    /// over because its record said its data directory took no write.
    pub disk_stalls: (u32, u32),
}

/// The newest commit PostgreSQL acknowledged to a client because synchronous standbys
/// confirmed it (writes acknowledged while running asynchronously carry no promise).
#[derive(Clone, Debug)]
struct Acknowledged {
    tl: u32,
    lsn: u64,
    /// The standbys that had flushed it when it was acknowledged.
    confirmed_by: Vec<usize>,
}

pub struct World {
    seed: u64,
    rng: Rng,
    now: u64,
    nodes: Vec<Node>,
    store: Store,
    config: ClusterConfig,
    slow_promote: bool,
    /// How many promotions in a thousand the members' `pre_promote` callbacks veto (none
    /// unless [`World::vetoing`] set it).
    veto_per_mille: Option<u64>,
    /// How many random events in a thousand stop the whole cluster (see
    /// [`World::stopping_whole`]), and the start being watched after one.
    cold_stop_per_mille: u64,
    cold_start: Option<cold_stop::ColdStart>,
    /// How many random events in a thousand pause every agent at once (see
    /// [`World::pausing_whole`]).
    pause_all_per_mille: u64,
    /// Store answers take up to two seconds to come back (they take effect at once).
    slow_store: bool,
    /// Lease files whose file system fills up (see [`World::with_full_lease_disks`]).
    full_lease_disks: bool,
    /// Leader keys the store removes early (see [`World::with_early_removals`]), and the
    /// holders of such keys that still write, each with the newest commit it acknowledged.
    early_removals: bool,
    removed_early: Vec<(usize, u64)>,
    /// When the store last removed a leader key early, and when it removes the next one.
    removed_early_at: Option<u64>,
    removal_due: Option<u64>,
    /// The store itself is down until then (an etcd restart): nobody reaches it, and its
    /// leases do not run; when it is back they run again from their full TTL, as etcd does.
    store_down_until: u64,
    /// Leader writes on their way to the store with their answers lost: (lands at, member,
    /// write).
    /// (lands at, member, write, the key's write its process knew when it sent it)
    late_writes: Vec<(u64, usize, Action, Option<u64>)>,
    /// Whose promotions the store's records said vetoed when a member's acquisition now on its
    /// way was sent (by member): I3 for a late win goes by what the winner saw when it ran.
    vetoed_when_sent: BTreeMap<usize, Vec<MemberName>>,
    /// The same for the acquisition that landed late ([`Store::late_won`]).
    late_won_vetoed: Vec<MemberName>,
    next_tl: u32,
    /// I4's ledger: the newest synchronously acknowledged commit.
    acknowledged: Option<Acknowledged>,
    /// Which members were writable at the previous check (a promotion is a rising edge).
    was_writable: Vec<bool>,
    pub stats: Stats,
}

/// `PGHA_SIM_TRACE=1` prints every decision.
#[allow(clippy::disallowed_methods)] // a test setting, read from the environment
fn tracing() -> bool {
    std::env::var("PGHA_SIM_TRACE").is_ok()
}

fn writable(pg: &Pg) -> bool {
    pg.running && !pg.in_recovery && !pg.killed
}

/// Whether `pg`'s WAL contains the acknowledged commit.
fn holds(pg: &Pg, ack: &Acknowledged) -> bool {
    if pg.tl == ack.tl {
        return pg.lsn >= ack.lsn;
    }
    rejoin::switch_point(&pg.history, Timeline(ack.tl)).is_some_and(|l| l.0 >= ack.lsn)
}

fn new_member(name: &MemberName, tags: &Tags, config: &ClusterConfig) -> Member {
    Member::new(MemberSettings {
        name: name.clone(),
        tags: tags.clone(),
        addresses: BTreeMap::new(),
        config: config.clone(),
    })
}

/// Whether a standby at `pg` can stream from `up` (its WAL is a prefix of `up`'s).
fn compatible(pg: &Pg, up: &Pg) -> bool {
    if pg.tl == up.tl {
        return pg.lsn <= up.lsn;
    }
    match rejoin::switch_point(&up.history, Timeline(pg.tl)) {
        Some(switch) => pg.lsn <= switch.0,
        None => false,
    }
}
