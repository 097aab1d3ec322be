//! The member agent loop: observe (store first, then local PostgreSQL) → `Member::step` →
//! execute, waking on the decision's deadline, a store change, or a finished job.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use pgha_core::{
    Action, ClusterView, JobKind, Member, MemberName, MemberSettings, Millis, Observation, Outcome,
    StoreView, SyncApplied,
};
use pgha_pg::probe::{drop_slot, ensure_slot};
use pgha_store::{Guard, Key, Store, StoreError};
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::failsafe::Failsafe;
use crate::fence::{FenceState, Fencing};
use crate::jobs::{run_job, JobContext};
use crate::local::LocalProbe;
use crate::spec::{postgres_address, Dynamic, NodeSpec};
use pgha_pg::lease_file::boot_clock_ms;
use pgha_store::{cluster_view, HistoryEntry};

/// Every store call is bounded by this at most; less when the safety margin is small (see
/// [`Agent::store_timeout`]).
const STORE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a check that the leader's PostgreSQL can be reached waits for a connection.
const REACH_TIMEOUT: Duration = Duration::from_secs(1);
/// A planned demotion announces "not writable" first, but never waits longer than this.
const ANNOUNCE_TIMEOUT: Duration = Duration::from_millis(500);
/// After a job failed, the next attempt waits at least this long (unless the lease needs a step).
const JOB_RETRY_DELAY_MS: u64 = 1_000;
/// Quick local SQL actions are bounded by this.
const SQL_TIMEOUT: Duration = Duration::from_secs(5);

/// What the agent last decided, for status displays and the API.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentReport {
    pub member: String,
    /// The reason of the last decision (none before the first step).
    pub reason: Option<pgha_core::Reason>,
    /// The long-running job in flight, if any.
    pub job: Option<JobKind>,
    /// The last job's failure, until a job succeeds.
    pub last_error: Option<JobFailure>,
    /// What the last step saw (the read endpoints answer from it, never opening a
    /// PostgreSQL connection of their own).
    pub observed: Option<Observed>,
}

/// What an agent's last step observed, and when.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub at: Instant,
    /// Older than this, it says nothing about now (the agent is stuck or gone).
    pub stale_after: Duration,
    pub local: pgha_core::LocalPg,
    /// The store's view at that step (none when the store could not be read).
    pub leader: Option<MemberName>,
    /// The leader's position as its record in the store gave it.
    pub leader_lsn: Option<pgha_core::Lsn>,
    pub initialized: bool,
    /// Until when this member may act as the leader (the core's lease trust), if it leads.
    pub lease_until: Option<Instant>,
}

impl Observed {
    /// Whether it is recent enough to answer for the present.
    pub fn fresh(&self) -> bool {
        self.at.elapsed() <= self.stale_after
    }

    /// A writable primary holding the lease now: what `/primary` and routing require (I2).
    pub fn leads(&self, me: &MemberName) -> bool {
        self.fresh()
            && self.initialized
            && self.leader.as_ref() == Some(me)
            && self.lease_until.is_some_and(|until| Instant::now() < until)
            && self.local.running
            && !self.local.unresponsive
            && !self.local.in_recovery
    }
}

/// A job that failed, and why (as the job reported it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFailure {
    pub kind: JobKind,
    pub error: String,
}

impl std::fmt::Display for JobFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} failed: {}", self.kind, self.error)
    }
}

/// How an agent stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// Stop PostgreSQL (in this mode), give up the leader key and the member key: the member
    /// leaves, and the others fail over at once if it led.
    Leave(pgha_pg::StopMode),
    /// Stop only the loop; PostgreSQL keeps running as it is.
    Detach,
}

/// A running agent task.
pub struct AgentHandle {
    pub name: MemberName,
    stop: watch::Sender<Option<Shutdown>>,
    join: JoinHandle<()>,
    pub report: watch::Receiver<AgentReport>,
    /// Shared with the REST API's POST /failsafe handler (distributed mode).
    pub failsafe: Failsafe,
}

impl AgentHandle {
    /// Asks the agent to stop and waits until it has.
    pub async fn shutdown(self, how: Shutdown) {
        let _ = self.stop.send(Some(how));
        let _ = self.join.await;
    }

