//! The member state machine: `Member::step(&Observation) -> Decision`, outcome bookkeeping,
//! lease trust (I1) and dispatch to the leader, follower and election paths.

use crate::action::{Action, StopMode};
use crate::config::ClusterConfig;
use crate::history::EventKind;
use crate::observe::{
    ClusterView, JobKind, LocalPg, MemberRecord, Observation, Outcome, StoreView,
};
use crate::reason::Reason;
use crate::types::{Lsn, MemberName, Millis, Tags};
use std::collections::BTreeMap;

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

/// The lease as this member trusts it, on its own monotonic clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HeldLease {
    pub revision: u64,
    /// Sent time of the last successful acquire/renew.
    pub renewed_at: Millis,
    /// The TTL the store's lease was last granted with.
    pub ttl_ms: u64,
    /// Before this instant (own clock) the store cannot have expired the lease:
    /// `renewed_at + ttl`, lowered at once when a renewal with a shorter TTL is sent.
    pub expires_at: Millis,
    /// `expires_at - safety_margin`: writable only before this instant.
    pub trusted_until: Millis,
}

impl HeldLease {
    fn new(revision: u64, sent: Millis, ttl_ms: u64, cap: Option<Millis>, margin: u64) -> Self {
        let expires_at = cap.map_or(sent.plus(ttl_ms), |c| c.min(sent.plus(ttl_ms)));
        HeldLease {
            revision,
            renewed_at: sent,
            ttl_ms,
            expires_at,
            trusted_until: Millis(expires_at.0.saturating_sub(margin)),
        }
    }

    /// A renewal with a shorter TTL may take effect before its answer comes: from the moment
    /// it is sent the lease may end at `cap`.
    fn cap(&mut self, cap: Millis, margin: u64) {
        self.expires_at = self.expires_at.min(cap);
        self.trusted_until = self
            .trusted_until
            .min(Millis(self.expires_at.0.saturating_sub(margin)));
    }
}

/// A promotion in progress, remembered to write its history event once promoted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Promotion {
    pub kind: EventKind,
    pub from: Option<MemberName>,
    pub lsn: Lsn,
    pub switchover_revision: Option<u64>,
}

/// A switchover this member (as leader) is carrying out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Handover {
    pub revision: u64,
    pub target: Option<MemberName>,
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
    pub(crate) leaderless_since: Option<Millis>,
    pub(crate) last_leader: Option<MemberName>,
    pub(crate) last_primary_lsn: Option<Lsn>,
    /// The position this leader last wrote into the `position` key, and when.
    pub(crate) position_published: Option<(Lsn, Millis)>,
    /// A renewal with a shorter TTL was sent at `.0`: the lease may end by `.1` whatever
    /// older answers still say.
    pub(crate) expiry_cap: Option<(Millis, Millis)>,
    /// Since when a member of the failsafe list (other than its leader) has been continuously
    /// visible in the store: once for a ttl, no failsafe confirmation can still be in force.
    pub(crate) listed_peer_seen_since: Option<Millis>,
    pub(crate) primary_down_since: Option<Millis>,
    /// Since when the running postmaster has not answered the probe.
    pub(crate) unresponsive_since: Option<Millis>,
    /// The leader demoted its unresponsive PostgreSQL: once it is not writable, let go.
    pub(crate) release_after_demote: bool,
    /// The term (leader key revision) whose lease lapsed on this member's clock: its key is
    /// released for an election, never adopted again.
    pub(crate) lapsed_term: Option<u64>,
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
    pub(crate) promote_error: Option<String>,
    pub(crate) handover: Option<Handover>,
    pub(crate) switchovers_seen: Vec<u64>,
    /// Slots of members whose key is gone, and since when (leader): dropped only after
    /// `member_slots_ttl_ms`, so a host that reboots comes back to its WAL.
    pub(crate) absent_since: BTreeMap<MemberName, Millis>,
    /// A member leaving the published synchronous set waits for one that stays to catch up.
    pub(crate) sync_removal: Option<crate::sync::RemovalMark>,
    pub(crate) rewind_failed: bool,
    pub(crate) force_rewind: bool,
    pub(crate) start_failures: u32,
    pub(crate) rejoin: Option<EventKind>,
    pub(crate) demoted: bool,
    pub(crate) published: Option<(MemberRecord, Millis)>,
}

