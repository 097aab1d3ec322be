//! The whole cluster stopped and started again: every member leaving as its agent does on a
//! clean stop (`pgha up` ended, every host's service stopped), or every host losing power at
//! once; then each agent started again, in any order, and the check that the first member to
//! take writes holds what the last leader had written. Or every agent paused at once (the
//! hosts' VMs stalled together, PostgreSQL and the supervisors running on).

use super::*;

/// A whole-cluster stop whose start is still being watched.
pub(super) struct ColdStart {
    /// The last leader (the one the `position` key names, the writable holder of the lease),
    /// and what the first member to take writes must hold: in asynchronous mode all its WAL
    /// at the stop, in synchronous modes the newest synchronously acknowledged commit (a set
    /// member wins over the set's old leader, whose WAL may end with commits whose wait was
    /// cut short). `None` when the cluster was mid-change then, or nothing was acknowledged.
    last_leader: Option<(usize, Acknowledged)>,
    /// Whether the members stopped cleanly (their keys deleted) or lost power (keys expire).
    clean: bool,
    /// When each member's agent starts again.
    restarts: Vec<u64>,
}

impl World {
    /// Has `per_mille` of the random events in a thousand stop the whole cluster and start it
    /// again (none unless set: every other run keeps its draws).
    pub fn stopping_whole(mut self, per_mille: u64) -> World {
        self.cold_stop_per_mille = per_mille;
        self
    }

    /// Has `per_mille` of the random events in a thousand pause every agent at once, each for
    /// up to three ttls (none unless set).
    pub fn pausing_whole(mut self, per_mille: u64) -> World {
        self.pause_all_per_mille = per_mille;
        self
    }

    /// Every agent paused at once, each until its own moment within three ttls.
    pub(super) fn pause_every_agent(&mut self) {
        let ttl = self.config.ttl_ms;
        let until = self.now + self.rng.below(3 * ttl);
        for n in &mut self.nodes {
            n.paused_until = n.paused_until.max(until + self.rng.below(ttl / 3));
        }
        self.stats.whole_pauses += 1;
    }

    /// Whether a cold start is still watched (no other fault is injected meanwhile: the check
    /// speaks of a cluster that was stopped and started, nothing else).
    pub(super) fn cold_start_pending(&mut self) -> bool {
        let Some(cold) = &self.cold_start else {
            return false;
        };
        // Watched until a member takes writes, or long after the last start (a cluster that
        // cannot elect then is caught by the convergence check at the end).
        let last = cold.restarts.iter().copied().max().unwrap_or(0);
        if self.now > last + 6 * self.config.ttl_ms {
            self.cold_start = None;
            return false;
        }
        true
    }

    /// Stops every member at the same moment; draws when each starts again.
    pub(super) fn stop_whole_cluster(&mut self) {
        // Maintenance on a working network: what was cut, stalled or paused is over first.
        for n in &mut self.nodes {
            n.reachable = true;
            n.partition_until = 0;
            n.paused_until = 0;
            n.unresponsive_until = 0;
            n.lagging_until = 0;
            n.disk_stalled = None;
        }
        if self.store_down_until > 0 {
            self.store_back();
        }
        let last_leader = self.settled_leader().and_then(|(leader, pg)| {
            let must_hold = match self.config.synchronous_mode {
                SyncMode::Off => Acknowledged {
                    tl: pg.tl,
                    lsn: pg.lsn,
                    confirmed_by: Vec::new(),
                },
                _ => self.acknowledged.clone()?,
            };
            Some((leader, must_hold))
        });
        let clean = !self.rng.chance(300);
        // One after the other, from any of them: a standby stopped before the primary does
        // not receive what the primary's shutdown sends.
        let first = self.rng.below(self.nodes.len() as u64) as usize;
        for k in 0..self.nodes.len() {
            let i = (first + k) % self.nodes.len();
            if clean {
                self.leave(i);
            } else {
                self.power_off(i);
            }
        }
        let ttl = self.config.ttl_ms;
        let down = self.rng.below(3 * ttl);
        // Mostly every agent within a third of a ttl of the first, as a cluster's hosts come
        // back together; sometimes spread over two ttls.
        let spread = if self.rng.chance(300) {
            2 * ttl
        } else {
            ttl / 3
        };
        let restarts: Vec<u64> = (0..self.nodes.len())
            .map(|_| self.now + down + self.rng.below(spread))
            .collect();
        for (n, &at) in self.nodes.iter_mut().zip(&restarts) {
            n.restart_at = Some(at);
        }
        if tracing() {
            eprintln!(
                "{:>6} whole cluster {}; agents start again at {restarts:?}; last leader and \
                 what the first writer must hold: {last_leader:?}",
                self.now,
                if clean { "stopped" } else { "lost power" },
            );
        }
        self.stats.cold_stops += 1;
        self.cold_start = Some(ColdStart {
            last_leader,
            clean,
            restarts,
        });
    }