    pub fn is_finished(&self) -> bool {
        self.join.is_finished()
    }
}

/// One member's control loop.
pub struct Agent {
    spec: Arc<NodeSpec>,
    store: Arc<dyn Store>,
    member: Member,
    /// The boot-clock instant (ms) the core's time counts from: suspend time counts too.
    boot_origin: u64,
    probe: LocalProbe,
    outcomes: Vec<Outcome>,
    job: Option<(JobKind, JoinHandle<()>)>,
    job_tx: mpsc::UnboundedSender<Outcome>,
    job_rx: mpsc::UnboundedReceiver<Outcome>,
    upstream: Option<MemberName>,
    sync_applied: SyncApplied,
    /// `synchronous_commit` last rendered into the configuration.
    commit_level: Option<String>,
    last_reason: String,
    last_kind: Option<std::mem::Discriminant<pgha_core::Reason>>,
    view: Option<ClusterView>,
    report: watch::Sender<AgentReport>,
    /// Set when a job failed: the next step waits until then.
    hold_until: Option<Millis>,
    failsafe: Failsafe,
    /// The lease deadline handed to the member's supervisor, which fences without us.
    fencing: Fencing,
    /// The leader's timeline history last fetched: (leader, its timeline, switches).
    timelines_cache: Option<(MemberName, u32, Vec<pgha_core::rejoin::TimelineSwitch>)>,
    /// When the last failsafe round started.
    last_failsafe_round: Option<Instant>,
    /// A failsafe round is asking the other members now.
    failsafe_asking: bool,
}

impl Agent {
    /// Starts the agent loop as a task.
    pub fn spawn(
        spec: NodeSpec,
        store: Arc<dyn Store>,
        config: pgha_core::ClusterConfig,
    ) -> AgentHandle {
        let name = spec.name.clone();
        let settings = MemberSettings {
            name: spec.name.clone(),
            tags: spec.tags.clone(),
            addresses: spec.addresses(),
            config,
        };
        let (job_tx, job_rx) = mpsc::unbounded_channel();
        let (report_tx, report_rx) = watch::channel(AgentReport {
            member: name.to_string(),
            ..Default::default()
        });
        let (stop_tx, stop_rx) = watch::channel(None);
        let spec = Arc::new(spec);
        let fencing = Fencing::new(spec.instance.lease_file());
        let failsafe = Failsafe::persisted(crate::spec::promise_file(&spec.instance.member_dir));
        let agent = Agent {
            spec,
            store,
            member: Member::new(settings),
            boot_origin: boot_clock_ms(),
            probe: LocalProbe::default(),
            outcomes: Vec::new(),
            job: None,
            job_tx,
            job_rx,
            upstream: None,
            sync_applied: SyncApplied::default(),
            commit_level: None,
            last_reason: String::new(),
            last_kind: None,
            view: None,
            report: report_tx,
            hold_until: None,
            failsafe,
            fencing,
            timelines_cache: None,
            failsafe_asking: false,
            last_failsafe_round: None,
        };
        let failsafe = agent.failsafe.clone();
        let join = tokio::spawn(agent.run(stop_rx));
        AgentHandle {
            name,
            stop: stop_tx,
            join,
            report: report_rx,
            failsafe,
        }
    }

    fn now(&self) -> Millis {
        Millis(boot_clock_ms().saturating_sub(self.boot_origin))
    }

    /// The tokio instant at which the core's time reaches `at`.
    fn instant_of(&self, at: Millis) -> Instant {
        Instant::now() + Duration::from_millis(at.0.saturating_sub(self.now().0))
    }

    /// The leader's timeline history, when this member is on an older timeline and not
    /// streaming (it has a rejoin to plan); cached per leader and timeline.
    async fn leader_timelines(
        &mut self,
        local: &pgha_core::LocalPg,
    ) -> Option<Vec<pgha_core::rejoin::TimelineSwitch>> {
        let view = self.view.as_ref()?;
        let leader = view.leader.as_ref()?.holder.clone();
        if leader == self.spec.name || local.streaming {
            return None;
        }
        let record = view.members.get(&leader)?;
        let timeline = record.timeline.0;
        if timeline <= local.timeline.0 {
            return None;
        }
        if let Some((l, t, history)) = &self.timelines_cache {
            if *l == leader && *t == timeline {
                return Some(history.clone());
            }
        }
        let address = postgres_address(record)?;
        let history = crate::timelines::fetch(&self.spec, &address, timeline).await?;
        self.timelines_cache = Some((leader, timeline, history.clone()));
        Some(history)
    }

