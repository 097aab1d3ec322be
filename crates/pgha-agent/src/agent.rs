//! The member agent loop: observe (store first, then local PostgreSQL) → step → execute.
//!
//! It wakes on the decision's deadline, a store change, a finished job or a failsafe round's
//! answer. Its handle and control channels (`handle`), its clock (`clock`), the failsafe
//! round (`failsafe_round`), the deadline handed to the supervisor (`fencing_step`) and
//! leaving (`leave`) have their own modules.

use std::sync::Arc;
use std::time::Duration;

use pgha_core::{
    ClusterView, JobFailure, JobKind, Member, MemberName, MemberSettings, Millis, Outcome,
    StoreView, SyncApplied,
};
use pgha_store::{HistoryId, Store};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::failsafe::Failsafe;
use crate::fence::Fencing;
use crate::local::LocalProbe;
pub use crate::report::{AgentReport, FailedJob, Observed};
use crate::spec::NodeSpec;
use pgha_pg::lease_file::boot_clock_ms;

mod clock;
mod failsafe_round;
#[cfg(test)]
mod failsafe_round_tests;
mod fencing_step;
mod handle;
mod leave;
pub use leave::LEAVE_PATIENCE;
mod peers;
pub use peers::MemoryUnreadable;
mod promotion_clock;
mod reload;
mod restart;
mod store_bounds;
mod store_watch;

pub use handle::{AgentHandle, Shutdown};
pub use reload::{ReloadRefused, Reloader};
pub use restart::{RestartRefused, Restarter};

/// What is asked of the loop from outside, between two steps.
pub(crate) enum Request {
    /// Render the configuration and reload PostgreSQL (`pgha reload`).
    Reload(handle::Reply<reload::ReloadRefused>),
    /// Restart PostgreSQL in place (`pgha restart --in-place`).
    Restart(handle::Reply<restart::RestartRefused>),
}

/// Every store call is bounded by this at most; less when the safety margin is small (see
/// [`Agent::store_timeout`]).
pub(crate) const STORE_TIMEOUT: Duration =
    Duration::from_millis(pgha_core::config::STORE_CALL_BOUND_MS.1);
/// How long a check that the leader's PostgreSQL can be reached waits for a connection.
pub(crate) const REACH_TIMEOUT: Duration = Duration::from_secs(2);
/// A planned demotion announces "not writable" first, but never waits longer than this.
pub(crate) const ANNOUNCE_TIMEOUT: Duration = Duration::from_millis(500);
/// After a job failed, the next attempt waits at least this long (unless the lease needs a step).
pub(crate) const JOB_RETRY_DELAY_MS: u64 = 1_000;
/// Quick local SQL actions are bounded by this.
pub(crate) const SQL_TIMEOUT: Duration = Duration::from_secs(5);

