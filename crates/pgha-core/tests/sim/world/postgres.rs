//! Simulated PostgreSQL: acknowledgements, replication, jobs, and the fencing supervisor.

use super::*;

impl World {
    /// What PostgreSQL acknowledges on the primary this tick. With `synchronous_standby_names`
    /// set, a commit returns once the standbys it counts have flushed it (`FIRST k`: the first
    /// k listed standbys that stream from it; `ANY k`: any k of the listed ones); empty, at
    /// once, with no promise to keep. The newest synchronous acknowledgement goes in the ledger.
    pub(super) fn acknowledge(&mut self) {
        let primaries: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| writable(&self.nodes[i].pg))
            .collect();
        for &p in &primaries {
            let tl = self.nodes[p].pg.tl;
            let newer_writes = primaries.iter().any(|&q| self.nodes[q].pg.tl > tl);
            self.acknowledge_on(p, newer_writes);
        }
    }

    /// [`Self::acknowledge`] on writable primary `p` (`newer_writes`: a primary promoted
    /// after it, on a newer timeline, writes too).
    fn acknowledge_on(&mut self, p: usize, newer_writes: bool) {
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
        let lsn = flushed[k - 1].min(primary.lsn);
        // On the oldest timeline that holds it: a position before a switch point of the
        // primary's history is that timeline's WAL as much as the newer ones' (a standby not
        // yet past the switch confirms it from the older timeline).
        let tl = primary
            .history
            .iter()
            .find(|switch| lsn <= switch.lsn.0)
            .map_or(primary.tl, |switch| switch.timeline.0);
        if !self.new_acknowledgement_on_a_removed_key(p, lsn, newer_writes) {
            return;
        }
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

    /// Whether `i` streams from a writable primary whose `synchronous_standby_names` lists it.
    pub(super) fn counted_by_its_primary(&self, i: usize) -> bool {
        let n = &self.nodes[i];
        n.pg.streaming
            && n.pg.upstream.is_some_and(|p| {
                let up = &self.nodes[p].pg;
                writable(up) && up.sync.names.contains(&n.name)
            })
    }

    /// A clean (fast) shutdown of `i`'s PostgreSQL sends every WAL record to the standbys
    /// streaming from it.
    pub(super) fn send_wal_to_standbys_of(&mut self, i: usize) {
        let primary = self.nodes[i].pg.clone();
        for n in &mut self.nodes {
            if n.pg.upstream == Some(i) && n.pg.streaming {
                n.pg.lsn = primary.lsn;
                n.pg.tl = primary.tl;
                n.pg.history = primary.history.clone();
            }
        }
    }

    /// The supervisors: each kills its PostgreSQL once its fencing deadline has passed.
    pub(super) fn supervise(&mut self) {
        let now = self.now;
        for n in &mut self.nodes {
            // Fenced; or killed while blocked, and the block ended: they die.
            let killed_unblocked = n.pg.killed && n.unresponsive_until <= now;
            if n.pg.running && (n.fence_at.is_some_and(|at| at <= now) || killed_unblocked) {
                n.pg.running = false;
                n.pg.streaming = false;
            }
            if !n.pg.running {
                n.unresponsive_until = 0; // a new postmaster answers again
                n.pg.killed = false;
            }
        }
    }

    pub(super) fn replicate(&mut self) {
        for i in 0..self.nodes.len() {
            if writable(&self.nodes[i].pg) {
                let grow = self.rng.below(800);
                // A demotion ends the backends first: nothing is written while it runs (what
                // was written is sent as it begins, see `send_wal_to_standbys_of`).
                let demoting = self.nodes[i]
                    .job
                    .as_ref()
                    .is_some_and(|j| matches!(j.action, Action::Demote { .. }));
                if !demoting {
                    self.nodes[i].pg.lsn += grow;
                }
            }
        }
        for i in 0..self.nodes.len() {
            let pg = self.nodes[i].pg.clone();
            let source = pg.upstream.map(|u| self.nodes[u].pg.clone());
            let streaming = match source {
                Some(up) if pg.running && pg.in_recovery && writable(&up) => compatible(&pg, &up),
                _ => false,
            };
            let n = &mut self.nodes[i];
            let lagging = n.lagging_until > self.now;
            let stalled = lagging && n.stalled_stream;
            // A stalled stream's connection ends once the replication timeout passes.
            let timeout = self.config.replication_timeout().as_millis() as u64;
            let timed_out = stalled && self.now.saturating_sub(n.lagging_since) >= timeout;
            n.pg.streaming = streaming && !timed_out;
            if streaming && !self.rng.chance(200) {
                let up = &self.nodes[pg.upstream.unwrap()].pg.clone();
                let step = self.rng.below(300);
                if stalled {
                    continue; // nothing received, nothing flushed
                }
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

    pub(super) fn job_duration(&mut self, i: usize, action: &Action) -> u64 {
        match action {
            Action::Promote { .. } if self.slow_promote => 500 + self.rng.below(4_000),
            Action::Promote { .. } => 50 + self.rng.below(200),
            Action::Demote { .. } => self.rng.below(2_000),
            Action::Reclone { .. } => 1_000 + self.rng.below(3_000),
            // pgha-agent's bound on the wait for the receiver's exit
            Action::StopStreaming if self.nodes[i].receiver_held_until > self.now => 2_000,
            _ => 50 + self.rng.below(600),
        }
    }

    pub(super) fn finish_jobs(&mut self) {
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
            if kind == JobKind::Promote && result.is_ok() {
                self.check_promotion_counts_a_standby(i);
            }
            self.nodes[i].stream_stop_done = kind == JobKind::StopStreaming && result.is_ok();
            self.nodes[i].outcomes.push(Outcome::Job { kind, result });
            self.nodes[i].woken.get_or_insert(self.now);
            // A postmaster a job brought up past its fencing deadline (the job waited on a
            // stalled disk while the agent was paused) never takes a write: its supervisor
            // refuses to spawn one past the deadline and kills one spawned before it at the
            // deadline, before any start could end (seed 383142 judged it writable first).
            self.supervise();
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
            Action::Promote { .. } => {
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
            Action::StopStreaming => {
                if !self.nodes[i].pg.running {
                    return Err("not running".into());
                }
                if self.nodes[i].receiver_held_until > self.now {
                    return Err("the WAL receiver still runs".into());
                }
                let pg = &mut self.nodes[i].pg;
                pg.upstream = None;
                pg.streaming = false;
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
}