    /// Whether the leader's PostgreSQL accepts a TCP connection from here, asked only while
    /// this standby is configured for the leader and not streaming.
    async fn leader_reachable(&self, local: &pgha_core::LocalPg) -> Option<bool> {
        let view = self.view.as_ref()?;
        let leader = &view.leader.as_ref()?.holder;
        if !local.running || !local.in_recovery || local.streaming {
            return None;
        }
        if local.upstream.as_ref() != Some(leader) {
            return None;
        }
        let address = postgres_address(view.members.get(leader)?)?;
        let connect = tokio::net::TcpStream::connect((address.host.as_str(), address.port));
        Some(matches!(
            tokio::time::timeout(REACH_TIMEOUT, connect).await,
            Ok(Ok(_))
        ))
    }

    /// An instant on the monotonic clock as the core's milliseconds.
    fn millis_at(&self, at: std::time::Instant) -> Millis {
        let now = self.now().0;
        let std_now = std::time::Instant::now();
        if at >= std_now {
            Millis(now + (at - std_now).as_millis() as u64)
        } else {
            Millis(now.saturating_sub((std_now - at).as_millis() as u64))
        }
    }

    /// Starts a failsafe round (if none runs): every other member of the last view is asked to
    /// confirm this leader; the answer comes back as an outcome when all confirmed.
    fn ask_failsafe(&mut self) {
        // One round per half loop at most (like renewals), never a tight loop.
        let interval = Duration::from_millis((self.ttl().as_millis() as u64 / 6).max(100));
        if self.failsafe_asking
            || self
                .last_failsafe_round
                .is_some_and(|at| at.elapsed() < interval)
        {
            return;
        }
        self.last_failsafe_round = Some(Instant::now());
        let me = self.spec.name.clone();
        let Some(view) = self.view.as_ref() else {
            return;
        };
        // Exactly the members of the failsafe list this leader published (a member outside it
        // does not run for leader meanwhile), every one of them; nobody to ask confirms nothing.
        let Some(list) = view.failsafe.as_ref().filter(|l| l.leader == me) else {
            return;
        };
        let Some(term) = self.member.lease_revision() else {
            return;
        };
        let confirmers: Vec<&MemberName> = list.confirmers().collect();
        let apis: BTreeMap<String, String> = confirmers
            .iter()
            .filter_map(|n| {
                let api = view
                    .members
                    .get(*n)?
                    .addresses
                    .get(crate::spec::API_ADDRESS)?;
                Some((n.to_string(), api.clone()))
            })
            .collect();
        if confirmers.is_empty() || apis.len() < confirmers.len() {
            return; // a listed member we cannot ask cannot confirm: no failsafe
        }
        self.failsafe_asking = true;
        let requested_at = self.now();
        let tx = self.job_tx.clone();
        tokio::spawn(async move {
            let promised = crate::failsafe::ask_all(me.as_str(), term, apis).await;
            if let Some(ms) = promised {
                tracing::info!(
                    "{me}: store unreachable, every member confirmed this leader for {ms} ms (failsafe)"
                );
            }
            let _ = tx.send(Outcome::FailsafeConfirmed {
                requested_at: if promised.is_some() {
                    requested_at
                } else {
                    Millis(0)
                },
                promised_ms: promised.unwrap_or(0),
            });
        });
    }

    /// A primary that crashed (state "in production" while stopped) finishes crash recovery
    /// first, so its end of WAL is known before the core compares it with the others'.
    async fn finish_crash_recovery(&self) {
        let inst = &self.spec.instance;
        if !inst.is_initialized() || inst.is_running() || inst.has_standby_signal() {
            return;
        }
        if let Ok(cd) = inst.controldata().await {
            if cd.cluster_state == "in production" {
                tracing::info!(
                    "{}: PostgreSQL was not shut down cleanly: finishing crash recovery",
                    self.spec.name
                );
                if let Err(e) =
                    pgha_pg::rewind::finish_crash_recovery(inst, Duration::from_secs(600)).await
                {
                    tracing::warn!("{}: crash recovery failed: {e}", self.spec.name);
                }
            }
        }
    }

