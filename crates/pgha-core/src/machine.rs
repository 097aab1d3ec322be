//! The member state machine: `Member::step(&Observation) -> Decision`, dispatching each step.
//!
//! A step absorbs the outcomes of earlier actions (`outcomes`), applies lease trust (I1,
//! `lease`), publishes the member record (`publish`), and hands over to the leader, follower
//! or election path, or to `unresponsive` when the postmaster does not answer.

use crate::action::{Action, StopMode};
use crate::config::ClusterConfig;
use crate::history::EventKind;
use crate::job_what::JobWhat;
use crate::observe::{ClusterView, JobFailure, JobKind, Observation, StoreView};
use crate::reason::Reason;
use crate::types::{Lsn, MemberName, Millis, SystemId, Tags};
use std::collections::BTreeMap;

mod acquisition;
mod alter_system;
mod data_dir;
pub use data_dir::DATA_DIR_STALL_MS;
mod expiry_caps;
pub use failsafe_count::FailsafeUncounted;
mod failsafe_asks;
mod failsafe_count;
mod fence_stuck;
mod identity;
mod in_place;
mod lease;
mod outcomes;
pub(crate) mod pause;
mod peers;
mod plan;
mod promoted;
mod publish;
mod read;
mod release;
mod replaced_ttls;
mod requests;
mod store_down;
mod terms;
mod unheard_leader;
mod unresponsive;
mod veto;

pub(crate) use self::requests::{held_back_by_old_leader, Handover};
pub(crate) use self::{lease::HeldLease, plan::Plan, promoted::Promotion, release::ReleaseStep};

/// What one member is, from its own configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberSettings {
    pub name: MemberName,
    pub tags: Tags,
    /// Published as-is in the member record (e.g. `postgres` and `api` addresses).
    pub addresses: BTreeMap<String, String>,
    /// Used until the store's `config` key is read.
    pub config: ClusterConfig,
}

/// The answer to one observation: actions to run in order, why, and when to step again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// At most one job (see [`Action::job`]), always last.
    pub actions: Vec<Action>,
    pub reason: Reason,
    /// Step again no later than this (earlier on a store watch event or a local change).
    pub wake_at: Millis,
}

