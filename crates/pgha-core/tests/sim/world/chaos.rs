//! The random events of a chaotic run: crashes, partitions, pauses, stalls, live config changes.

use super::*;

impl World {
    pub(super) fn random_event(&mut self) {
        self.remove_key_if_due();
        if self.cold_start_pending() {
            return;
        }
        if !self.rng.chance(8) {
            return;
        }
        if self.cold_stop_per_mille > 0 && self.rng.chance(self.cold_stop_per_mille) {
            self.stop_whole_cluster();
            return;
        }
        if self.pause_all_per_mille > 0 && self.rng.chance(self.pause_all_per_mille) {
            self.pause_every_agent();
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
                // one partition in three is a slow link instead (chosen by the clock, not
                // drawn: every seed keeps its draws)
                self.nodes[i].slow_link = self.now % 3 == 0;
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
                // PostgreSQL stops answering probes (slots exhausted, I/O stall) for a while;
                // in runs with full lease disks, one time in two (by the clock, not drawn: every
                // seed keeps its draws) the lease file's file system fills up instead
                let until = self.now + self.rng.below(15_000);
                if self.full_lease_disks && (self.now / TICK) % 2 == 1 {
                    self.fill_lease_disk(i, until);
                } else {
                    self.nodes[i].unresponsive_until = until;
                }
            }
            // in runs with keys removed early, one time in two (by the clock, not drawn: every
            // seed keeps its draws)
            10 if self.early_removals && (self.now / TICK) % 2 == 0 => self.remove_key_early(),
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
                // a standby's replication falls behind for a while; one time in three (by the
                // clock, not drawn: every seed keeps its draws) it stands still instead
                self.nodes[i].lagging_until = self.now + self.rng.below(20_000);
                self.nodes[i].lagging_since = self.now;
                self.nodes[i].stalled_stream = self.now % 3 == 1;
                if self.nodes[i].stalled_stream && self.counted_by_its_primary(i) {
                    self.stats.stalled_streams.0 += 1;
                }
                // A stream that stands still is, one time in two (by the clock), the standby's
                // data disk stalled: its data directory takes no write either.
                if self.nodes[i].stalled_stream && self.now % 2 == 0 {
                    let n = &mut self.nodes[i];
                    n.disk_stalled = Some((self.now, n.lagging_until));
                    self.stats.disk_stalls.0 += 1;
                }
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
    /// between `on` and `strict`, or the counting method (asynchronous seeds stay so); in
    /// clusters of four members or more, sometimes the synchronous count between 1 and 2.
    fn change_sync_config(&mut self) {
        if self.config.synchronous_mode == SyncMode::Off {
            return;
        }
        if self.nodes.len() >= 4 && self.rng.chance(300) {
            self.config.synchronous_count = 3 - self.config.synchronous_count.min(2);
        } else if self.rng.chance(500) {
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

    pub(super) fn restart_agent(&mut self, i: usize) {
        if self.nodes[i].member.is_some() {
            return;
        }
        let n = &mut self.nodes[i];
        n.member = Some(new_member(&n.name, &n.tags, &self.config));
        n.held_term = None;
        n.key_written = None;
        n.stream_stop_done = false;
        n.last_view = None;
        n.outcomes.clear();
        n.in_flight.clear();
        n.paused_until = 0;
        n.wake_at = self.now;
    }

    /// `pgha config set ttl_ms=... safety_margin_ms=...` while the cluster runs: 10 s to 6 s
    /// and back, or to 3 s in runs with keys removed early (a lease on the old ttl outlives
    /// the window the new one gives a vacancy).
    pub(super) fn change_ttl(&mut self) {
        let (ttl, margin) = match self.config.ttl_ms {
            10_000 if self.early_removals => (3_000, 600),
            10_000 => (6_000, 1_500),
            _ => (10_000, 2_500),
        };
        let lowered = ttl < self.config.ttl_ms;
        self.config.ttl_ms = ttl;
        self.config.safety_margin_ms = margin;
        self.config.loop_wait_ms = 1_000;
        if lowered && self.early_removals {
            self.stall_then_remove_after_lowering();
        }
        self.wake_all();
    }

    /// A planned switchover asked once the faults are over and the cluster calm (those asked
    /// among the faults are mostly overtaken by them: a new term, the target gone), then a
    /// calm run: it must converge again.
    pub fn switch_over_in_calm(&mut self) {
        self.request_switchover();
        self.run_calm(30_000);
        self.assert_converged();
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
}