    async fn run(mut self, mut stop: watch::Receiver<Option<Shutdown>>) {
        self.finish_crash_recovery().await;
        let mut watcher = match tokio::time::timeout(STORE_TIMEOUT, self.store.watch()).await {
            Ok(Ok(w)) => Some(w),
            _ => None,
        };
        loop {
            let requested = *stop.borrow();
            if let Some(how) = requested {
                self.leave(how).await;
                return;
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
                outcome = self.job_rx.recv() => {
                    if let Some(o) = outcome {
                        self.job_done(o);
                    }
                }
                changed = async {
                    match watcher.as_mut() {
                        Some(w) => w.changed().await,
                        None => std::future::pending().await,
                    }
                } => {
                    if changed.is_err() {
                        watcher = None;
                    }
                }
            }
            if watcher.is_none() {
                if let Ok(Ok(w)) = tokio::time::timeout(STORE_TIMEOUT, self.store.watch()).await {
                    watcher = Some(w);
                }
            }
        }
    }

    /// Hands the lease deadline to the supervisor (before any job of this decision starts: a
    /// promotion runs armed); disarms only once PostgreSQL is known not to be writable.
    fn update_fencing(&mut self, local: &pgha_core::LocalPg) {
        let paused = self.view.as_ref().is_some_and(|v| v.config.paused);
        let state = match self.member.fence_deadline() {
            // Maintenance mode: no member takes the lease on its own, so the agent may stop or
            // be upgraded without PostgreSQL being fenced (as Patroni disables its watchdog).
            Some(_) if paused => FenceState::NothingWritable,
            Some(d) => FenceState::LeaseUntil(self.boot_origin + d.0),
            None if !self.spec.instance.is_running() => FenceState::NothingWritable,
            None if local.running && local.in_recovery && !local.unresponsive => {
                FenceState::NothingWritable
            }
            None => FenceState::Unsure,
        };
        if let Err(e) = self.fencing.update(state) {
            tracing::error!(
                "{}: cannot write the fencing deadline ({e}); the supervisor keeps the previous one",
                self.spec.name
            );
        }
    }

    fn job_done(&mut self, outcome: Outcome) {
        if let Outcome::FailsafeConfirmed { requested_at, .. } = outcome {
            self.failsafe_asking = false;
            if requested_at.0 > 0 {
                self.outcomes.push(outcome);
            }
            return;
        }
        if let Outcome::Job { kind, result } = &outcome {
            match result {
                Ok(()) => tracing::info!("{}: {kind:?} done", self.spec.name),
                Err(e) => tracing::warn!("{}: {kind:?} failed: {e}", self.spec.name),
            }
            let error = result.as_ref().err().map(|e| JobFailure {
                kind: *kind,
                error: e.clone(),
            });
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
            if self.job.as_ref().is_some_and(|(k, _)| k == kind) {
                self.job = None;
            }
        }
        self.outcomes.push(outcome);
    }