/// One member's control loop.
pub struct Agent {
    pub(crate) spec: Arc<NodeSpec>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) member: Member,
    /// The boot-clock instant (ms) the core's time counts from: suspend time counts too.
    pub(crate) boot_origin: u64,
    pub(crate) probe: LocalProbe,
    pub(crate) outcomes: Vec<Outcome>,
    /// The job running, and cancelled ones still winding down.
    pub(crate) jobs: crate::job_slot::JobSlot,
    pub(crate) job_tx: mpsc::UnboundedSender<Outcome>,
    pub(crate) job_rx: mpsc::UnboundedReceiver<Outcome>,
    pub(crate) upstream: Option<MemberName>,
    pub(crate) sync_applied: SyncApplied,
    /// What PostgreSQL was at the last step, for the callbacks (`None`: not known yet), and
    /// the role it last ran with.
    pub(crate) callback_role: Option<Option<crate::callbacks::Role>>,
    pub(crate) last_running_role: Option<crate::callbacks::Role>,
    /// History entries whose append failed (store down or slow), oldest first, each with the
    /// id of its first attempt: appended again under that id before the next decision's
    /// actions, so no decision goes unexplained and none is recorded twice.
    pub(crate) unrecorded_history: Vec<(HistoryId, String)>,
    /// `synchronous_commit` last rendered into the configuration.
    pub(crate) commit_level: Option<pgha_core::CommitLevel>,
    /// The cluster's PostgreSQL parameters (`postgresql.*`) last rendered into the
    /// configuration.
    pub(crate) parameters: Option<std::collections::BTreeMap<String, String>>,
    /// `wal_sender_timeout` and `wal_receiver_timeout` last rendered (from the ttl).
    pub(crate) replication_timeout: Option<Duration>,
    /// The last decision's reason with its clocks stopped (see [`pgha_core::Reason::timeless`]).
    pub(crate) last_reason: Option<pgha_core::Reason>,
    pub(crate) view: Option<ClusterView>,
    /// The cluster configuration last read from the store (at first, the one the agent was
    /// started with): what a store that lost its keys gets back, never the defaults.
    pub(crate) known_config: pgha_core::ClusterConfig,
    /// The timing (ttl, margin, loop) whose room for the failsafe was last looked at.
    pub(crate) timing_looked_at: Option<(u64, u64, u64)>,
    /// The synchronous set last read from the store: what decisions use while the store has
    /// none after having had one (its data lost), never an empty set.
    pub(crate) known_sync: Option<pgha_core::SyncSet>,
    /// The configuration last kept beside the data directory (`pgha_pg::kept_config`).
    pub(crate) kept_config: Option<pgha_core::ClusterConfig>,
    /// Why the last attempt to keep it failed (said once, tried again at every read).
    pub(crate) kept_config_failing: Option<String>,
    /// The cluster's identifier is kept beside the data directory (`cluster-id`).
    pub(crate) cluster_remembered: bool,
    /// The peers last kept beside the data directory (`peers`).
    pub(crate) peers_kept: Vec<MemberName>,
    pub(crate) report: watch::Sender<AgentReport>,
    /// Set when a job failed: the next step waits until then.
    pub(crate) hold_until: Option<Millis>,
    pub(crate) failsafe: Failsafe,
    /// The lease deadline handed to the member's supervisor, which fences without us.
    pub(crate) fencing: Fencing,
    /// Whether the data directory takes writes (a thread's checks).
    pub(crate) data_dir_check: crate::data_dir_check::DataDirCheck,
    /// Why the deadline this step called for could not be written (`None`: it was, or none
    /// was due): no job that may make PostgreSQL writable starts meanwhile.
    pub(crate) fence_error: Option<String>,
    /// The store refuses this member's routine writes for lack of resources (etcd out of
    /// space): said once, and once when it takes them again.
    pub(crate) writes_refused: bool,
    /// The leader's timeline history last fetched: (leader, its timeline, switches).
    pub(crate) timelines_cache: Option<(MemberName, u32, Vec<pgha_core::rejoin::TimelineSwitch>)>,
    /// The failsafe rounds of this leader: when the last began, and their answers.
    pub(crate) rounds: failsafe_round::Rounds,
    /// When the store last answered a read.
    pub(crate) last_store_contact: Option<Instant>,
    /// PostgreSQL's version and pending restarts, and when they were read.
    pub(crate) pg_facts: Option<(Instant, crate::report::MemberFacts)>,
    /// An operator's restart-in-place request, asked or running.
    pub(crate) restart: restart::RestartRequest,
    /// When the step that first saw the cluster without a leader ran, and the kind of the
    /// promotion this member runs, for the promotion-time histogram.
    pub(crate) promotion_clock: promotion_clock::PromotionClock,
    /// The newest leader term this agent took or renewed (the key's revision, from the store's
    /// answers: `execute/lease_answers.rs`): the only leader key its leaving may touch; one
    /// under its name at another revision is another agent's (a second start of the member).
    pub(crate) held_term: Option<u64>,
    /// The last step found PostgreSQL not writable (no postmaster, or a standby that answered)
    /// and no job that may make it so: what the fencing goes by, whatever the lease or the
    /// maintenance mode (`agent/fencing_step.rs`).
    pub(crate) known_not_writable: bool,
}