/// One member's decision state. Create with [`Member::new`], then call [`Member::step`] for
/// every observation; it never performs I/O and never reads a clock.
#[derive(Clone, Debug)]
pub struct Member {
    pub(crate) settings: MemberSettings,
    pub(crate) config: ClusterConfig,
    pub(crate) lease: Option<HeldLease>,
    pub(crate) adopting_since: Option<Millis>,
    pub(crate) last_renew_request: Option<Millis>,
    pub(crate) job: Option<(JobKind, Millis)>,
    /// What the job in flight does (set with `job`).
    pub(crate) job_what: Option<JobWhat>,
    /// The job in flight may leave PostgreSQL writable (set with `job`).
    pub(crate) job_makes_writable: bool,
    pub(crate) leaderless_since: Option<Millis>,
    /// Longer ttls the configuration held lately: a vacancy's window may count by one.
    pub(crate) replaced_ttls: replaced_ttls::ReplacedTtls,
    pub(crate) last_leader: Option<MemberName>,
    /// Since it started, this member streamed from a leader or led: it heard one alive.
    pub(crate) leader_heard: bool,
    /// Why this member last stopped leading (published; cleared when it leads again).
    pub(crate) stepped_down: Option<crate::SteppedDown>,
    pub(crate) last_primary_lsn: Option<Lsn>,
    /// The position this leader last wrote into the `position` key, and when.
    pub(crate) position_published: Option<(Lsn, Millis)>,
    /// Renewals sent, unanswered yet: each may land and end the lease by its cap.
    pub(crate) expiry_caps: expiry_caps::ExpiryCaps,
    /// For each member of the failsafe list (other than its leader) seen, continuously, with a
    /// record read with no leader after the newest term (it confirms nobody since): no promise
    /// it gave runs past this instant (see `Member::outside_failsafe_list`).
    pub(crate) listed_promises_end: BTreeMap<MemberName, Millis>,
    /// Failsafe lists sent in this term that may still land ([`Member::failsafe_confirmers`]).
    pub(crate) failsafe_sent: Option<failsafe_asks::SentLists>,
    /// When this member last sent a failsafe list: confirmations asked for before it count
    /// for nothing (the list may name members they did not come from).
    pub(crate) failsafe_list_sent_at: Option<Millis>,
    /// The failsafe confirmation the last step did not count: asked at, and why.
    pub(crate) failsafe_uncounted: Option<(Millis, FailsafeUncounted)>,
    pub(crate) primary_down_since: Option<Millis>,
    /// Since when the running postmaster has not answered the probe.
    pub(crate) unresponsive_since: Option<Millis>,
    /// The primary's WAL flush position while more WAL waited, and since when it has not moved.
    pub(crate) flush_stuck: Option<(Lsn, Millis)>,
    /// A re-clone found no room for its copy (why, and until when it waits before trying again).
    pub(crate) no_room: Option<(String, Millis)>,
    /// Clones that failed in a row, and when the last one did: the next waits.
    pub(crate) clone_failed: Option<(u32, Millis)>,
    /// The leader stopped or demoted its PostgreSQL in this term: it lets go once it can't write.
    pub(crate) release_after_demote: Option<release::PendingRelease>,
    /// The term (leader key revision) whose lease lapsed on this member's clock: its key is
    /// released for an election, never adopted again.
    pub(crate) lapsed_term: Option<u64>,
    /// The term whose lease lapsed here last, until the store is read again: its key may
    /// still name this member (renewals sent before the lapse can land late and keep the
    /// store's lease alive a ttl longer), so while the store does not answer it is released
    /// unseen once PostgreSQL no longer writes.
    pub(crate) release_unseen: Option<u64>,
    /// A term it led that is over (lapsed, refused, key lost): its promises go back.
    pub(crate) lost_term: Option<u64>,
    /// The newest term (leader key revision) seen in any view: a position published in an
    /// earlier vacancy is not current ([`MemberRecord::read_after`]).
    pub(crate) newest_term: Option<u64>,
    /// The revision of the leader key this member read last (the start of the last term it
    /// saw): a switchover request written before it was made in an earlier term. Replaced,
    /// never maxed, so a store that lost its keys (revisions start over) misleads it no
    /// longer than until it reads the next leader key.
    pub(crate) term_last_read: Option<u64>,
    /// The `failsafe` key's revision last read (0: absent), which an acquisition compares.
    pub(crate) failsafe_read: u64,
    /// An acquisition sent and not answered (it may land), and withdrawn since (see
    /// `machine/acquisition.rs`).
    pub(crate) acquisition_unanswered: bool,
    pub(crate) acquisition_withdrawn: bool,
    /// The cluster's system identifier as this member last saw it in the store: once known,
    /// the cluster exists, whatever a store that lost its keys says.
    pub(crate) cluster_seen: Option<SystemId>,
    pub(crate) not_streaming_since: Option<Millis>,
    /// The leader's PostgreSQL could not be reached while this standby was not streaming.
    pub(crate) leader_was_unreachable: bool,
    /// When the last step ran: a longer gap than a few loops means this agent was not running
    /// (paused, starved), and what it waited for before does not count.
    pub(crate) last_step_at: Option<Millis>,
    /// The last step could not read the store: the next one that can renews at once (a lease
    /// kept by failsafe promises may outlive what the store still grants).
    pub(crate) store_was_down: bool,
    pub(crate) promotion: Option<Promotion>,
    pub(crate) promote_error: Option<JobFailure>,
    /// A promotion failed with its postmaster running (stalled): it may yet complete until
    /// that postmaster is seen stopped (`promoted.rs`).
    pub(crate) promotion_may_complete: bool,
    /// Its `pre_promote` callback vetoed its promotion: out of failovers until then (or until
    /// another member leads).
    pub(crate) vetoed_until: Option<Millis>,
    /// Its data directory has taken no write for `DATA_DIR_STALL_MS` (see `data_dir.rs`).
    pub(crate) data_dir_stalled: bool,
    /// How long the failsafe promises it gave still run (ms), as its record says.
    pub(crate) promises_run_ms: u64,
    pub(crate) handover: Option<Handover>,
    pub(crate) requests: requests::RequestsSeen,
    /// Slots of members whose key is gone, and since when (leader): dropped only after
    /// `member_slots_ttl_ms`, so a host that reboots comes back to its WAL.
    pub(crate) absent_since: BTreeMap<MemberName, Millis>,
    /// A removal from the synchronous set under way, and the settings in force (leader).
    pub(crate) sync: crate::sync::LeaderSync,
    pub(crate) rewind_failed: bool,
    /// The timeline a running member was on when it stopped to rewind: a rewind that brings it
    /// back there changed nothing.
    pub(crate) diverged_on: Option<crate::types::Timeline>,
    pub(crate) force_rewind: bool,
    pub(crate) start_failures: u32,
    pub(crate) rejoin: Option<EventKind>,
    pub(crate) demoted: bool,
    pub(crate) published: Option<publish::Published>,
    /// The members it formed its cluster with (see `peers.rs`).
    pub(crate) peers: peers::Peers,
}