    /// One observe → step → execute round; returns when to step again at the latest.
    async fn step_once(&mut self) -> Millis {
        while let Ok(o) = self.job_rx.try_recv() {
            self.job_done(o);
        }
        // Never let a slow store carry the loop past the lease deadline.
        let to_deadline = self.member.lease_deadline().map_or(STORE_TIMEOUT, |d| {
            Duration::from_millis(d.0.saturating_sub(self.now().0))
        });
        let limit = self
            .store_timeout()
            .min(to_deadline)
            .max(Duration::from_millis(50));
        let cluster = match tokio::time::timeout(limit, self.store.snapshot()).await {
            Ok(Ok(snapshot)) => match cluster_view(&snapshot) {
                Ok(view) => {
                    self.view = Some(view.clone());
                    StoreView::Up(Box::new(view))
                }
                // Nothing is decided on a guess: an unreadable key reads as a store outage.
                Err(e) => {
                    tracing::error!("{}: {e}", self.spec.name);
                    StoreView::Down {
                        error: e.to_string(),
                    }
                }
            },
            Ok(Err(e)) => StoreView::Down {
                error: e.to_string(),
            },
            Err(_) => StoreView::Down {
                error: format!("no answer within {} ms", limit.as_millis()),
            },
        };
        let view = match &cluster {
            StoreView::Up(v) => Some(v.as_ref()),
            StoreView::Down { .. } => None,
        };
        self.failsafe.observe(
            view.is_none(),
            view.and_then(|v| v.leader.as_ref())
                .map(|l| (l.holder.to_string(), l.revision)),
            Duration::from_millis(view.map_or(self.member.config().ttl_ms, |v| v.config.ttl_ms)),
        );
        let local = self
            .probe
            .observe(&self.spec, view, self.upstream.as_ref(), &self.sync_applied)
            .await;
        if local.streaming && local.upstream.is_some() {
            self.upstream = local.upstream.clone();
        }
        // Every configuration write renders what PostgreSQL applies now, until the core asks
        // for another list: an agent restarted beside a running primary must not rewrite its
        // synchronous standbys to nothing (commits would be acknowledged that no standby has).
        if local.running && !local.unresponsive {
            self.sync_applied = local.sync_applied.clone();
        }
        let wanted_commit = view.map(|v| v.config.synchronous_commit.to_string());
        if wanted_commit.is_some() && wanted_commit != self.commit_level && self.job.is_none() {
            let before = std::mem::replace(&mut self.commit_level, wanted_commit.clone());
            match self.rewrite_config(false).await {
                Ok(()) => tracing::info!(
                    "{}: synchronous_commit = {}",
                    self.spec.name,
                    wanted_commit.unwrap_or_default()
                ),
                Err(e) => {
                    tracing::warn!(
                        "{}: could not apply synchronous_commit: {e}",
                        self.spec.name
                    );
                    self.commit_level = before;
                }
            }
        }
        let leader_timelines = self.leader_timelines(&local).await;
        let leader_reachable = self.leader_reachable(&local).await;
        let observed_at = Instant::now();
        let obs = Observation {
            now: self.now(),
            local,
            cluster,
            outcomes: std::mem::take(&mut self.outcomes),
            leader_timelines,
            failsafe_promised_until: self.failsafe.promised_until().map(|u| self.millis_at(u)),
            leader_reachable,
        };
        let store_down = matches!(obs.cluster, StoreView::Down { .. });
        let decision = self.member.step(&obs);
        self.update_fencing(&obs.local);
        if store_down && self.member.holds_lease(obs.now) {
            self.ask_failsafe();
        }
        let reason = decision.reason.to_string();
        // One line per decision (I6), not one per step: a reason that only counts time
        // (a job running for N ms) is logged when its kind changes.
        let kind = std::mem::discriminant(&decision.reason);
        let counting = matches!(
            decision.reason,
            pgha_core::Reason::JobRunning { .. } | pgha_core::Reason::StoreDownLeaseTrusted { .. }
        );
        if reason != self.last_reason && !(counting && self.last_kind == Some(kind)) {
            tracing::info!("{}: {reason}", self.spec.name);
        } else {
            tracing::debug!("{}: {reason}", self.spec.name);
        }
        self.last_reason = reason.clone();
        self.last_kind = Some(kind);
        self.execute(decision.actions).await;
        let job = self.job.as_ref().map(|(k, _)| *k);
        let view = match &obs.cluster {
            StoreView::Up(v) => Some(v.as_ref()),
            StoreView::Down { .. } => None,
        };
        let leader = view
            .and_then(|v| v.leader.as_ref())
            .map(|l| l.holder.clone());
        let observed = Observed {
            at: observed_at,
            stale_after: Duration::from_millis(3 * self.member.config().loop_wait_ms)
                + self.store_timeout(),
            leader_lsn: view.and_then(|v| Some(v.members.get(leader.as_ref()?)?.lsn)),
            leader,
            initialized: view.is_some_and(|v| v.initialize.is_some()),
            lease_until: self
                .member
                .holds_lease(obs.now)
                .then(|| self.member.lease_deadline().map(|d| self.instant_of(d)))
                .flatten(),
            local: obs.local.clone(),
        };
        self.report.send_if_modified(|r| {
            let changed = r.reason.as_ref() != Some(&decision.reason) || r.job != job;
            r.reason = Some(decision.reason.clone());
            r.job = job;
            // Kept current without waking anyone: the read endpoints look when asked.
            r.observed = Some(observed);
            changed
        });
        decision.wake_at
    }

