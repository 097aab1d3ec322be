//! The agents: what each observes, its step, and how it executes the decision.

use super::*;

impl World {
    /// What the agent writes into the lease file after a step (see pgha-agent's fence.rs).
    fn update_fence(&mut self, i: usize, local: &LocalPg) {
        let n = &mut self.nodes[i];
        let deadline = n.member.as_ref().and_then(|m| m.fence_deadline());
        let may_become_writable = n.member.as_ref().is_some_and(|m| m.job_may_make_writable());
        // Unsure (as the agent): an armed deadline stays, brought forward to what a renewal
        // sent and not answered allows.
        let cap = n.member.as_ref().and_then(|m| m.fence_cap());
        let unsure = match (n.fence_at, cap) {
            (Some(at), Some(cap)) => Some(at.min(n.world(cap.0))),
            (at, _) => at,
        };
        let wanted = match deadline {
            Some(_) if self.config.paused => None,
            Some(d) => Some(n.world(d.0)),
            None if may_become_writable => unsure,
            None if !n.pg.running => None,
            None if local.running && local.in_recovery && !local.unresponsive => None,
            None => unsure,
        };
        n.write_fence(wanted, self.now);
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
            // as pgha-agent: stopped by its agent's last job (a standby here with no upstream
            // runs no receiver)
            stream_stopped: n.stream_stop_done
                && n.pg.running
                && n.pg.in_recovery
                && n.pg.upstream.is_none(),
            sync_applied: n.pg.sync.clone(),
            replicas,
            slots: n.pg.slots.clone(),
            unresponsive: n.pg.running && n.unresponsive_until > self.now,
            // (a stopped PostgreSQL here leaves no process behind)
            killed: n.pg.killed || !n.pg.running,
            refusing_connections: false,
            // Rewinds here end or fail as a whole (core scenarios and
            // faults::processes::agent_killed_mid_rewind cover one cut short).
            rewind_incomplete: false,
            synced_slots: 0,
            // A primary's stalled disk is not modelled (core scenarios and
            // faults::disk_stalls::leader_disk_stalled); a standby's is (`disk_stalled`).
            wal_waiting_at: None,
            flushed_lsn: Lsn(n.pg.lsn),
            // The simulation reports a stopped member's true end of WAL.
            crashed: false,
            // Nobody runs ALTER SYSTEM here (core scenario
            // a_setting_pgha_owns_changed_by_alter_system_is_reset).
            altered_by_alter_system: Vec::new(),
            // Settings do not change here (core scenario
            // a_standby_whose_replay_waits_for_the_primarys_settings_is_restarted, day2 tests).
            replay_held_by: Vec::new(),
            // One position a node, its end of WAL (core scenario
            // a_set_member_still_replaying_its_own_wal_is_waited_for).
            replaying_local_wal: false,
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
                // The simulated store loses no key (core scenario
                // a_leader_puts_back_a_synchronous_set_the_store_lost; distributed::hand_edits).
                sync_from_memory: false,
                switchover: self.store.switchover.clone(),
                history: self.store.history.clone(),
                leader_position: self.store.position.clone(),
                position_revision: self.store.position_revision,
                failsafe: self.store.failsafe.clone(),
                failsafe_revision: self.store.failsafe_revision,
            }))
        } else {
            StoreView::Down {
                error: "partitioned".into(),
            }
        };
        let now = Millis(n.local(self.now));
        let fence_armed_at = n.fence_at.map(|at| Millis(n.local(at)));
        Observation {
            fence_armed_at,
            fence_stuck_at: (n.fence_write_failed).then(|| fence_armed_at.unwrap_or(now)),
            failsafe_promised_until: (n.promised_until() > self.now)
                .then(|| Millis(n.local(n.promised_until()))),
            leader_reachable: Some(true),
            data_dir_unwritable_since: n
                .disk_stalled
                .filter(|(_, until)| *until > self.now)
                .map(|(since, _)| Millis(n.local(since))),
            ..Observation::new(now, local, cluster, n.outcomes.clone())
        }
    }

    pub(super) fn step(&mut self, i: usize) {
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
        let wake = self.nodes[i].world(decision.wake_at.0);
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
        // As the agent: a promotion waits for the set publication before it (an error, or
        // no answer, and the plan stops there, its jobs reported not begun).
        let promotes = decision
            .actions
            .iter()
            .any(|a| matches!(a, Action::Promote { .. }));
        if promotes {
            self.judge_late_win(i);
        }
        let mut actions = decision.actions.into_iter();
        while let Some(action) = actions.next() {
            let publication = matches!(action, Action::PublishSync { .. });
            let answered = self.execute(i, obs.now, action);
            if promotes && publication && !answered {
                for kind in actions.by_ref().filter_map(|a| a.job()) {
                    self.nodes[i].outcomes.push(Outcome::Job {
                        kind,
                        result: Err(JobFailure::NotBegun("no answer".into())),
                    });
                }
            }
        }
    }

    /// What the agent's failsafe round does (pgha-agent's failsafe.rs): a leader cut off from
    /// the store asks every member its core names (`Member::failsafe_confirmers`: the list in
    /// its last read, and those it sent since); a member confirms
    /// only when its agent runs, cannot reach the store either and last saw this leader, and
    /// then promises not to take the lease for a ttl. All confirm: the leader may trust its
    /// lease for a ttl from the request. With the store slow, the confirmation reaches the
    /// leader up to a second late.
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
        let Some(term) = member.lease_revision() else {
            return;
        };
        for &c in &confirmers {
            // its promise runs on its own clock, a fifth longer than it says (as pgha-agent's)
            let until = self.nodes[c].world(self.nodes[c].local(now) + ttl + ttl / 5);
            self.nodes[c].promises.push((until, leader, term));
        }
        let confirmed = Outcome::FailsafeConfirmed {
            requested_at,
            promised_ms: ttl,
        };
        if self.slow_store {
            // The answers on their way while the leader steps on: it may read the store and
            // send a failsafe list meanwhile. The delay is not drawn, so that every seed keeps
            // the draws it had.
            let at = now + now % 997;
            self.nodes[leader].in_flight.push((at, confirmed));
        } else {
            self.nodes[leader].outcomes.push(confirmed);
        }
        self.nodes[leader].woken.get_or_insert(now + TICK);
    }

    /// A lease result comes back at once, or late when the store is slow.
    fn deliver(&mut self, i: usize, outcome: Outcome) {
        if self.slow_store {
            let at = self.now + self.rng.below(2_000);
            self.nodes[i].in_flight.push((at, outcome));
        } else {
            self.nodes[i].receive(outcome);
        }
    }

    /// Carries out `action`; whether a leader's publication landed and was answered (every
    /// other action: true).
    fn execute(&mut self, i: usize, sent: Millis, action: Action) -> bool {
        let mut answered = true;
        let reachable = self.nodes[i].reachable;
        let ttl = self.config.ttl_ms;
        let now = self.now;
        let mut changed = reachable;
        match &action {
            Action::AcquireLeader {
                ttl,
                failsafe_revision,
            } => {
                let outcome = if self.send_over_slow_link(i, &action) || !reachable {
                    Outcome::LeaderUnknown
                } else if self.acquisition_is_late(i) {
                    // its answer lost; it lands later, or not (`land_late_writes`)
                    let at = now + now % 2_000;
                    self.late_writes.push((at, i, action.clone(), None));
                    let vetoed = self.vetoed_members();
                    self.vetoed_when_sent.insert(i, vetoed);
                    Outcome::LeaderUnknown
                } else {
                    match self.take_leader_key(i, *ttl, *failsafe_revision) {
                        Some(revision) => {
                            self.nodes[i].key_written = Some(self.store.leader_written);
                            self.stats.disk_stalls.1 += self.check_best_candidate(i, &[]);
                            Outcome::LeaderAcquired {
                                requested_at: sent,
                                revision,
                                ttl: *ttl,
                            }
                        }
                        None => Outcome::LeaderRefused,
                    }
                };
                self.deliver(i, outcome);
                self.nodes[i].woken = Some(now);
            }
            Action::RenewLeader { revision, ttl } => {
                let outcome = if self.send_over_slow_link(i, &action) || !reachable {
                    Outcome::LeaderUnknown
                } else if self.renew_key(i, *revision, *ttl, self.nodes[i].key_written) {
                    self.nodes[i].key_written = Some(self.store.leader_written);
                    Outcome::LeaderRenewed {
                        requested_at: sent,
                        revision: *revision,
                        ttl: *ttl,
                    }
                } else {
                    self.nodes[i].key_written = None; // refused: the process forgets it
                    Outcome::LeaderRefused
                };
                changed = false;
                self.deliver(i, outcome);
            }
            Action::ReleaseLeader { revision } => {
                if self.nodes[i].pg.killed {
                    self.stats.killed_blocked.1 += 1;
                }
                self.send_over_slow_link(i, &action);
                let written = self.nodes[i].key_written.take();
                if reachable {
                    self.nodes[i].held_term = None; // answered (the agent forgets it then)
                }
                if reachable {
                    self.release_key(i, *revision, written);
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
            // What a leader publishes lands only while its term holds, perhaps late.
            Action::PublishSync { .. }
            | Action::PublishFailsafe { .. }
            | Action::PublishPosition { .. } => {
                answered = reachable && self.publish(i, &action);
            }
            Action::ReturnPromises { term } => {
                // Over REST, not through the store: each member that promised drops the
                // promises it gave this leader in that term (those it named).
                for n in &mut self.nodes {
                    n.promises.retain(|(_, to, t)| !(*to == i && t == term));
                }
                changed = false;
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
            Action::SetSync(applied) => {
                // a stalled stream no longer counted while its connection is still up
                let dropped = (0..self.nodes.len())
                    .filter(|&j| {
                        let n = &self.nodes[j];
                        n.stalled_stream
                            && n.lagging_until > self.now
                            && n.pg.streaming
                            && n.pg.upstream == Some(i)
                            && self.nodes[i].pg.sync.names.contains(&n.name)
                            && !applied.names.contains(&n.name)
                    })
                    .count();
                self.stats.stalled_streams.1 += dropped as u32;
                // PostgreSQL keeps the text, and the agent reads it back from there (an empty
                // one with the default method, whatever method it was asked with).
                self.nodes[i].pg.sync = SyncApplied::parse(&applied.to_string())
                    .expect("pgha reads back what it renders");
            }
            Action::CreateSlots { names } => self.nodes[i].pg.slots.extend(names.iter().cloned()),
            Action::RestartWalReceiver => {}
            Action::KillPostgres => {
                // Processes blocked (unresponsive) keep the kill pending; others die at once.
                let blocked = self.nodes[i].unresponsive_until > now;
                let pg = &mut self.nodes[i].pg;
                if pg.running && blocked {
                    if !pg.killed {
                        self.stats.killed_blocked.0 += 1;
                    }
                    pg.killed = true;
                } else {
                    pg.running = false;
                    pg.streaming = false;
                }
            }
            Action::DropSlots { names } => self.nodes[i].pg.slots.retain(|s| !names.contains(s)),
            job if self.nodes[i].fence_write_failed && job.may_make_writable() => {
                // as the agent: not begun without the deadline written (pgha-agent's start_job)
                changed = false;
                let kind = job.job().expect("a job");
                let refused = JobFailure::Unfenced("No space left on device".into());
                self.nodes[i].outcomes.push(Outcome::Job {
                    kind,
                    result: Err(refused),
                });
            }
            job => {
                changed = false;
                if let Action::Demote { mode, .. } = job {
                    if *mode == StopMode::Fast {
                        self.send_wal_to_standbys_of(i);
                    }
                }
                self.nodes[i].stream_stop_done = false;
                let mut done_at = now + self.job_duration(i, job);
                if matches!(job, Action::Demote { .. }) {
                    // its stop waits on a blocked PostgreSQL (a stalled disk) until that ends
                    done_at = done_at.max(self.nodes[i].unresponsive_until);
                }
                if let Some((_, until)) = self.nodes[i].disk_stalled.filter(|s| s.1 > now) {
                    done_at = done_at.max(until); // every job writes in the data directory
                }
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
                    | Action::KillPostgres
            )
        {
            self.store.revision += 1;
            self.wake_all();
        }
        answered
    }
}