/// Builds a decision: collects actions, keeps the earliest wake-up.
pub(crate) struct Plan {
    pub actions: Vec<Action>,
    pub wake_at: Millis,
}

impl Plan {
    pub fn push(&mut self, action: Action) {
        if let Some(kind) = action.job() {
            debug_assert!(
                self.actions.iter().all(|a| a.job().is_none()),
                "second job {kind:?} in one decision"
            );
        }
        self.actions.push(action);
    }
    pub fn wake_by(&mut self, at: Millis) {
        self.wake_at = self.wake_at.min(at);
    }
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
            leaderless_since: None,
            last_leader: None,
            last_primary_lsn: None,
            position_published: None,
            expiry_cap: None,
            listed_peer_seen_since: None,
            primary_down_since: None,
            unresponsive_since: None,
            release_after_demote: false,
            lapsed_term: None,
            not_streaming_since: None,
            leader_was_unreachable: false,
            last_step_at: None,
            store_was_down: false,
            promotion: None,
            promote_error: None,
            handover: None,
            switchovers_seen: Vec::new(),
            absent_since: BTreeMap::new(),
            sync_removal: None,
            rewind_failed: false,
            force_rewind: false,
            start_failures: 0,
            rejoin: None,
            demoted: false,
            published: None,
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

    /// Whether this member currently trusts that it holds the leader lease at `now`.
    pub fn holds_lease(&self, now: Millis) -> bool {
        self.lease.is_some_and(|l| now < l.trusted_until)
    }

    /// Until when this member trusts its lease (own clock), if it holds one.
    pub fn lease_deadline(&self) -> Option<Millis> {
        self.lease.map(|l| l.trusted_until)
    }

    /// When the supervisor must have stopped a writable PostgreSQL: halfway between the
    /// demotion deadline and the earliest instant the store may expire the lease, so a clean
    /// demotion normally comes first and the kill still comes before anyone else can lead.
    pub fn fence_deadline(&self) -> Option<Millis> {
        self.lease.map(|l| {
            let slack = l.expires_at.0.saturating_sub(l.trusted_until.0);
            l.trusted_until.plus(slack / 2)
        })
    }

    /// The long-running job the member believes is in flight.
    pub fn running_job(&self) -> Option<JobKind> {
        self.job.map(|(kind, _)| kind)
    }

    /// Decides what to do now. Deterministic: the same member state and observation always
    /// give the same decision.
    pub fn step(&mut self, obs: &Observation) -> Decision {
        let now = obs.now;
        let mut plan = Plan {
            actions: Vec::new(),
            wake_at: now.plus(self.config.loop_wait_ms),
        };
        let gap = self.last_step_at.map_or(0, |at| now.since(at));
        self.last_step_at = Some(now);
        if gap > 2 * self.config.loop_wait_ms {
            // This agent did not run meanwhile: it has not watched the others publish.
            self.leaderless_since = None;
            self.listed_peer_seen_since = None;
        }
        if let StoreView::Up(view) = &obs.cluster {
            // Before the outcomes: a lease result is trusted with the newest safety margin.
            self.config = view.config.clone();
        }
        self.absorb(&obs.outcomes);
        let reason = match &obs.cluster {
            StoreView::Down { error } => self.store_down(obs, error, &mut plan),
            StoreView::Up(view) => self.store_up(obs, view, &mut plan),
        };
        if let Some(lease) = self.lease {
            plan.wake_by(lease.trusted_until);
        }
        for action in &plan.actions {
            if let Some(kind) = action.job() {
                self.job = Some((kind, now));
            }
        }
        Decision {
            actions: plan.actions,
            reason,
            wake_at: plan.wake_at,
        }
    }

