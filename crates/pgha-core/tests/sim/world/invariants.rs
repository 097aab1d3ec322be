//! The invariants checked as the world runs: I1, I3 and I4.

use super::*;

impl World {
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

    /// I4 as a promotion completes in a synchronous mode: when the published set names other
    /// members an election may promote, PostgreSQL counts a standby from the first commit. The
    /// set says the new term's commits are on them (the simulation's ledger counts only
    /// synchronous acknowledgements, so a promotion starting asynchronous would go unseen
    /// there): `faults::hosts::etcd_host_lossy` lost 16 commits to one.
    pub(super) fn check_promotion_counts_a_standby(&mut self, p: usize) {
        if self.config.synchronous_mode == SyncMode::Off || !self.nodes[p].pg.sync.is_async() {
            return;
        }
        let me = &self.nodes[p].name;
        let others: Vec<&MemberName> = self
            .store
            .sync
            .members
            .iter()
            .filter(|m| *m != me)
            .filter(|m| {
                !self
                    .store
                    .members
                    .get(*m)
                    .is_some_and(|(r, _)| r.tags.nofailover)
            })
            .collect();
        if !others.is_empty() {
            self.fail(format!(
                "{me} promoted asynchronous while the published set says its commits are on \
                 {others:?}"
            ));
        }
    }

    /// Failsafe's safety argument: every member of `w`'s failsafe list has promised not to
    /// take the lease (and a member outside the list does not run while they could be); or
    /// every other member has promised so, whatever list landed last (the leader asks the
    /// members of every list it sent that may still land, so it may ask more than the last
    /// one names: seed 2927 with two members, whose list had shrunk to the leader alone).
    fn promises_hold_for(&self, w: usize) -> bool {
        let others_promised = (0..self.nodes.len())
            .filter(|&i| i != w)
            .all(|i| self.nodes[i].promised_until() > self.now);
        others_promised || self.listed_promises_hold_for(w)
    }

    fn listed_promises_hold_for(&self, w: usize) -> bool {
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
                .is_some_and(|n| n.promised_until() > self.now)
        })
    }

    /// I1: at most one writable PostgreSQL, and only the live lease holder (or, in a store
    /// outage, a leader every listed member promised not to replace).
    pub(super) fn check_one_writer(&mut self) {
        let writable: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| writable(&self.nodes[i].pg))
            .collect();
        for &w in &writable {
            if !self.was_writable[w] {
                self.check_acknowledged_writes_kept(w);
                self.check_cold_start(w);
            }
        }
        for i in 0..self.nodes.len() {
            self.was_writable[i] = writable.contains(&i);
        }
        // The holder of a key the store removed early writes on, not told: I1 is the store's
        // to keep then (I4 is judged as it acknowledges).
        let removed = self.writing_on_removed_keys();
        let writable: Vec<usize> = writable
            .into_iter()
            .filter(|w| !removed.contains(w))
            .collect();
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

    pub(super) fn track_health(&mut self) {
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

    /// I3 for member `i` promoting on a key that an acquisition of its, whose answer was
    /// lost, took as it landed later ([`check_best_candidate`] then, once).
    pub(super) fn judge_late_win(&mut self, i: usize) {
        let Some((holder, term)) = self.store.late_won else {
            return;
        };
        if holder == i && self.store.leader.is_some_and(|l| l.0 == i && l.1 == term) {
            self.store.late_won = None;
            self.stats.late_acquisitions.1 += 1;
            let vetoed_then = std::mem::take(&mut self.late_won_vetoed);
            self.stats.disk_stalls.1 += self.check_best_candidate(i, &vetoed_then);
        }
    }

    /// The members whose records in the store say their promotion was vetoed.
    pub(super) fn vetoed_members(&self) -> Vec<MemberName> {
        let vetoed = self
            .store
            .members
            .iter()
            .filter(|(_, (r, _))| r.promotion_vetoed);
        vetoed.map(|(name, _)| name.clone()).collect()
    }

    /// I3: a member that wins the lease to fail over is at least as far as every member that
    /// stayed healthy and eligible through the whole leaderless period (`vetoed_then`: also
    /// those vetoed when the winner's acquisition was sent, for a win judged as it promotes:
    /// seed 532584 with vetoes, a veto that ran out between the two). Returns how many it
    /// passed over for their data directories taking no write, at least as far on.
    pub(super) fn check_best_candidate(&self, winner: usize, vetoed_then: &[MemberName]) -> u32 {
        let w = &self.nodes[winner].pg;
        if !w.data || !w.running || !w.in_recovery {
            return 0;
        }
        let Some(gone) = self.store.leader_gone_at else {
            return 0;
        };
        // A vacancy begun with a key the store removed early: its old primary wrote on for a
        // while, moving the standbys that stream from it past any position an election read.
        // Asynchronous mode promises nothing then (in a synchronous one every standby stops
        // streaming before its position counts).
        let removed = self.removed_early_at == Some(gone);
        if removed && self.config.synchronous_mode == SyncMode::Off {
            return 0;
        }
        let mut passed_over_stalled = 0;
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
                .is_some_and(|(r, _)| r.promotion_vetoed)
                || vetoed_then.contains(&n.name);
            let disk_stalled = self
                .store
                .members
                .get(&n.name)
                .is_some_and(|(r, _)| r.data_dir_stalled);
            if disk_stalled && stayed_healthy && (n.pg.tl, n.pg.lsn) >= (w.tl, w.lsn) {
                passed_over_stalled += 1;
            }
            if i == winner
                || !stayed_healthy
                || n.tags.nofailover
                || vetoed
                || disk_stalled
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
        passed_over_stalled
    }
}
