//! Driving a run: building the world, chaos then calm, ticks, and the final checks.

use super::*;

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
                    slow_link: false,
                    offset: rng.below(1_000_000),
                    rate_ppm: 0,
                    tags,
                    healthy_since: None,
                    fence_at: None,
                    lease_disk_full_until: 0,
                    fence_write_failed: false,
                    stream_stop_done: false,
                    receiver_held_until: 0,
                    paused_until: 0,
                    unresponsive_until: 0,
                    lagging_until: 0,
                    stalled_stream: false,
                    lagging_since: 0,
                    disk_stalled: None,
                    in_flight: Vec::new(),
                    last_seen_leader: None,
                    last_view: None,
                    promises: Vec::new(),
                    restart_at: None,
                    held_term: None,
                    key_written: None,
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
                leader_written: 0,
                members: BTreeMap::new(),
                sync: SyncSet::default(),
                sync_revision: 0,
                switchover: None,
                history: Vec::new(),
                initialize: None,
                leader_gone_at: Some(0),
                late_won: None,
                position: None,
                position_revision: 0,
                failsafe: None,
                failsafe_revision: 0,
            },
            config,
            slow_promote: false,
            veto_per_mille: None,
            cold_stop_per_mille: 0,
            cold_start: None,
            pause_all_per_mille: 0,
            full_lease_disks: false,
            early_removals: false,
            removed_early: Vec::new(),
            removed_early_at: None,
            removal_due: None,
            slow_store: false,
            store_down_until: 0,
            late_writes: Vec::new(),
            vetoed_when_sent: BTreeMap::new(),
            late_won_vetoed: Vec::new(),
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
            self.nodes[i].disk_stalled = None;
            self.nodes[i].receiver_held_until = 0;
            self.nodes[i].restart_at = None;
            if self.nodes[i].member.is_none() {
                self.restart_agent(i);
            }
        }
        self.slow_promote = false;
        self.slow_store = false;
        self.removal_due = None;
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

    pub(super) fn fail(&self, what: String) -> ! {
        let mut state = String::new();
        for n in &self.nodes {
            state += &format!(
                "\n  {} agent={} paused_until={} reachable={} fence_at={:?} clock offset={} rate={}ppm pg={:?} \
                 job={:?}",
                n.name,
                n.member.is_some(),
                n.paused_until,
                n.reachable,
                n.fence_at,
                n.offset,
                n.rate_ppm,
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
            .filter(|&i| writable(&self.nodes[i].pg))
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

    pub(super) fn wake_all(&mut self) {
        let delay = self.rng.below(60);
        for n in &mut self.nodes {
            n.woken.get_or_insert(self.now + delay);
        }
    }

    fn tick(&mut self) {
        self.now += TICK;
        self.start_stopped_agents();
        self.expire();
        self.land_late_writes();
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
                for outcome in arrived {
                    n.receive(outcome);
                }
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
}