    /// The leader a stop leaves as the last one: the writable holder of the lease whose name
    /// the `position` key carries, with its WAL.
    fn settled_leader(&self) -> Option<(usize, Pg)> {
        let (holder, _, _) = self.store.leader?;
        let named = self.store.position.as_ref()?.leader == self.nodes[holder].name;
        let pg = &self.nodes[holder].pg;
        (named && writable(pg) && self.nodes[holder].member.is_some()).then(|| (holder, pg.clone()))
    }

    /// A clean stop of member `i`, as pgha-agent's `leave`: its job cancelled, PostgreSQL
    /// stopped fast (a primary sends every WAL record to its connected standbys first), the
    /// failsafe list left naming only itself, the leader key of the term it last heard it held
    /// released, its member key deleted. A member whose agent was gone has its PostgreSQL stopped by its supervisor
    /// and its keys left to expire.
    fn leave(&mut self, i: usize) {
        self.stop_postgres_cleanly(i);
        let n = &mut self.nodes[i];
        n.fence_at = None;
        if n.member.take().is_none() {
            return;
        }
        n.job = None;
        n.in_flight.clear();
        n.outcomes.clear();
        let name = n.name.clone();
        let held = n.held_term.take();
        let holds_its_term = self
            .store
            .leader
            .is_some_and(|l| l.0 == i && held == Some(l.1));
        if holds_its_term {
            let lists_others = self
                .store
                .failsafe
                .as_ref()
                .is_some_and(|l| l.leader == name && l.confirmers().next().is_some());
            if lists_others {
                self.store.revision += 1;
                self.store.failsafe = Some(FailsafeList {
                    leader: name.clone(),
                    members: [name.clone()].into(),
                });
                self.store.failsafe_revision = self.store.revision;
            }
            self.store.leader = None;
            self.store.leader_gone_at = Some(self.now);
        }
        self.store.members.remove(&name);
        self.store.revision += 1;
    }

    fn stop_postgres_cleanly(&mut self, i: usize) {
        if writable(&self.nodes[i].pg) {
            self.send_wal_to_standbys_of(i);
        }
        let pg = &mut self.nodes[i].pg;
        pg.running = false;
        pg.streaming = false;
    }

    /// Member `i`'s host loses power: agent and PostgreSQL gone at once, nothing sent; its
    /// keys stay until their leases expire.
    fn power_off(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        n.member = None;
        n.held_term = None;
        n.job = None;
        n.in_flight.clear();
        n.outcomes.clear();
        n.fence_at = None;
        n.pg.running = false;
        n.pg.streaming = false;
    }

    /// Agents whose time came start again (their PostgreSQL stays stopped until their core
    /// starts it).
    pub(super) fn start_stopped_agents(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].restart_at.is_some_and(|at| at <= self.now) {
                self.nodes[i].restart_at = None;
                self.restart_agent(i);
            }
        }
    }

    /// At the first member to take writes after a whole-cluster stop whose last leader started
    /// again within a third of a ttl of the first agent (the wait the core allows it is a
    /// ttl): it holds every synchronously acknowledged commit, and after a clean stop in
    /// asynchronous mode all the last leader had written. Cut short, the last leader's own
    /// writes would be rewound away by nothing but a restart. (After every host lost power an
    /// asynchronous primary's last writes may be lost as in any crash of it: not checked.)
    pub(super) fn check_cold_start(&mut self, w: usize) {
        let Some(cold) = self.cold_start.take() else {
            return;
        };
        let Some((leader, must_hold)) = &cold.last_leader else {
            return;
        };
        let first = cold.restarts.iter().copied().min().unwrap_or(0);
        let on_time = |m: usize| cold.restarts[m] <= first + self.config.ttl_ms / 3;
        // In synchronous modes a standby that confirmed the commit holds it as well.
        let in_time = on_time(*leader) || must_hold.confirmed_by.iter().any(|&c| on_time(c));
        let promised = cold.clean || self.config.synchronous_mode != SyncMode::Off;
        if !in_time || !promised {
            return;
        }
        self.stats.cold_starts_checked += 1;
        if !holds(&self.nodes[w].pg, must_hold) {
            self.fail(format!(
                "after {} of the whole cluster, {} took writes at {}/{} without what the last \
                 leader {} had written (up to {}/{}, {:?} mode)",
                if cold.clean {
                    "a clean stop"
                } else {
                    "a power loss"
                },
                self.nodes[w].name,
                self.nodes[w].pg.tl,
                self.nodes[w].pg.lsn,
                self.nodes[*leader].name,
                must_hold.tl,
                must_hold.lsn,
                self.config.synchronous_mode
            ));
        }
    }
}
