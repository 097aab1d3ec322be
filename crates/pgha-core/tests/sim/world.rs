//! The simulated world: store, PostgreSQL instances, agents executing decisions, invariants.

use pgha_core::rejoin::TimelineSwitch;
use pgha_core::*;
use std::collections::BTreeMap;

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
    offset: u64,
    tags: Tags,
    healthy_since: Option<u64>,
    /// The supervisor's fencing deadline (world time): PostgreSQL is killed once it passes,
    /// whether the agent lives or not, as `pgha supervise` does.
    fence_at: Option<u64>,
    /// The agent is paused (SIGSTOP, a stalled VM): it does not step until then.
    paused_until: u64,
    /// PostgreSQL runs but does not answer probes until then.
    unresponsive_until: u64,
    /// Its WAL receiver falls behind (slow disk, busy network) until then.
    lagging_until: u64,
    /// Lease results on their way back from a slow store: (delivered at, outcome).
    in_flight: Vec<(u64, Outcome)>,
    /// Failsafe: the leader this agent saw in its last store read (what it would confirm).
    last_seen_leader: Option<usize>,
    /// The agent's last store read (a failsafe round goes by it, as pgha-agent's does).
    last_view: Option<ClusterView>,
    /// Failsafe: this member confirmed a leader and promised not to take the lease before
    /// then (world time); kept on disk, so it survives agent restarts.
    promised_until: u64,
}

struct Store {
    revision: u64,
    leader: Option<(usize, u64, u64)>,
    members: BTreeMap<MemberName, (MemberRecord, u64)>,
    sync: SyncSet,
    sync_revision: u64,
    switchover: Option<PendingSwitchover>,
    history: Vec<HistoryEvent>,
    initialize: Option<SystemId>,
    leader_gone_at: Option<u64>,
    position: Option<LeaderPosition>,
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
    /// Store answers take up to two seconds to come back (they take effect at once).
    slow_store: bool,
    /// The store itself is down until then (an etcd restart): nobody reaches it, and its
    /// leases do not run; when it is back they run again from their full TTL, as etcd does.
    store_down_until: u64,
    next_tl: u32,
    /// I4's ledger: the newest synchronously acknowledged commit.
    acknowledged: Option<Acknowledged>,
    /// Which members were writable at the previous check (a promotion is a rising edge).
    was_writable: Vec<bool>,
    pub stats: Stats,
}

impl World {
    pub fn new(seed: u64, size: usize) -> World {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        // The replication mode varies with the seed: a third of the seeds each run
        // asynchronous, `on` and `strict`, with priority or quorum counting.
        let config = ClusterConfig {
            stream_timeout_ms: 5_000,
            synchronous_mode: match seed % 3 {
                0 => SyncMode::Off,
                1 => SyncMode::On,
                _ => SyncMode::Strict,
            },
            synchronous_method: if (seed / 3) % 2 == 0 {
                SyncMethod::Priority
            } else {
                SyncMethod::Quorum
            },
            ..ClusterConfig::default()
        };
        let nodes = (0..size)
            .map(|i| {
                let name = MemberName::new(format!("n{}", i + 1));
                let tags = Tags {
                    nofailover: i == 2 && seed % 4 == 0,
                    ..Tags::default()
                };
                Node {
                    member: Some(new_member(&name, &tags, &config)),
                    name,
                    pg: Pg::default(),
                    job: None,
                    outcomes: Vec::new(),
                    wake_at: 0,
                    woken: None,
                    reachable: true,
                    partition_until: 0,
                    offset: rng.below(1_000_000),
                    tags,
                    healthy_since: None,
                    fence_at: None,
                    paused_until: 0,
                    unresponsive_until: 0,
                    lagging_until: 0,
                    in_flight: Vec::new(),
                    last_seen_leader: None,
                    last_view: None,
                    promised_until: 0,
                }
            })
            .collect();
        World {
            seed,
            rng,
            now: 0,
            nodes,
            store: Store {
                revision: 1,
                leader: None,
                members: BTreeMap::new(),
                sync: SyncSet::default(),
                sync_revision: 0,
                switchover: None,
                history: Vec::new(),
                initialize: None,
                leader_gone_at: Some(0),
                position: None,
                failsafe: None,
                failsafe_revision: 0,
            },
            config,
            slow_promote: false,
            veto_per_mille: None,
            slow_store: false,
            store_down_until: 0,
            next_tl: 2,
            acknowledged: None,
            was_writable: vec![false; size],
            stats: Stats::default(),
        }
    }

    /// Has the members' `pre_promote` callbacks veto `per_mille` promotions in a thousand.
    pub fn vetoing(mut self, per_mille: u64) -> World {
        self.veto_per_mille = Some(per_mille);
        self
    }

    pub fn run_chaos(&mut self, duration: u64) {
        let end = self.now + duration;
        while self.now < end {
            if self.now > 5_000 {
                self.random_event();
            }
            self.tick();
        }
    }