impl Member {
    pub fn new(settings: MemberSettings) -> Self {
        Member {
            config: settings.config.clone(),
            settings,
            lease: None,
            adopting_since: None,
            last_renew_request: None,
            job: None,
            job_what: None,
            job_makes_writable: false,
            leaderless_since: None,
            replaced_ttls: Default::default(),
            last_leader: None,
            leader_heard: false,
            stepped_down: None,
            last_primary_lsn: None,
            position_published: None,
            expiry_caps: Default::default(),
            listed_promises_end: BTreeMap::new(),
            failsafe_sent: None,
            failsafe_list_sent_at: None,
            failsafe_uncounted: None,
            primary_down_since: None,
            unresponsive_since: None,
            flush_stuck: None,
            no_room: None,
            clone_failed: None,
            release_after_demote: None,
            lapsed_term: None,
            release_unseen: None,
            lost_term: None,
            newest_term: None,
            term_last_read: None,
            failsafe_read: 0,
            acquisition_unanswered: false,
            acquisition_withdrawn: false,
            cluster_seen: None,
            not_streaming_since: None,
            leader_was_unreachable: false,
            last_step_at: None,
            store_was_down: false,
            promotion: None,
            promote_error: None,
            promotion_may_complete: false,
            vetoed_until: None,
            data_dir_stalled: false,
            promises_run_ms: 0,
            handover: None,
            requests: Default::default(),
            absent_since: BTreeMap::new(),
            sync: Default::default(),
            rewind_failed: false,
            diverged_on: None,
            force_rewind: false,
            start_failures: 0,
            rejoin: None,
            demoted: false,
            published: None,
            peers: Default::default(),
        }
    }

    pub fn name(&self) -> &MemberName {
        &self.settings.name
    }

    /// The cluster configuration this member acts on: the store's, once it has read one;
    /// until then the one it was started with.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// The revision of the leader key this member holds (its term), if it holds one.
    pub fn lease_revision(&self) -> Option<u64> {
        self.lease.as_ref().map(|l| l.revision)
    }

    /// The reason of a step that waits for the job in flight, if one is.
    pub(crate) fn job_running(&self, now: Millis) -> Option<Reason> {
        let (kind, since) = self.job?;
        Some(Reason::JobRunning {
            job: self.job_what.clone().unwrap_or(JobWhat::Job(kind)),
            for_ms: now.since(since),
        })
    }