    fn absorb(&mut self, outcomes: &[Outcome]) {
        for outcome in outcomes {
            match outcome {
                Outcome::LeaderAcquired {
                    requested_at,
                    revision,
                    ttl_ms,
                }
                | Outcome::LeaderRenewed {
                    requested_at,
                    revision,
                    ttl_ms,
                } => {
                    if self.lapsed_term == Some(*revision) {
                        // A late answer for a term already given up here: PostgreSQL was
                        // demoted on it; the election, not this answer, decides what follows.
                        continue;
                    }
                    // The store's lease, not the configured ttl, bounds the trust: after a
                    // live ttl change they differ until the store has re-granted the lease.
                    // A shorter renewal sent later than this answer's request caps it.
                    let cap = match self.expiry_cap {
                        Some((sent, _)) if sent <= *requested_at => {
                            self.expiry_cap = None;
                            None
                        }
                        Some((_, cap)) => Some(cap),
                        None => None,
                    };
                    let later = self
                        .lease
                        .filter(|l| l.revision == *revision && l.renewed_at > *requested_at);
                    self.lease = Some(later.unwrap_or(HeldLease::new(
                        *revision,
                        *requested_at,
                        *ttl_ms,
                        cap,
                        self.config.safety_margin_ms,
                    )));
                    self.adopting_since = None;
                }
                Outcome::LeaderRefused => {
                    self.lease = None;
                    self.promotion = None;
                }
                Outcome::LeaderUnknown => {}
                Outcome::FailsafeConfirmed {
                    requested_at,
                    promised_ms,
                } => {
                    // Nobody can take the lease before requested_at + ttl: trust it like a
                    // renewal sent at that instant.
                    if let Some(lease) =
                        self.lease.as_mut().filter(|l| l.renewed_at < *requested_at)
                    {
                        // Nobody can take the lease before the shortest promise ends.
                        lease.renewed_at = *requested_at;
                        lease.expires_at = requested_at.plus(*promised_ms);
                        lease.trusted_until = requested_at
                            .plus(promised_ms.saturating_sub(self.config.safety_margin_ms));
                    }
                }
                Outcome::Job { kind, result } => self.job_done(*kind, result),
            }
        }
    }

    fn job_done(&mut self, kind: JobKind, result: &Result<(), String>) {
        if self.job.map(|(k, _)| k) != Some(kind) {
            return; // a job cancelled by a fencing demote reports late: ignore it
        }
        self.job = None;
        match (kind, result) {
            (JobKind::Promote, Err(e)) => self.promote_error = Some(e.clone()),
            (JobKind::Rewind, Err(_)) => self.rewind_failed = true,
            (JobKind::Rewind, Ok(())) => {
                self.force_rewind = false;
                self.rejoin = Some(EventKind::RejoinRewind);
            }
            (JobKind::Reclone, Ok(())) => {
                self.rewind_failed = false;
                self.force_rewind = false;
                if self.demoted {
                    self.rejoin = Some(EventKind::RejoinReclone);
                }
            }
            (JobKind::Start | JobKind::Follow, Err(_)) => self.start_failures += 1,
            (JobKind::Start | JobKind::Follow, Ok(())) => self.start_failures = 0,
            _ => {}
        }
    }

    /// I1 on the member's own clock: past `trusted_until` the lease is gone, whatever the
    /// store says; a writable PostgreSQL is demoted at once.
    pub(crate) fn fence_if_expired(
        &mut self,
        obs: &Observation,
        plan: &mut Plan,
    ) -> Option<Reason> {
        let lease = self.lease?;
        if obs.now < lease.trusted_until {
            return None;
        }
        self.lease = None;
        self.lapsed_term = Some(lease.revision);
        self.demote_if_writable(&obs.local, plan)
            .then_some(Reason::LeaseExpiredDemoting)
    }