impl Agent {
    /// The agent of `spec` before its loop runs, and the receiver of its reports.
    pub(crate) fn new(
        spec: NodeSpec,
        store: Arc<dyn Store>,
        config: pgha_core::ClusterConfig,
    ) -> Result<(Agent, watch::Receiver<AgentReport>), MemoryUnreadable> {
        let name = spec.name.clone();
        let settings = MemberSettings {
            name: spec.name.clone(),
            tags: spec.tags.clone(),
            addresses: spec.addresses(),
            config: config.clone(),
        };
        let (job_tx, job_rx) = mpsc::unbounded_channel();
        let (report_tx, report_rx) = watch::channel(AgentReport {
            member: name.to_string(),
            ..Default::default()
        });
        let spec = Arc::new(spec);
        let fencing = Fencing::new(spec.instance.lease_file());
        let data_dir_check = crate::data_dir_check::DataDirCheck::start(
            name.to_string(),
            spec.instance.data_dir(),
            spec.instance.run_as.clone(),
        );
        let promises = crate::spec::promise_file(&spec.instance.member_dir);
        let failsafe = Failsafe::persisted(promises, Duration::from_millis(config.ttl_ms));
        let mut member = Member::new(settings);
        peers::recall(&spec, &mut member)?;
        let peers_kept = member.peers();
        let agent = Agent {
            spec,
            store,
            member,
            boot_origin: boot_clock_ms(),
            probe: LocalProbe::default(),
            outcomes: Vec::new(),
            jobs: Default::default(),
            job_tx,
            job_rx,
            upstream: None,
            sync_applied: SyncApplied::default(),
            unrecorded_history: Vec::new(),
            callback_role: None,
            last_running_role: None,
            commit_level: None,
            parameters: None,
            replication_timeout: None,
            last_reason: None,
            view: None,
            known_config: config,
            timing_looked_at: None,
            known_sync: None,
            kept_config: None,
            kept_config_failing: None,
            cluster_remembered: false,
            peers_kept,
            report: report_tx,
            hold_until: None,
            failsafe,
            fencing,
            data_dir_check,
            fence_error: None,
            writes_refused: false,
            timelines_cache: None,
            rounds: failsafe_round::Rounds::new(),
            last_store_contact: None,
            pg_facts: None,
            restart: Default::default(),
            promotion_clock: Default::default(),
            held_term: None,
            known_not_writable: false,
        };
        Ok((agent, report_rx))
    }