    /// Decides what to do now. Deterministic: the same member state and observation always
    /// give the same decision.
    pub fn step(&mut self, obs: &Observation) -> Decision {
        let now = obs.now;
        let mut plan = Plan {
            actions: Vec::new(),
            wake_at: now.plus(self.config.loop_wait_ms),
            promoted: None,
        };
        let gap = self.last_step_at.map_or(0, |at| now.since(at));
        self.last_step_at = Some(now);
        if gap > 2 * self.config.loop_wait_ms {
            // This agent did not run meanwhile: it has not watched the others publish.
            self.leaderless_since = None;
            self.listed_promises_end.clear();
        }
        if let StoreView::Up(view) = &obs.cluster {
            // Before the outcomes: a lease result is trusted with the newest safety margin.
            let vacancy = self.leaderless_since.unwrap_or(now);
            self.replaced_ttls
                .note(self.config.ttl_ms, view.config.ttl_ms, vacancy, now);
            self.config = view.config.clone();
        }
        // Before the outcomes: a refused lease must not take a promotion that took effect along.
        self.record_promotion_if_done(&obs.local, now, &mut plan);
        self.forget_promotion_once_stopped(&obs.local);
        self.failsafe_uncounted = None;
        self.absorb(&obs.outcomes, now);
        let held_term = self.lease.map(|l| l.revision);
        self.veto_lapses(now, &obs.cluster, &mut plan);
        self.note_data_dir(obs, &mut plan);
        self.promises_run_ms = obs.failsafe_promised_until.map_or(0, |u| u.since(now));
        let reason = match &obs.cluster {
            StoreView::Down { error } => self.store_down(obs, error, &mut plan),
            StoreView::Up(view) => self.store_up(obs, view, &mut plan),
        };
        let cause = crate::StepDown::of(&reason, self.flush_stuck.is_some());
        if let (Some(cause), Some(term)) = (cause, held_term.or(self.lapsed_term)) {
            self.stepped_down = Some(crate::SteppedDown { term, cause });
        }
        self.undo_alter_system(obs, &mut plan);
        if let Some(lease) = self.lease {
            plan.wake_by(lease.trusted_until);
        }
        for action in &plan.actions {
            if let Some(kind) = action.job() {
                self.job = Some((kind, now));
                self.job_what = JobWhat::of(action);
                self.job_makes_writable = action.may_make_writable();
            }
        }
        Decision {
            actions: plan.actions,
            reason,
            wake_at: plan.wake_at,
        }
    }

    fn store_up(&mut self, obs: &Observation, view: &ClusterView, plan: &mut Plan) -> Reason {
        if std::mem::take(&mut self.store_was_down) {
            self.last_renew_request = None; // renew in this very step
        }
        // The key is in sight: a lapsed term that still holds it is given up as read
        // (`give_up_lapsed_term`), not unseen.
        self.release_unseen = None;
        self.newest_term = self.newest_term_in(view);
        self.failsafe_read = view.failsafe_revision;
        if let Some(leader) = &view.leader {
            self.term_last_read = Some(leader.revision);
        }
        self.cluster_seen = view.initialize.or(self.cluster_seen);
        if let Some(reason) = self.fence_if_expired(obs, plan) {
            return reason;
        }
        let local_id = match obs.local.data {
            crate::observe::DataDir::Present { system_id } => Some(system_id),
            _ => None,
        };
        if let Err(foreign) = crate::restart::check_belongs(view.initialize, local_id) {
            self.demote_if_writable(&obs.local, StopMode::Immediate, plan);
            return Reason::SystemIdMismatch {
                store: foreign.store,
                local: foreign.local,
            };
        }
        // A store that holds this member's cluster (checked just above) says who forms it.
        self.note_peers(view, obs.now);
        if let Some(reason) = self.name_taken(obs, view, plan) {
            return reason;
        }
        self.leaderless_since = self.leaderless_since.filter(|_| view.leader.is_none());
        if self.wal_stalled(obs) || obs.local.unresponsive {
            return self.unresponsive_step(obs, view, plan);
        }
        if !self
            .lease
            .is_some_and(|l| self.demoted_unresponsive_in(l.revision))
        {
            self.unresponsive_since = None;
        }
        self.publish_if_due(obs, view, plan);
        match view.leader.as_ref().map(|l| (&l.holder, l.revision)) {
            Some((holder, revision)) if holder == self.name() => {
                self.leader_step(obs, view, revision, plan)
            }
            Some((holder, _)) => {
                let holder = holder.clone();
                self.lose_lease();
                self.adopting_since = None;
                self.acquisition_settled(); // another term began: it cannot land now
                self.give_back_lost_terms_promises(&obs.local, plan);
                self.follower_step(obs, view, &holder, plan)
            }
            None => {
                self.lose_lease();
                self.adopting_since = None;
                if self.demote_if_writable(&obs.local, StopMode::Immediate, plan) {
                    return Reason::LeaderKeyLost;
                }
                self.give_back_lost_terms_promises(&obs.local, plan);
                self.leaderless_step(obs, view, plan)
            }
        }
    }
}