    /// Emits an immediate demote when PostgreSQL is (or may become) writable.
    pub(crate) fn demote_if_writable(&mut self, local: &LocalPg, plan: &mut Plan) -> bool {
        let promoting = self.running_job() == Some(JobKind::Promote);
        if !(local.is_writable() || promoting) {
            return false;
        }
        if self.running_job() == Some(JobKind::Demote) {
            return true;
        }
        self.promotion = None;
        self.handover = None;
        self.demoted = true;
        plan.push(Action::Demote {
            mode: StopMode::Immediate,
        });
        true
    }

    fn store_down(&mut self, obs: &Observation, error: &str, plan: &mut Plan) -> Reason {
        // Time without a leader counts only while the store shows it: a member cut off from the
        // store has not seen the others publish their positions, and must wait for them anew.
        self.leaderless_since = None;
        self.listed_peer_seen_since = None;
        self.store_was_down = true;
        if let Some(reason) = self.fence_if_expired(obs, plan) {
            return reason;
        }
        if let Some(lease) = self.lease {
            self.renew_if_due(obs.now, lease.revision, plan);
            return Reason::StoreDownLeaseTrusted {
                remaining_ms: lease.trusted_until.since(obs.now),
            };
        }
        if self.demote_if_writable(&obs.local, plan) {
            return Reason::WritableWithoutLease;
        }
        Reason::StoreDown {
            error: error.to_string(),
        }
    }

    pub(crate) fn renew_if_due(&mut self, now: Millis, revision: u64, plan: &mut Plan) {
        let interval = (self.config.loop_wait_ms / 2).max(1);
        if self
            .last_renew_request
            .is_some_and(|at| now.since(at) < interval && at <= now)
        {
            return;
        }
        self.last_renew_request = Some(now);
        let ttl_ms = self.config.ttl_ms;
        let margin = self.config.safety_margin_ms;
        // Once sent, this renewal may be applied before any answer comes back, and then the
        // lease ends at the earliest `now + ttl_ms` (which only matters when that is sooner
        // than what is trusted: a shorter ttl, or a lease whose answer is still on its way).
        let cap = now.plus(ttl_ms);
        if let Some(lease) = self.lease.as_mut() {
            lease.cap(cap, margin);
        }
        self.expiry_cap = Some(match self.expiry_cap {
            Some((sent, old)) if old <= cap => (sent, old),
            _ => (now, cap),
        });
        plan.push(Action::RenewLeader { revision, ttl_ms });
    }

    fn store_up(&mut self, obs: &Observation, view: &ClusterView, plan: &mut Plan) -> Reason {
        if std::mem::take(&mut self.store_was_down) {
            self.last_renew_request = None; // renew in this very step
        }
        if let Some(reason) = self.fence_if_expired(obs, plan) {
            return reason;
        }
        if let (Some(store), crate::observe::DataDir::Present { system_id }) =
            (view.initialize, obs.local.data)
        {
            if store != system_id {
                self.demote_if_writable(&obs.local, plan);
                return Reason::SystemIdMismatch {
                    store,
                    local: system_id,
                };
            }
        }
        if obs.local.unresponsive {
            return self.unresponsive_step(obs, view, plan);
        }
        self.unresponsive_since = None;
        self.publish_if_due(obs, view, plan);
        match view.leader.as_ref().map(|l| (&l.holder, l.revision)) {
            Some((holder, revision)) if holder == self.name() => {
                self.leader_step(obs, view, revision, plan)
            }
            Some((holder, _)) => {
                let holder = holder.clone();
                self.lease = None;
                self.adopting_since = None;
                self.follower_step(obs, view, &holder, plan)
            }
            None => {
                self.lease = None;
                self.adopting_since = None;
                if self.demote_if_writable(&obs.local, plan) {
                    return Reason::LeaderKeyLost;
                }
                self.election_step(obs, view, plan)
            }
        }
    }