    pub(crate) async fn run(
        mut self,
        mut stop: watch::Receiver<Option<Shutdown>>,
        mut freeze: watch::Receiver<Option<tokio::time::Instant>>,
        mut requests: mpsc::UnboundedReceiver<Request>,
    ) {
        self.finish_crash_recovery().await;
        let mut watch = store_watch::StoreWatch::start(self.store.clone());
        loop {
            let requested = *stop.borrow();
            if let Some(how) = requested {
                self.leave(how).await;
                return;
            }
            let frozen_until = *freeze.borrow_and_update();
            if let Some(until) = frozen_until.filter(|u| *u > tokio::time::Instant::now()) {
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => {}
                    _ = stop.changed() => {}
                }
                tracing::warn!("{}: agent thawed", self.spec.name);
                continue;
            }
            if let Some(until) = self.hold_until.take() {
                // A job just failed: do not retry it in a tight loop; the lease deadline rules.
                let until = self.member.lease_deadline().map_or(until, |d| until.min(d));
                tokio::time::sleep_until(self.instant_of(until)).await;
            }
            let wake_at = self.step_once().await;
            if !self.outcomes.is_empty() {
                continue; // lease results change the next decision: step again at once
            }
            let deadline = self.instant_of(wake_at);
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {}
                _ = stop.changed() => {}
                _ = freeze.changed() => {}
                Some(request) = requests.recv() => match request {
                    Request::Reload(reply) => {
                        let _ = reply.send(self.reload_now().await);
                    }
                    Request::Restart(reply) => self.ask_restart(reply),
                },
                outcome = self.job_rx.recv() => {
                    if let Some(o) = outcome {
                        self.job_done(o);
                    }
                }
                answer = self.rounds.answers.recv() => {
                    if let Some(a) = answer {
                        self.failsafe_answered(a);
                    }
                }
                _ = watch.changed() => {}
            }
        }
    }

    pub(crate) fn job_done(&mut self, outcome: Outcome) {
        if let Outcome::Job { kind, result } = &outcome {
            // What it did (the core forgets it once it took the outcome in).
            let what = self
                .member
                .running_job_what()
                .filter(|w| w.kind() == *kind)
                .cloned()
                .unwrap_or(pgha_core::JobWhat::Job(*kind));
            match result {
                Ok(()) => tracing::info!("{}: {what} done", self.spec.name),
                Err(e) => tracing::warn!("{}: {what} failed: {e}", self.spec.name),
            }
            let error = result.as_ref().err().map(|e| FailedJob {
                kind: *kind,
                error: e.to_string(),
            });
            let refused = matches!(result, Err(JobFailure::Vetoed(_) | JobFailure::NotBegun(_)));
            if *kind == JobKind::Promote && refused {
                self.fencing.promotion_asked_of(None); // refused before `pg_ctl promote`
            }
            if *kind == JobKind::Restart {
                self.restart_done(result);
            }
            if *kind == JobKind::Promote && result.is_ok() {
                if let Some((kind, took)) = self.promotion_clock.promoted() {
                    self.report
                        .send_modify(|r| r.promotion_times.record(kind, took));
                }
            }
            if error.is_some() {
                self.hold_until = Some(self.now().plus(JOB_RETRY_DELAY_MS));
            }
            self.report.send_modify(|r| r.last_error = error);
            if matches!(
                kind,
                JobKind::Reclone | JobKind::Bootstrap | JobKind::Rewind
            ) {
                self.probe.reset();
            }
            self.jobs.ended(*kind, result.is_ok());
        }
        self.outcomes.push(outcome);
    }

    /// One observe → step → execute round; returns when to step again at the latest.
    pub(crate) async fn step_once(&mut self) -> Millis {
        while let Ok(o) = self.job_rx.try_recv() {
            self.job_done(o);
        }
        self.take_failsafe_answers();
        let (obs, observed_at) = self.observe().await;
        self.run_callbacks(&obs.local);
        let store_down = matches!(obs.cluster, StoreView::Down { .. });
        let decision = self.member.step(&obs);
        self.say_failsafe_uncounted();
        self.keep_peers();
        self.update_fencing(&obs.local);
        if store_down && self.member.holds_lease(obs.now) {
            self.ask_failsafe();
        }
        let reason = decision.reason.to_string();
        // One line per decision (I6), not one per step: a reason that differs from the last
        // only in how long something has lasted or has left is logged once.
        let timeless = decision.reason.timeless();
        if self.last_reason.as_ref() != Some(&timeless) {
            tracing::info!("{}: {reason}", self.spec.name);
        } else {
            tracing::debug!("{}: {reason}", self.spec.name);
        }
        self.last_reason = Some(timeless);
        self.restart_decided(&decision.actions, &decision.reason);
        self.promotion_clock
            .step(&obs.cluster, self.spec.name.as_str(), &decision.reason);
        self.execute(decision.actions).await;
        let job = self.jobs.current();
        let observed = self.summarize(&obs, observed_at);
        let facts = self.facts(&obs);
        self.report.send_if_modified(|r| {
            let changed = r.reason.as_ref() != Some(&decision.reason) || r.job != job;
            r.reason = Some(decision.reason.clone());
            r.job = job;
            // Kept current without waking anyone: the read endpoints look when asked.
            r.observed = Some(observed);
            r.facts = facts;
            changed
        });
        decision.wake_at
    }

    /// Starts the callback a change of PostgreSQL's role since the last step calls for. The
    /// first observation of an agent only sets the baseline (a restarted agent adopting a
    /// running PostgreSQL calls nothing).
    fn run_callbacks(&mut self, local: &pgha_core::LocalPg) {
        let now = crate::callbacks::running_role(local);
        let last_role = self.last_running_role;
        self.last_running_role = now.or(last_role);
        let Some(before) = self.callback_role.replace(now) else {
            return;
        };
        let runner = self.spec.callback_runner();
        for call in self.spec.callbacks.due(before, now, last_role) {
            runner.spawn(call);
        }
    }

    /// The lease TTL the configuration in force asks for.
    pub(crate) fn ttl(&self) -> pgha_core::Ttl {
        self.member.config().ttl()
    }
}