    pub fn heal(&mut self) {
        for i in 0..self.nodes.len() {
            self.nodes[i].reachable = true;
            self.nodes[i].partition_until = 0;
            self.nodes[i].paused_until = 0;
            self.nodes[i].unresponsive_until = 0;
            self.nodes[i].lagging_until = 0;
            if self.nodes[i].member.is_none() {
                self.restart_agent(i);
            }
        }
        self.slow_promote = false;
        self.slow_store = false;
        if self.store_down_until > 0 {
            self.store_back();
        }
    }

    pub fn run_calm(&mut self, duration: u64) {
        let end = self.now + duration;
        while self.now < end {
            self.tick();
        }
    }

    fn fail(&self, what: String) -> ! {
        let mut state = String::new();
        for n in &self.nodes {
            state += &format!(
                "\n  {} agent={} reachable={} pg={:?} job={:?}",
                n.name,
                n.member.is_some(),
                n.reachable,
                n.pg,
                n.job.as_ref().map(|j| &j.action)
            );
        }
        panic!(
            "seed {} at {} ms: {what}\n  leader={:?}{state}\n  (rerun: PGHA_SIM_SEED={})",
            self.seed, self.now, self.store.leader, self.seed
        );
    }

    pub fn assert_converged(&self) {
        let writable: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].pg.running && !self.nodes[i].pg.in_recovery)
            .collect();
        if writable.len() != 1 {
            self.fail(format!("did not converge to one primary: {writable:?}"));
        }
        let primary = writable[0];
        if self.store.leader.map(|l| l.0) != Some(primary) {
            self.fail("the primary does not hold the lease".into());
        }
        for (i, n) in self.nodes.iter().enumerate() {
            if i != primary && !(n.pg.running && n.pg.streaming && n.pg.upstream == Some(primary)) {
                self.fail(format!("{} is not streaming from the primary", n.name));
            }
            if i != primary && !n.pg.slots.is_empty() {
                self.fail(format!(
                    "{} keeps the slots {:?} as a standby (they hold WAL nobody streams)",
                    n.name, n.pg.slots
                ));
            }
        }
    }

    fn random_event(&mut self) {
        if !self.rng.chance(8) {
            return;
        }
        let i = self.rng.below(self.nodes.len() as u64) as usize;
        match self.rng.below(16) {
            0 => {
                // node crash: agent and PostgreSQL die together
                self.nodes[i].member = None;
                self.nodes[i].job = None;
                self.nodes[i].pg.running = false;
                self.nodes[i].pg.streaming = false;
            }
            1 => self.restart_agent(i),
            2 => {
                self.nodes[i].pg.running = false; // postmaster kill -9
                self.nodes[i].pg.streaming = false;
            }
            3 => {
                self.nodes[i].reachable = false;
                self.nodes[i].partition_until = self.now + 1_000 + self.rng.below(20_000);
            }
            4 => self.slow_promote = !self.slow_promote,
            5 | 6 => self.request_switchover(),
            7 => {
                // the agent alone dies (OOM kill, kill -9): PostgreSQL and its supervisor live on
                self.nodes[i].member = None;
                self.nodes[i].job = None;
                self.nodes[i].in_flight.clear();
            }
            8 => {
                // the agent is paused for up to twice the ttl
                let ttl = self.config.ttl_ms;
                self.nodes[i].paused_until = self.now + self.rng.below(2 * ttl);
            }
            9 => {
                // PostgreSQL stops answering probes (slots exhausted, I/O stall) for a while
                self.nodes[i].unresponsive_until = self.now + self.rng.below(15_000);
            }
            10 => self.slow_store = !self.slow_store,
            11 => {
                // The store is gone for everyone (an etcd restart): failsafe territory.
                let until = self.now + 1_000 + self.rng.below(15_000);
                self.store_down_until = self.store_down_until.max(until);
                for n in &mut self.nodes {
                    n.reachable = false;
                    n.partition_until = n.partition_until.max(until);
                }
            }
            12 => self.change_sync_config(),
            14 => {
                // a standby's replication falls behind for a while
                self.nodes[i].lagging_until = self.now + self.rng.below(20_000);
            }
            13 => {
                // A member's `nosync` tag or priority edited, and its agent restarted to take it
                // (PostgreSQL keeps running): the synchronous set changes without any failure.
                if self.rng.chance(500) {
                    self.nodes[i].tags.nosync = !self.nodes[i].tags.nosync;
                } else {
                    self.nodes[i].tags.priority = self.rng.below(3) as u32;
                }
                self.nodes[i].member = None;
                self.nodes[i].job = None;
                self.nodes[i].in_flight.clear();
                self.restart_agent(i);
            }
            _ => self.change_ttl(),
        }
    }

    /// `pgha config set synchronous_mode=... synchronous_method=...` while the cluster runs:
    /// between `on` and `strict`, or the counting method (asynchronous seeds stay so).
    fn change_sync_config(&mut self) {
        if self.config.synchronous_mode == SyncMode::Off {
            return;
        }
        if self.rng.chance(500) {
            self.config.synchronous_mode = match self.config.synchronous_mode {
                SyncMode::On => SyncMode::Strict,
                _ => SyncMode::On,
            };
        } else {
            self.config.synchronous_method = match self.config.synchronous_method {
                SyncMethod::Priority => SyncMethod::Quorum,
                SyncMethod::Quorum => SyncMethod::Priority,
            };
        }
        self.wake_all();
    }

    fn restart_agent(&mut self, i: usize) {
        if self.nodes[i].member.is_some() {
            return;
        }
        let n = &mut self.nodes[i];
        n.member = Some(new_member(&n.name, &n.tags, &self.config));
        n.last_view = None;
        n.outcomes.clear();
        n.in_flight.clear();
        n.paused_until = 0;
        n.wake_at = self.now;
    }

    /// `pgha config set ttl_ms=... safety_margin_ms=...` while the cluster runs.
    fn change_ttl(&mut self) {
        let (ttl, margin) = if self.config.ttl_ms == 10_000 {
            (6_000, 1_500)
        } else {
            (10_000, 2_500)
        };
        self.config.ttl_ms = ttl;
        self.config.safety_margin_ms = margin;
        self.config.loop_wait_ms = 1_000;
        self.wake_all();
    }

    fn request_switchover(&mut self) {
        let Some((leader, _, _)) = self.store.leader else {
            return;
        };
        if self.store.switchover.is_some() {
            return;
        }
        let target = (leader + 1 + self.rng.below(2) as usize) % self.nodes.len();
        let to = (!self.rng.chance(300)).then(|| self.nodes[target].name.clone());
        self.store.revision += 1;
        self.store.switchover = Some(PendingSwitchover {
            request: SwitchoverRequest {
                from: Some(self.nodes[leader].name.clone()),
                to,
                kind: RequestKind::Switchover,
                at: None,
            },
            revision: self.store.revision,
        });
        self.wake_all();
    }

    fn wake_all(&mut self) {
        let delay = self.rng.below(60);
        for n in &mut self.nodes {
            n.woken.get_or_insert(self.now + delay);
        }
    }

    fn tick(&mut self) {
        self.now += TICK;
        self.expire();
        self.replicate();
        self.acknowledge();
        self.finish_jobs();
        self.supervise();
        for i in 0..self.nodes.len() {
            let now = self.now;
            let n = &mut self.nodes[i];
            let arrived: Vec<Outcome> = n
                .in_flight
                .iter()
                .filter(|(at, _)| *at <= now)
                .map(|(_, o)| o.clone())
                .collect();
            if !arrived.is_empty() {
                n.in_flight.retain(|(at, _)| *at > now);
                n.outcomes.extend(arrived);
                n.woken.get_or_insert(now);
            }
            let due = n.wake_at <= now || n.woken.is_some_and(|w| w <= now);
            if n.member.is_some() && due && n.paused_until <= now {
                self.step(i);
            }
        }
        self.check_one_writer();
        self.track_health();
    }

    /// What PostgreSQL acknowledges on the primary this tick. With `synchronous_standby_names`
    /// set, a commit returns once the standbys it counts have flushed it (`FIRST k`: the first
    /// k listed standbys that stream from it; `ANY k`: any k of the listed ones); empty, at
    /// once, with no promise to keep. The newest synchronous acknowledgement goes in the ledger.
    fn acknowledge(&mut self) {
        let Some(p) = (0..self.nodes.len()).find(|&i| writable(&self.nodes[i].pg)) else {
            return;
        };
        let applied = self.nodes[p].pg.sync.clone();
        if applied.is_async() {
            return;
        }
        let streaming: Vec<usize> = applied
            .names
            .iter()
            .filter_map(|name| self.nodes.iter().position(|n| &n.name == name))
            .filter(|&s| {
                let pg = &self.nodes[s].pg;
                pg.running && pg.in_recovery && pg.streaming && pg.upstream == Some(p)
            })
            .collect();
        let k = applied.count.max(1) as usize;
        if streaming.len() < k {
            return; // commits wait
        }
        let counted: Vec<usize> = match applied.method {
            SyncMethod::Priority => streaming[..k].to_vec(),
            SyncMethod::Quorum => streaming,
        };
        let mut flushed: Vec<u64> = counted.iter().map(|&s| self.nodes[s].pg.lsn).collect();
        flushed.sort_unstable_by(|a, b| b.cmp(a));
        let primary = &self.nodes[p].pg;
        let (tl, lsn) = (primary.tl, flushed[k - 1].min(primary.lsn));
        if self
            .acknowledged
            .as_ref()
            .is_some_and(|a| a.tl == tl && a.lsn >= lsn)
        {
            return;
        }
        let confirmed_by = counted
            .into_iter()
            .filter(|&s| self.nodes[s].pg.lsn >= lsn)
            .collect();
        self.acknowledged = Some(Acknowledged {
            tl,
            lsn,
            confirmed_by,
        });
    }

    /// I4 at the moment `w` becomes writable: it holds the newest synchronously acknowledged
    /// commit, unless every standby that confirmed that commit is gone as well (a second
    /// failure). A confirming standby that stayed healthy and visible through the leaderless
    /// period, and still holds the commit, must have kept it from being lost.
    fn check_acknowledged_writes_kept(&mut self, w: usize) {
        let Some(ack) = self.acknowledged.clone() else {
            return;
        };
        if holds(&self.nodes[w].pg, &ack) {
            self.stats.sync_promotions += 1;
            return;
        }
        let gone = self.store.leader_gone_at;
        for &c in &ack.confirmed_by {
            let n = &self.nodes[c];
            let stayed_healthy = n
                .healthy_since
                .is_some_and(|since| gone.is_none_or(|g| since < g));
            if c != w && stayed_healthy && !n.tags.nofailover && holds(&n.pg, &ack) {
                self.fail(format!(
                    "I4: {} became writable at {}/{} without the commit acknowledged at {}/{}, \
                     which {} confirmed and still holds",
                    self.nodes[w].name,
                    self.nodes[w].pg.tl,
                    self.nodes[w].pg.lsn,
                    ack.tl,
                    ack.lsn,
                    n.name
                ));
            }
        }
        self.stats.sync_lost_to_double_failure += 1;
        // Lost for good: from here the new primary's writes build on a history without it, and
        // a confirming standby that comes back later rewinds to follow it. A later promotion is
        // not asked to hold it again (seed 23762 of the 50,000-seed run: the confirming standby
        // came back between two promotions of a member that never had the commit).
        self.acknowledged = None;
    }

    /// The supervisors: each kills its PostgreSQL once its fencing deadline has passed.
    fn supervise(&mut self) {
        let now = self.now;
        for n in &mut self.nodes {
            if n.pg.running && n.fence_at.is_some_and(|at| at <= now) {
                n.pg.running = false;
                n.pg.streaming = false;
            }
            if !n.pg.running {
                n.unresponsive_until = 0; // a new postmaster answers again
            }
        }
    }

    /// What the agent writes into the lease file after a step (see pgha-agent's fence.rs).
    fn update_fence(&mut self, i: usize, local: &LocalPg) {
        let n = &mut self.nodes[i];
        let deadline = n.member.as_ref().and_then(|m| m.fence_deadline());
        let may_become_writable = n.member.as_ref().is_some_and(|m| m.job_may_make_writable());
        n.fence_at = match deadline {
            Some(_) if self.config.paused => None,
            Some(d) => Some(d.0.saturating_sub(n.offset)),
            None if may_become_writable => n.fence_at,
            None if !n.pg.running => None,
            None if local.running && local.in_recovery && !local.unresponsive => None,
            None => n.fence_at,
        };
    }

    /// The store is back from an outage: its leases run again from their full TTL (etcd
    /// refreshes every lease when a new etcd leader takes over).
    fn store_back(&mut self) {
        self.store_down_until = 0;
        let fresh = self.now + self.config.ttl_ms;
        if let Some(l) = self.store.leader.as_mut() {
            l.2 = l.2.max(fresh);
        }
        for m in self.store.members.values_mut() {
            m.1 = m.1.max(fresh);
        }
    }

    fn expire(&mut self) {
        if self.store_down_until > 0 {
            if self.now < self.store_down_until {
                for n in &mut self.nodes {
                    n.reachable = false;
                }
                return; // a store that is down expires nothing
            }
            self.store_back();
        }
        for n in &mut self.nodes {
            if !n.reachable && n.partition_until <= self.now {
                n.reachable = true;
            }
        }
        let now = self.now;
        if self.store.leader.is_some_and(|l| l.2 <= now) {
            self.store.leader = None;
            self.store.leader_gone_at = Some(now);
            self.wake_all();
        }
        let before = self.store.members.len();
        self.store.members.retain(|_, m| m.1 > now);
        if before != self.store.members.len() {
            self.wake_all();
        }
    }

    fn replicate(&mut self) {
        for i in 0..self.nodes.len() {
            let pg = &self.nodes[i].pg;
            if pg.running && !pg.in_recovery {
                let grow = self.rng.below(800);
                self.nodes[i].pg.lsn += grow;
            }
        }
        for i in 0..self.nodes.len() {
            let pg = self.nodes[i].pg.clone();
            let source = pg.upstream.map(|u| self.nodes[u].pg.clone());
            let streaming = match source {
                Some(up) if pg.running && pg.in_recovery && up.running && !up.in_recovery => {
                    compatible(&pg, &up)
                }
                _ => false,
            };
            let n = &mut self.nodes[i];
            n.pg.streaming = streaming;
            if streaming && !self.rng.chance(200) {
                let up = &self.nodes[pg.upstream.unwrap()].pg.clone();
                let lagging = self.nodes[i].lagging_until > self.now;
                let step = self.rng.below(300);
                let n = &mut self.nodes[i];
                n.pg.tl = up.tl;
                n.pg.history = up.history.clone();
                n.pg.lsn = if lagging {
                    up.lsn.min(n.pg.lsn + step)
                } else {
                    n.pg.lsn.max(up.lsn.saturating_sub(step))
                };
            }
        }
    }

    fn job_duration(&mut self, action: &Action) -> u64 {
        match action {
            Action::Promote if self.slow_promote => 500 + self.rng.below(4_000),
            Action::Promote => 50 + self.rng.below(200),
            Action::Demote { .. } => self.rng.below(2_000),
            Action::Reclone { .. } => 1_000 + self.rng.below(3_000),
            _ => 50 + self.rng.below(600),
        }
    }

    fn finish_jobs(&mut self) {
        for i in 0..self.nodes.len() {
            let done = self.nodes[i]
                .job
                .as_ref()
                .is_some_and(|j| j.done_at <= self.now);
            if !done {
                continue;
            }
            let job = self.nodes[i].job.take().unwrap();
            let kind = job.action.job().unwrap();
            let result = self.apply_job(i, &job.action);
            self.nodes[i].outcomes.push(Outcome::Job { kind, result });
            self.nodes[i].woken.get_or_insert(self.now);
            self.check_one_writer();
        }
    }

    fn apply_job(&mut self, i: usize, action: &Action) -> Result<(), JobFailure> {
        let leader_idx =
            |name: &MemberName, nodes: &[Node]| nodes.iter().position(|n| &n.name == name).unwrap();
        match action {
            Action::Bootstrap => {
                let pg = &mut self.nodes[i].pg;
                *pg = Pg {
                    data: true,
                    running: true,
                    tl: 1,
                    lsn: 100,
                    ..Pg::default()
                };
            }
            Action::StartPostgres(role) => {
                let upstream = match role {
                    StartRole::Primary => None,
                    StartRole::Standby { upstream } => {
                        upstream.as_ref().map(|u| leader_idx(u, &self.nodes))
                    }
                };
                let pg = &mut self.nodes[i].pg;
                pg.running = true;
                pg.in_recovery = *role != StartRole::Primary;
                pg.upstream = upstream;
                if pg.in_recovery {
                    self.nodes[i].fence_at = None; // a standby starts disarmed
                }
            }
            Action::StopPostgres(_) => {
                self.nodes[i].pg.running = false;
                self.nodes[i].pg.streaming = false;
            }
            Action::Promote => {
                if self.veto_per_mille.is_some_and(|n| self.rng.chance(n)) {
                    self.stats.vetoes += 1;
                    return Err(JobFailure::Vetoed("exit status: 1".into()));
                }
                let tl = self.next_tl;
                self.next_tl += 1;
                let pg = &mut self.nodes[i].pg;
                if !pg.running {
                    return Err("not running".into());
                }
                pg.history.push(TimelineSwitch {
                    timeline: Timeline(pg.tl),
                    lsn: Lsn(pg.lsn),
                });
                pg.tl = tl;
                pg.in_recovery = false;
                pg.upstream = None;
                pg.streaming = false;
            }
            Action::Demote { .. } => {
                // Stopped and restarted as a standby: from now on not writable.
                let pg = &mut self.nodes[i].pg;
                pg.in_recovery = true;
                pg.upstream = None;
                pg.streaming = false;
                self.nodes[i].fence_at = None;
                self.nodes[i].unresponsive_until = 0; // restarted: a new postmaster
            }
            Action::Follow { leader } => {
                let up = leader_idx(leader, &self.nodes);
                let pg = &mut self.nodes[i].pg;
                pg.running = true;
                pg.in_recovery = true;
                pg.upstream = Some(up);
                self.nodes[i].fence_at = None;
            }
            Action::Rewind { from } => {
                let up = self.nodes[leader_idx(from, &self.nodes)].pg.clone();
                if self.rng.chance(150) {
                    return Err("pg_rewind: could not find common ancestor".into());
                }
                self.stats.rewinds += 1;
                let pg = &mut self.nodes[i].pg;
                let base =
                    rejoin::switch_point(&up.history, Timeline(pg.tl)).map_or(up.lsn, |l| l.0);
                pg.tl = up.tl;
                pg.history = up.history.clone();
                pg.lsn = base.min(up.lsn);
                pg.in_recovery = true;
            }
            Action::Reclone { from, .. } => {
                let up = self.nodes[leader_idx(from, &self.nodes)].pg.clone();
                let pg = &mut self.nodes[i].pg;
                *pg = Pg {
                    data: true,
                    running: false,
                    in_recovery: true,
                    tl: up.tl,
                    lsn: up.lsn,
                    history: up.history,
                    ..Pg::default()
                };
            }
            other => unreachable!("not a job: {other:?}"),
        }
        Ok(())
    }

    fn observe(&self, i: usize) -> Observation {
        let n = &self.nodes[i];
        let name_of = |u: usize| self.nodes[u].name.clone();
        let replicas = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, m)| m.pg.upstream == Some(i) && m.pg.running && m.pg.in_recovery)
            .map(|(_, m)| ReplicaState {
                name: m.name.clone(),
                streaming: m.pg.streaming,
                flush_lsn: Lsn(m.pg.lsn),
                replay_lsn: Lsn(m.pg.lsn),
            })
            .collect();
        let local = LocalPg {
            data: if n.pg.data {
                DataDir::Present {
                    system_id: SystemId(42),
                }
            } else {
                DataDir::Missing
            },
            running: n.pg.running,
            in_recovery: n.pg.in_recovery,
            timeline: Timeline(n.pg.tl),
            lsn: Lsn(n.pg.lsn),
            replay_lsn: Lsn(n.pg.lsn),
            upstream: n.pg.upstream.map(name_of),
            streaming: n.pg.streaming,
            sync_applied: n.pg.sync.clone(),
            replicas,
            slots: n.pg.slots.clone(),
            unresponsive: n.pg.running && n.unresponsive_until > self.now,
            refusing_connections: false,
            // Rewinds here end or fail as a whole (core scenarios and
            // faults::agent_killed_mid_rewind cover one cut short).
            rewind_incomplete: false,
            synced_slots: 0,
            // Stalled disks are not modelled (core scenarios and faults::leader_disk_stalled).
            wal_waiting_at: None,
            // The simulation reports a stopped member's true end of WAL.
            crashed: false,
            // Nobody runs ALTER SYSTEM here (core scenario a_setting_pgha_owns_changed_by_alter_system_is_reset).
            altered_by_alter_system: Vec::new(),
            // Settings do not change here (core scenario
            // a_standby_whose_replay_waits_for_the_primarys_settings_is_restarted, day2 tests).
            replay_held_by: Vec::new(),
        };
        let cluster = if n.reachable {
            StoreView::Up(Box::new(ClusterView {
                initialize: self.store.initialize,
                leader: self.store.leader.map(|(h, revision, _)| LeaderKey {
                    holder: name_of(h),
                    revision,
                }),
                members: self
                    .store
                    .members
                    .iter()
                    .map(|(k, v)| (k.clone(), v.0.clone()))
                    .collect(),
                config: self.config.clone(),
                sync: self.store.sync.clone(),
                sync_revision: self.store.sync_revision,
                switchover: self.store.switchover.clone(),
                history: self.store.history.clone(),
                leader_position: self.store.position.clone(),
                failsafe: self.store.failsafe.clone(),
                failsafe_revision: self.store.failsafe_revision,
            }))
        } else {
            StoreView::Down {
                error: "partitioned".into(),
            }
        };
        let now = Millis(self.now + n.offset);
        Observation {
            failsafe_promised_until: (n.promised_until > self.now)
                .then(|| Millis(n.promised_until + n.offset)),
            leader_reachable: Some(true),
            ..Observation::new(now, local, cluster, n.outcomes.clone())
        }
    }

    fn step(&mut self, i: usize) {
        let obs = self.observe(i);
        if let StoreView::Up(view) = &obs.cluster {
            self.nodes[i].last_view = Some((**view).clone());
        }
        self.nodes[i].outcomes.clear();
        self.nodes[i].woken = None;
        let decision = self.nodes[i].member.as_mut().unwrap().step(&obs);
        if tracing() {
            eprintln!(
                "{:>6} {} {} {:?}",
                self.now, self.nodes[i].name, decision.reason, decision.actions
            );
        }
        let wake = decision.wake_at.0.saturating_sub(self.nodes[i].offset);
        self.nodes[i].wake_at = wake.max(self.now + 1);
        self.update_fence(i, &obs.local);
        if self.nodes[i].reachable {
            self.nodes[i].last_seen_leader = self.store.leader.map(|l| l.0);
        } else if self.nodes[i]
            .member
            .as_ref()
            .is_some_and(|m| m.holds_lease(obs.now))
        {
            self.ask_failsafe(i, obs.now);
        }
        for action in decision.actions {
            self.execute(i, obs.now, action);
        }
    }

    /// What the agent's failsafe round does (pgha-agent's failsafe.rs): a leader cut off from
    /// the store asks every member its core names (`Member::failsafe_confirmers`: the list in
    /// its last read, and those it sent since); a member confirms
    /// only when its agent runs, cannot reach the store either and last saw this leader, and
    /// then promises not to take the lease for a ttl. All confirm: the leader may trust its
    /// lease for a ttl from the request.
    fn ask_failsafe(&mut self, leader: usize, requested_at: Millis) {
        let node = &self.nodes[leader];
        let (Some(member), Some(view)) = (&node.member, &node.last_view) else {
            return;
        };
        let Some(asked) = member.failsafe_confirmers(view) else {
            return;
        };
        let confirmers: Vec<usize> = asked
            .iter()
            .filter_map(|m| self.nodes.iter().position(|n| &n.name == m))
            .collect();
        if confirmers.is_empty() {
            return;
        }
        let now = self.now;
        let all = confirmers.iter().all(|&c| {
            let n = &self.nodes[c];
            n.member.is_some()
                && n.paused_until <= now
                && !n.reachable
                && n.last_seen_leader == Some(leader)
        });
        if !all {
            return;
        }
        let ttl = self.config.ttl_ms;
        for &c in &confirmers {
            self.nodes[c].promised_until = self.nodes[c].promised_until.max(now + ttl);
        }
        self.nodes[leader]
            .outcomes
            .push(Outcome::FailsafeConfirmed {
                requested_at,
                promised_ms: ttl,
            });
        self.nodes[leader].woken.get_or_insert(now + TICK);
    }

    /// A lease result comes back at once, or late when the store is slow.
    fn deliver(&mut self, i: usize, outcome: Outcome) {
        if self.slow_store {
            let at = self.now + self.rng.below(2_000);
            self.nodes[i].in_flight.push((at, outcome));
        } else {
            self.nodes[i].outcomes.push(outcome);
        }
    }

    fn execute(&mut self, i: usize, sent: Millis, action: Action) {
        let reachable = self.nodes[i].reachable;
        let ttl = self.config.ttl_ms;
        let now = self.now;
        let mut changed = reachable;
        match &action {
            Action::AcquireLeader { ttl } => {
                let outcome = if !reachable {
                    Outcome::LeaderUnknown
                } else if self.store.leader.is_some() {
                    Outcome::LeaderRefused
                } else {
                    self.store.revision += 1;
                    let revision = self.store.revision;
                    self.store.leader = Some((i, revision, now + ttl.millis()));
                    self.check_best_candidate(i);
                    Outcome::LeaderAcquired {
                        requested_at: sent,
                        revision,
                        ttl: *ttl,
                    }
                };
                self.deliver(i, outcome);
                self.nodes[i].woken = Some(now);
            }
            Action::RenewLeader { revision, ttl } => {
                let outcome = match self.store.leader.as_mut() {
                    _ if !reachable => Outcome::LeaderUnknown,
                    Some(l) if l.0 == i && l.1 == *revision => {
                        l.2 = now + ttl.millis();
                        Outcome::LeaderRenewed {
                            requested_at: sent,
                            revision: *revision,
                            ttl: *ttl,
                        }
                    }
                    _ => Outcome::LeaderRefused,
                };
                changed = false;
                self.deliver(i, outcome);
            }
            Action::ReleaseLeader { revision } => {
                if reachable
                    && self
                        .store
                        .leader
                        .is_some_and(|l| l.0 == i && l.1 == *revision)
                {
                    self.store.leader = None;
                    self.store.leader_gone_at = Some(now);
                }
            }
            Action::PublishMember(record) => {
                if reachable {
                    let name = self.nodes[i].name.clone();
                    self.store.members.insert(name, (record.clone(), now + ttl));
                }
            }
            Action::WriteInitialize { system_id } => {
                if reachable {
                    self.store.initialize.get_or_insert(*system_id);
                }
            }
            // What a leader publishes lands only while its term holds.
            Action::PublishSync {
                leader_revision, ..
            }
            | Action::PublishFailsafe {
                leader_revision, ..
            }
            | Action::PublishPosition {
                leader_revision, ..
            } => {
                if reachable && self.store.leader.is_some_and(|l| l.1 == *leader_revision) {
                    match &action {
                        Action::PublishSync { set, .. } => {
                            self.store.revision += 1;
                            self.store.sync = set.clone();
                            self.store.sync_revision = self.store.revision;
                        }
                        Action::PublishFailsafe { list, .. } => {
                            self.store.revision += 1;
                            self.store.failsafe = Some(list.clone());
                            self.store.failsafe_revision = self.store.revision;
                        }
                        Action::PublishPosition { position, .. } => {
                            self.store.position = Some(position.clone())
                        }
                        _ => unreachable!(),
                    }
                }
            }
            Action::ClearSwitchover { revision } => {
                if reachable
                    && self
                        .store
                        .switchover
                        .as_ref()
                        .is_some_and(|s| s.revision == *revision)
                {
                    self.store.switchover = None;
                }
            }
            Action::RecordHistory(event) => {
                if reachable {
                    match event.kind {
                        EventKind::Failover | EventKind::ManualFailover => {
                            self.stats.failovers += 1
                        }
                        EventKind::Switchover => self.stats.switchovers += 1,
                        _ => {}
                    }
                    self.store.history.push(event.clone());
                }
            }
            Action::SetSync(applied) => self.nodes[i].pg.sync = applied.clone(),
            Action::CreateSlots { names } => self.nodes[i].pg.slots.extend(names.iter().cloned()),
            Action::RestartWalReceiver => {}
            Action::DropSlots { names } => self.nodes[i].pg.slots.retain(|s| !names.contains(s)),
            job => {
                changed = false;
                if let Action::Demote { mode, .. } = job {
                    if *mode == StopMode::Fast {
                        // A clean shutdown sends every WAL record to connected standbys.
                        let primary = self.nodes[i].pg.clone();
                        for n in &mut self.nodes {
                            if n.pg.upstream == Some(i) && n.pg.streaming {
                                n.pg.lsn = primary.lsn;
                                n.pg.tl = primary.tl;
                                n.pg.history = primary.history.clone();
                            }
                        }
                    }
                }
                let done_at = now + self.job_duration(job);
                self.nodes[i].job = Some(Job {
                    action: action.clone(),
                    done_at,
                });
            }
        }
        if changed
            && !matches!(
                action,
                Action::SetSync(_)
                    | Action::CreateSlots { .. }
                    | Action::DropSlots { .. }
                    | Action::RestartWalReceiver
            )
        {
            self.store.revision += 1;
            self.wake_all();
        }
    }

    /// Failsafe's safety argument: every member of `w`'s failsafe list has promised not to
    /// take the lease (and a member outside the list does not run while they could be).
    fn promises_hold_for(&self, w: usize) -> bool {
        let Some(list) = self.store.failsafe.as_ref() else {
            return false;
        };
        if list.leader != self.nodes[w].name || list.confirmers().next().is_none() {
            return false;
        }
        list.confirmers().all(|m| {
            self.nodes
                .iter()
                .find(|n| &n.name == m)
                .is_some_and(|n| n.promised_until > self.now)
        })
    }

    /// I1: at most one writable PostgreSQL, and only the live lease holder (or, in a store
    /// outage, a leader every listed member promised not to replace).
    fn check_one_writer(&mut self) {
        let writable: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| writable(&self.nodes[i].pg))
            .collect();
        for &w in &writable {
            if !self.was_writable[w] {
                self.check_acknowledged_writes_kept(w);
            }
        }
        for i in 0..self.nodes.len() {
            self.was_writable[i] = writable.contains(&i);
        }
        // The store's set covers every standby the writable primary's PostgreSQL counts.
        if let Some(&w) = writable.first() {
            let set = &self.store.sync;
            let uncovered: Vec<&MemberName> = self.nodes[w]
                .pg
                .sync
                .names
                .iter()
                .filter(|n| n.as_str() != sync::NO_STANDBY && !set.members.contains(*n))
                .collect();
            if !uncovered.is_empty() && self.config.synchronous_mode != SyncMode::Off {
                self.fail(format!(
                    "{} counts {uncovered:?} for commits, outside the published set {:?}",
                    self.nodes[w].name, set.members
                ));
            }
        }
        if writable.len() > 1 {
            self.fail(format!("two writable primaries: {writable:?}"));
        }
        if let Some(&w) = writable.first() {
            // Failsafe: confirmed by every listed member, each promising not to take the lease,
            // the leader may outlive the store's lease while nobody else holds it.
            let confirmed = self.store.leader.is_none() && self.promises_hold_for(w);
            if self.store.leader.map(|l| l.0) != Some(w) && !confirmed {
                self.fail(format!("{} writable without the lease", self.nodes[w].name));
            }
        }
    }

    fn track_health(&mut self) {
        for n in &mut self.nodes {
            let healthy = n.member.is_some()
                && n.reachable
                && n.pg.running
                && n.pg.in_recovery
                && n.unresponsive_until <= self.now
                && n.paused_until <= self.now
                // I3 speaks of the standbys the cluster can see: a member whose key expired
                // (cut off from the store), or whose record still shows the primary it was
                // a moment ago, is no visible candidate.
                && self
                    .store
                    .members
                    .get(&n.name)
                    .is_some_and(|(r, _)| r.running && r.in_recovery);
            if !healthy {
                n.healthy_since = None;
            } else if n.healthy_since.is_none() {
                n.healthy_since = Some(self.now);
            }
        }
    }

    /// I3: a member that wins the lease to fail over is at least as far as every member that
    /// stayed healthy and eligible through the whole leaderless period.
    fn check_best_candidate(&self, winner: usize) {
        let w = &self.nodes[winner].pg;
        if !w.data || !w.running || !w.in_recovery {
            return;
        }
        let Some(gone) = self.store.leader_gone_at else {
            return;
        };
        let from = self
            .store
            .switchover
            .as_ref()
            .and_then(|s| s.request.from.clone());
        for (i, n) in self.nodes.iter().enumerate() {
            // Healthy through the whole leaderless period, and still now (this very tick).
            let stayed_healthy =
                n.healthy_since.is_some_and(|s| s < gone) && n.pg.running && n.pg.in_recovery;
            // I3 in synchronous modes: only members of the published set are eligible.
            let set = &self.store.sync.members;
            let outside_set = match self.config.synchronous_mode {
                SyncMode::Off => false,
                SyncMode::On => !set.is_empty() && !set.contains(&n.name),
                SyncMode::Strict => !set.contains(&n.name),
            } && self.store.sync.leader.as_ref() != Some(&n.name);
            // The set's old leader counts only as a last resort: a set member may win over it
            // (its WAL may end with commits whose synchronous wait was cut short).
            let only_set_leader = self.config.synchronous_mode != SyncMode::Off
                && !set.is_empty()
                && !set.contains(&n.name)
                && self.store.sync.leader.as_ref() == Some(&n.name);
            let winner_in_set = set.contains(&self.nodes[winner].name);
            // ... but only when every member of the set is a visible candidate (its record in
            // the store says it runs as a standby), as the core judges it.
            let set_complete = set.iter().all(|m| {
                self.store
                    .members
                    .get(m)
                    .is_some_and(|(r, _)| r.running && r.in_recovery && !r.tags.nofailover)
            });
            let vetoed = self
                .store
                .members
                .get(&n.name)
                .is_some_and(|(r, _)| r.promotion_vetoed);
            if i == winner
                || !stayed_healthy
                || n.tags.nofailover
                || vetoed
                || outside_set
                || (only_set_leader && winner_in_set && set_complete)
                || Some(&n.name) == from.as_ref()
            {
                continue;
            }
            if (n.pg.tl, n.pg.lsn) > (w.tl, w.lsn) {
                self.fail(format!(
                    "{} won at {}/{} but {} is at {}/{}",
                    self.nodes[winner].name, w.tl, w.lsn, n.name, n.pg.tl, n.pg.lsn
                ));
            }
        }
    }
}

/// `PGHA_SIM_TRACE=1` prints every decision.
#[allow(clippy::disallowed_methods)] // a test setting, read from the environment
fn tracing() -> bool {
    std::env::var("PGHA_SIM_TRACE").is_ok()
}

fn writable(pg: &Pg) -> bool {
    pg.running && !pg.in_recovery
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