    /// A postmaster that lives but does not answer is neither stopped nor a standby: no
    /// restart, no reconfiguration, no candidacy. Its leader keeps the lease (a failover would
    /// not help clients that exhausted the connection slots) until `primary_start_timeout_ms`,
    /// then demotes and lets the lease run out; the supervisor fences what the demote cannot.
    fn unresponsive_step(
        &mut self,
        obs: &Observation,
        view: &ClusterView,
        plan: &mut Plan,
    ) -> Reason {
        if obs.local.refusing_connections {
            // It answers "too many clients": alive, only busy. No clock runs towards a demotion.
            self.unresponsive_since = None;
        }
        let since = *self.unresponsive_since.get_or_insert(obs.now);
        let for_ms = obs.now.since(since);
        if let Some((record, at)) = self.published.clone() {
            if obs.now.since(at) >= self.config.ttl_ms / 3 {
                self.publish(record, obs.now, plan); // heartbeat, last known state
            }
        }
        let leading = view.leader.as_ref().and_then(|l| {
            (l.holder == *self.name())
                .then_some(l.revision)
                .and_then(|rev| self.lease.filter(|lease| lease.revision == rev))
        });
        let Some(lease) = leading else {
            return Reason::PostgresUnresponsive { for_ms };
        };
        if self.running_job() == Some(JobKind::Demote) || self.release_after_demote {
            // Demoted (or demoting): no renewal; the lease runs out, the supervisor fences.
            return Reason::PrimaryUnresponsiveDemoting { for_ms };
        }
        if for_ms > self.config.primary_start_timeout_ms && !self.config.paused {
            self.promotion = None;
            self.handover = None;
            self.demoted = true;
            self.release_after_demote = true;
            plan.push(Action::Demote {
                mode: StopMode::Immediate,
            });
            return Reason::PrimaryUnresponsiveDemoting { for_ms };
        }
        self.renew_if_due(obs.now, lease.revision, plan);
        Reason::PostgresUnresponsive { for_ms }
    }

    /// The record this member would publish now.
    pub(crate) fn record(&self, local: &LocalPg, view: &ClusterView) -> MemberRecord {
        MemberRecord {
            running: local.running,
            in_recovery: local.in_recovery,
            timeline: local.timeline,
            lsn: local.lsn,
            replay_lsn: local.replay_lsn,
            streaming_from: local.upstream.clone().filter(|_| local.streaming),
            tags: self.settings.tags.clone(),
            leader_seen: view.leader.as_ref().map(|l| l.holder.clone()),
            addresses: self.settings.addresses.clone(),
        }
    }

    /// Publishes when something other than positions changed, when positions changed and a
    /// loop has passed, or as a heartbeat.
    fn publish_if_due(&mut self, obs: &Observation, view: &ClusterView, plan: &mut Plan) {
        let record = self.record(&obs.local, view);
        let in_store = view.members.get(self.name());
        let due = match (&self.published, in_store) {
            (_, None) | (None, _) => true,
            (Some((last, at)), Some(_)) => {
                let elapsed = obs.now.since(*at);
                let shape = |r: &MemberRecord| MemberRecord {
                    lsn: Lsn(0),
                    replay_lsn: Lsn(0),
                    ..r.clone()
                };
                shape(last) != shape(&record)
                    || (last != &record && elapsed >= self.config.loop_wait_ms)
                    || elapsed >= self.config.ttl_ms / 3
            }
        };
        if due {
            self.publish(record, obs.now, plan);
        }
    }

    pub(crate) fn publish(&mut self, record: MemberRecord, now: Millis, plan: &mut Plan) {
        self.published = Some((record.clone(), now));
        plan.actions
            .retain(|a| !matches!(a, Action::PublishMember(_)));
        plan.push(Action::PublishMember(record));
    }
}