    async fn execute(&mut self, actions: Vec<Action>) {
        for action in actions {
            if action.job().is_some() {
                self.start_job(action);
                continue;
            }
            if let Err(e) = self.execute_one(&action).await {
                tracing::warn!("{}: {} failed: {e}", self.spec.name, action_name(&action));
                if matches!(action, Action::SetSync(_)) {
                    // What follows (a promotion in strict mode) relies on it: decide again.
                    break;
                }
            }
        }
    }

    async fn execute_one(&mut self, action: &Action) -> Result<(), String> {
        let name = self.spec.name.as_str();
        let limit = self.store_timeout();
        let ttl = |ms: u64| Duration::from_millis(ms);
        let store = self.store.clone();
        match action {
            Action::AcquireLeader { ttl_ms } => {
                let sent = self.now();
                let result = timed(limit, store.acquire_leader(name, ttl(*ttl_ms)))
                    .await
                    .map(|revision| (revision, ttl(*ttl_ms)));
                self.outcomes.push(lease_outcome(result, sent, true));
            }
            Action::RenewLeader { revision, ttl_ms } => {
                let sent = self.now();
                let result = timed(limit, store.renew_leader(name, *revision, ttl(*ttl_ms)))
                    .await
                    .map(|granted| (*revision, granted));
                self.outcomes.push(lease_outcome(result, sent, false));
            }
            Action::ReleaseLeader { revision } => {
                timed(limit, store.release_leader(name, *revision))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Action::PublishMember(record) => {
                let ttl_ms = self.ttl().as_millis() as u64;
                let json = serde_json::to_string(record).map_err(|e| e.to_string())?;
                timed(limit, store.put_member(name, &json, ttl(ttl_ms)))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Action::WriteInitialize { system_id } => {
                let json = serde_json::to_string(system_id).map_err(|e| e.to_string())?;
                timed(limit, store.put(Key::Initialize, &json, Guard::Absent))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Action::PublishSync {
                set,
                leader_revision,
            } => self.put_as_leader(Key::Sync, set, *leader_revision).await?,
            Action::PublishFailsafe {
                list,
                leader_revision,
            } => {
                self.put_as_leader(Key::Failsafe, list, *leader_revision)
                    .await?
            }
            Action::PublishPosition {
                position,
                leader_revision,
            } => {
                self.put_as_leader(Key::Position, position, *leader_revision)
                    .await?
            }
            Action::ClearSwitchover { revision } => {
                timed(
                    limit,
                    store.delete(Key::Switchover, Guard::Revision(*revision)),
                )
                .await
                .map_err(|e| e.to_string())?;
            }
            Action::RecordHistory(event) => {
                tracing::info!("{}: history: {event}", self.spec.name);
                let json = serde_json::to_string(&HistoryEntry::now(event.clone()))
                    .map_err(|e| e.to_string())?;
                timed(limit, store.append_history(&json, Guard::Any))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Action::SetSync(applied) => {
                let before = std::mem::replace(&mut self.sync_applied, applied.clone());
                if let Err(e) = self.rewrite_config(true).await {
                    // Not applied: the core must not publish it as if it were.
                    self.sync_applied = before;
                    return Err(e);
                }
                tracing::info!(
                    "{}: synchronous_standby_names = '{applied}'",
                    self.spec.name
                );
            }
            Action::RestartWalReceiver => {
                let spec = self.spec.clone();
                let client = self
                    .probe
                    .client(&spec)
                    .await
                    .ok_or("local PostgreSQL not reachable")?;
                tokio::time::timeout(
                    SQL_TIMEOUT,
                    pgha_pg::probe::restart_wal_receiver(client, name),
                )
                .await
                .map_err(|_| "timeout".to_string())?
                .map_err(|e| e.to_string())?;
                tracing::info!("{name}: the leader is reachable again: restarted the WAL receiver");
            }
            Action::CreateSlots { names } | Action::DropSlots { names } => {
                let create = matches!(action, Action::CreateSlots { .. });
                let spec = self.spec.clone();
                let client = self
                    .probe
                    .client(&spec)
                    .await
                    .ok_or("local PostgreSQL not reachable")?;
                for n in names {
                    let slot = pgha_pg::conf::slot_name(n.as_str());
                    let r = if create {
                        tokio::time::timeout(SQL_TIMEOUT, ensure_slot(client, name, &slot))
                            .await
                            .map(|r| r.map(|_| ()))
                    } else {
                        tokio::time::timeout(SQL_TIMEOUT, drop_slot(client, name, &slot)).await
                    };
                    r.map_err(|_| "timeout".to_string())?
                        .map_err(|e| e.to_string())?;
                }
            }
            other => return Err(format!("{other:?} is not a store or quick action")),
        }
        Ok(())
    }

    /// Writes `key` only while this member holds the leader key at `revision` (one CAS).
    async fn put_as_leader(
        &self,
        key: Key,
        value: &impl Serialize,
        revision: u64,
    ) -> Result<(), String> {
        let json = serde_json::to_string(value).map_err(|e| e.to_string())?;
        let guard = Guard::Leader {
            holder: self.spec.name.to_string(),
            revision,
        };
        timed(self.store_timeout(), self.store.put(key, &json, guard))
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn start_job(&mut self, action: Action) {
        let kind = action.job().expect("a job");
        if let Some((running, handle)) = self.job.take() {
            tracing::warn!("{}: cancelling {running:?} for {kind:?}", self.spec.name);
            handle.abort();
        }
        match &action {
            Action::Follow { leader }
            | Action::Rewind { from: leader }
            | Action::Reclone { from: leader, .. } => self.upstream = Some(leader.clone()),
            Action::StartPostgres(pgha_core::StartRole::Standby { upstream }) => {
                self.upstream = upstream.clone()
            }
            _ => self.upstream = None,
        }
        tracing::info!("{}: starting {kind:?}", self.spec.name);
        let ctx = JobContext {
            spec: self.spec.clone(),
            peers: self.peers(),
            dynamic: self.dynamic(),
        };
        let tx = self.job_tx.clone();
        let announce = matches!(action, Action::Demote { .. } | Action::StopPostgres(_))
            .then(|| self.not_writable_record())
            .flatten();
        let store = self.store.clone();
        let ttl = self.ttl();
        // A fencing demotion (lease lost) stops PostgreSQL first and announces meanwhile; a
        // planned one says "not writable" first, so the proxy stops routing new sessions here
        // before PostgreSQL stops accepting them, but waits a bounded time for the store.
        let fencing = matches!(
            action,
            Action::Demote {
                mode: pgha_core::StopMode::Immediate
            } | Action::StopPostgres(pgha_core::StopMode::Immediate)
        );
        let limit = ANNOUNCE_TIMEOUT.min(self.store_timeout());
        let handle = tokio::spawn(async move {
            if let Some((name, json)) = announce {
                let put = async move {
                    let _ = timed(limit, store.put_member(&name, &json, ttl)).await;
                };
                if fencing {
                    tokio::spawn(put);
                } else {
                    put.await;
                }
            }
            let result = run_job(ctx, action).await;
            let _ = tx.send(Outcome::Job { kind, result });
        });
        self.job = Some((kind, handle));
    }

    /// The bound of one store call: half the safety margin (so a hung call cannot carry the
    /// loop past its demotion deadline by more than that), between 250 ms and 2 s.
    fn store_timeout(&self) -> Duration {
        let margin = self.member.config().safety_margin_ms;
        Duration::from_millis(margin / 2).clamp(Duration::from_millis(250), STORE_TIMEOUT)
    }

    fn ttl(&self) -> Duration {
        Duration::from_millis(self.member.config().ttl_ms)
    }

    /// This member's published record marked as not writable (None when it was not writable).
    fn not_writable_record(&self) -> Option<(String, String)> {
        let record = self.view.as_ref()?.members.get(&self.spec.name)?;
        if record.in_recovery || !record.running {
            return None;
        }
        let record = pgha_core::MemberRecord {
            in_recovery: true,
            ..record.clone()
        };
        Some((
            self.spec.name.to_string(),
            serde_json::to_string(&record).ok()?,
        ))
    }

    /// The dynamic settings every configuration write renders.
    fn dynamic(&self) -> Dynamic {
        Dynamic {
            sync_names: self.sync_applied.to_string(),
            synchronous_commit: self.commit_level.clone().unwrap_or_default(),
        }
    }

    /// Rewrites pgha.conf for the role the data directory has now and reloads PostgreSQL.
    /// A standby whose upstream is not known yet is left alone (its conninfo must not be lost).
    /// `sync_change`: the rewrite carries a new `synchronous_standby_names` the core relies on,
    /// so it is never skipped silently (a leader about to promote renders without upstream).
    async fn rewrite_config(&self, sync_change: bool) -> Result<(), String> {
        let inst = &self.spec.instance;
        if !inst.is_initialized() || self.job.is_some() {
            if sync_change {
                return Err("no data directory, or a job is running: not applied".into());
            }
            return Ok(());
        }
        let standby = inst.has_standby_signal();
        let upstream = if standby {
            let peers = self.peers();
            match self.upstream.as_ref().and_then(|u| peers.get(u)) {
                Some(up) => Some(up.clone()),
                None if sync_change => None,
                None => return Ok(()),
            }
        } else {
            None
        };
        let conf = self.spec.conf(standby, upstream, &self.dynamic());
        inst.write_config(&inst.data_dir(), &conf, &self.spec.hba)
            .map_err(|e| e.to_string())?;
        if inst.is_running() {
            inst.reload().await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn peers(&self) -> BTreeMap<MemberName, pgha_pg::conf::Upstream> {
        self.view
            .iter()
            .flat_map(|v| v.members.iter())
            .filter_map(|(n, r)| Some((n.clone(), postgres_address(r)?)))
            .collect()
    }

    /// Leaves the cluster (or only stops the loop): stops PostgreSQL, releases the leader key
    /// if held, deletes the member key.
    async fn leave(&mut self, how: Shutdown) {
        if let Some((_, handle)) = self.job.take() {
            handle.abort();
        }
        let Shutdown::Leave(mode) = how else { return };
        let name = self.spec.name.to_string();
        if let Some((me, json)) = self.not_writable_record() {
            let _ = timed(
                self.store_timeout(),
                self.store.put_member(&me, &json, self.ttl()),
            )
            .await;
        }
        let inst = &self.spec.instance;
        if let Err(e) = inst.stop(mode, Duration::from_secs(60)).await {
            tracing::warn!("{name}: stop failed ({e}); stopping immediately");
            let _ = inst
                .stop(pgha_pg::StopMode::Immediate, Duration::from_secs(60))
                .await;
        }
        if !inst.is_running() {
            let _ = self.fencing.update(FenceState::NothingWritable);
        }
        if let Ok(Ok(snapshot)) = tokio::time::timeout(STORE_TIMEOUT, self.store.snapshot()).await {
            if let Some(leader) = snapshot.leader.filter(|l| l.holder == name) {
                let _ = tokio::time::timeout(
                    STORE_TIMEOUT,
                    self.store.release_leader(&name, leader.revision),
                )
                .await;
                tracing::info!("{name}: released the leader key");
            }
        }
        let _ = tokio::time::timeout(STORE_TIMEOUT, self.store.delete_member(&name)).await;
        tracing::info!("{name}: PostgreSQL stopped, left the cluster");
    }
}

/// Bounds a store call by `limit`.
async fn timed<T>(
    limit: Duration,
    call: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(limit, call).await.unwrap_or_else(|_| {
        Err(StoreError::Unavailable(format!(
            "no answer within {} ms",
            limit.as_millis()
        )))
    })
}

fn lease_outcome(
    result: Result<(u64, Duration), StoreError>,
    sent: Millis,
    acquire: bool,
) -> Outcome {
    match result {
        Ok((revision, ttl)) if acquire => Outcome::LeaderAcquired {
            requested_at: sent,
            revision,
            ttl_ms: ttl.as_millis() as u64,
        },
        Ok((revision, ttl)) => Outcome::LeaderRenewed {
            requested_at: sent,
            revision,
            ttl_ms: ttl.as_millis() as u64,
        },
        Err(StoreError::Conflict { .. }) => Outcome::LeaderRefused,
        Err(_) => Outcome::LeaderUnknown,
    }
}

fn action_name(action: &Action) -> String {
    let text = format!("{action:?}");
    text.split(['(', ' ', '{'])
        .next()
        .unwrap_or("action")
        .to_string()
}
