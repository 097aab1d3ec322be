//! What an agent gathers before each step: the store's view (never a guess), the local
//! PostgreSQL, the leader's timelines and reachability; and the summary of it the REST read
//! endpoints answer from.

use std::time::Duration;

use pgha_core::{JobKind, Observation, StoreView};
use pgha_store::cluster_view;
use tokio::time::Instant;

use crate::agent::{Agent, REACH_TIMEOUT};
use crate::local::PROBE_TIMEOUT;
use crate::report::{MemberFacts, Observed};

/// How often the version and the pending restarts are read again.
const FACTS_EVERY: Duration = Duration::from_secs(5);
use crate::spec::postgres_address;

impl Agent {
    /// Reads the store (bounded by the lease deadline), then the local PostgreSQL, and builds
    /// the core's observation; also returns when it was made.
    pub(crate) async fn observe(&mut self) -> (Observation, Instant) {
        // Never let a slow store carry the loop past the lease deadline.
        let limit = self.store_limit();
        let cluster = match tokio::time::timeout(limit, self.store.snapshot()).await {
            Ok(Ok(snapshot)) => match cluster_view(&snapshot) {
                Ok(mut view) => {
                    self.fill_lost_keys(&snapshot, &mut view).await;
                    self.say_if_failsafe_too_tight(&view.config);
                    self.remember_cluster(view.initialize);
                    self.last_store_contact = Some(Instant::now());
                    self.rounds.confirmed = false;
                    hide_until_due(&mut view, unix_now());
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
            view.map_or(self.ttl(), |v| v.config.ttl()).as_duration(),
        );
        // Nor a hung PostgreSQL: a probe gets what a store call gets, and no more than the
        // lease leaves (an unanswered probe reads as "unresponsive", which keeps the lease).
        let to_deadline = self.member.lease_deadline().map_or(PROBE_TIMEOUT, |d| {
            Duration::from_millis(d.0.saturating_sub(self.now().0))
        });
        let probe_limit = self
            .store_timeout()
            .min(PROBE_TIMEOUT)
            .min(to_deadline)
            .max(Duration::from_millis(100));
        let mut local = self
            .probe
            .observe(
                &self.spec,
                view,
                self.upstream.as_ref(),
                &self.sync_applied,
                probe_limit,
            )
            .await;
        // A stream being stopped, or stopped, keeps no upstream: a probe taken before its
        // receiver ended must not put it back into what the next rewrite of the configuration
        // renders (a parameter reload would start the receiver again).
        let stop = Some(JobKind::StopStreaming);
        let stopping = self.jobs.current() == stop || self.jobs.last_succeeded() == stop;
        if local.streaming && local.upstream.is_some() && !stopping {
            self.upstream = local.upstream.clone();
        }
        // No receiver runs, and none can start: the agent took primary_conninfo away and
        // nothing configured PostgreSQL since (a receiver merely between attempts may start
        // again with the conninfo it has).
        local.stream_stopped &= self.jobs.last_succeeded() == stop;
        // Every configuration write renders what PostgreSQL applies now, until the core asks
        // for another list: an agent restarted beside a running primary must not rewrite its
        // synchronous standbys to nothing (commits would be acknowledged that no standby has).
        if local.running && !local.unresponsive {
            self.sync_applied = local.sync_applied.clone();
        }
        // The cluster's synchronous_commit and PostgreSQL parameters, applied by a reload.
        let wanted_commit = view.map(|v| v.config.synchronous_commit);
        let wanted_parameters = view.map(|v| v.config.postgresql.clone());
        let wanted_timeout = view.map(|v| v.config.replication_timeout());
        let changed = wanted_commit != self.commit_level
            || wanted_parameters != self.parameters
            || wanted_timeout != self.replication_timeout;
        if view.is_some() && changed && self.jobs.current().is_none() {
            let before = (
                std::mem::replace(&mut self.commit_level, wanted_commit),
                std::mem::replace(&mut self.parameters, wanted_parameters.clone()),
                std::mem::replace(&mut self.replication_timeout, wanted_timeout),
            );
            match self.rewrite_config(false).await {
                Ok(()) => tracing::info!(
                    "{}: synchronous_commit = {}, replication timeouts {} ms, parameters {:?}",
                    self.spec.name,
                    wanted_commit.unwrap_or_default(),
                    wanted_timeout.unwrap_or_default().as_millis(),
                    wanted_parameters.unwrap_or_default()
                ),
                Err(e) => {
                    tracing::warn!(
                        "{}: could not apply the cluster's synchronous_commit and parameters: {e}",
                        self.spec.name
                    );
                    (self.commit_level, self.parameters, self.replication_timeout) = before;
                }
            }
        }
        self.refresh_pg_facts(&local, probe_limit).await;
        let leader_timelines = self.leader_timelines(&local).await;
        let leader_reachable = self.leader_reachable(&local).await;
        // A confirmation that came while this step observed counts in it: the step may come
        // after the trust it extends would have ended.
        self.take_failsafe_answers();
        let observed_at = Instant::now();
        let now = self.now();
        // The deadline the supervisor holds; "stuck" when the last write of another failed,
        // and at once when it holds none (a leader resumed from maintenance mode whose arming
        // fails: nothing would fence its primary, so it hands over now).
        let fence_armed_at = self.fencing.remaining_ms().map(|left| now.plus(left));
        let fence_stuck_at = (self.fence_error.as_ref()).map(|_| fence_armed_at.unwrap_or(now));
        let obs = Observation {
            now,
            local,
            cluster,
            outcomes: std::mem::take(&mut self.outcomes),
            leader_timelines,
            failsafe_promised_until: self.failsafe.promised_until().map(|u| self.millis_at(u)),
            leader_reachable,
            restart_requested: self.restart.asked(),
            fence_stuck_at,
            fence_armed_at,
            data_dir_unwritable_since: self
                .data_dir_check
                .unwritable_since()
                .map(|at| self.millis_at(at)),
            commit_level_applied: self.commit_level,
        };
        (obs, observed_at)
    }

    /// What the REST read endpoints need from this step.
    pub(crate) fn summarize(&self, obs: &Observation, observed_at: Instant) -> Observed {
        let view = match &obs.cluster {
            StoreView::Up(v) => Some(v.as_ref()),
            StoreView::Down { .. } => None,
        };
        let leader = view
            .and_then(|v| v.leader.as_ref())
            .map(|l| l.holder.clone());
        Observed {
            at: observed_at,
            stale_after: Duration::from_millis(3 * self.member.config().loop_wait_ms)
                + self.store_timeout(),
            leader_lsn: view.and_then(|v| Some(v.members.get(leader.as_ref()?)?.lsn)),
            leader,
            initialized: view.is_some_and(|v| v.initialize.is_some()),
            // with this step's renewal, answered since the step decided
            lease_until: self
                .member
                .lease_deadline_after(&self.outcomes, obs.now)
                .map(|d| self.instant_of(d)),
            synchronous: view.is_some_and(|v| v.sync.members.contains(&self.spec.name)),
            store_reachable: view.is_some(),
            local: obs.local.clone(),
        }
    }

    /// The metrics' facts as of this step.
    pub(crate) fn facts(&self, obs: &Observation) -> MemberFacts {
        let store_down = matches!(obs.cluster, StoreView::Down { .. });
        let promised = self.failsafe.promised_until().is_some();
        let kept = self.rounds.confirmed && self.member.holds_lease(obs.now);
        let pg = self.pg_facts.as_ref().map(|(_, f)| f);
        MemberFacts {
            server_version: pg.and_then(|f| f.server_version),
            pending_restart: pg.and_then(|f| f.pending_restart.clone()),
            failsafe_active: store_down && (promised || kept),
            store_contact: self.last_store_contact,
        }
    }

    /// Reads PostgreSQL's version and pending restarts again when they are older than
    /// [`FACTS_EVERY`] (forgets them while PostgreSQL does not answer).
    async fn refresh_pg_facts(&mut self, local: &pgha_core::LocalPg, limit: Duration) {
        if !local.running || local.unresponsive {
            self.pg_facts = None;
            return;
        }
        if self
            .pg_facts
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < FACTS_EVERY)
        {
            return;
        }
        let spec = self.spec.clone();
        let Some(client) = self.probe.client(&spec, limit).await else {
            return;
        };
        let query = client.query_one(
            "SELECT current_setting('server_version_num')::int, \
             ARRAY(SELECT name::text FROM pg_settings WHERE pending_restart ORDER BY 1)",
            &[],
        );
        match tokio::time::timeout(limit, query).await {
            Ok(Ok(row)) => {
                let version: i32 = row.get(0);
                let facts = MemberFacts {
                    server_version: u32::try_from(version).ok(),
                    pending_restart: Some(row.get(1)),
                    ..MemberFacts::default()
                };
                self.pg_facts = Some((Instant::now(), facts));
            }
            Ok(Err(e)) => tracing::debug!("{}: version and pending restarts: {e}", spec.name),
            Err(_) => tracing::debug!("{}: version and pending restarts: timed out", spec.name),
        }
    }

    /// The leader's timeline history, when this member is on an older timeline and not
    /// streaming (it has a rejoin to plan); cached per leader and timeline.
    pub(crate) async fn leader_timelines(
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
        let address = postgres_address(&leader, record)?;
        let history = crate::timelines::fetch(&self.spec, &address, timeline).await?;
        self.timelines_cache = Some((leader, timeline, history.clone()));
        Some(history)
    }

    /// Whether the leader's PostgreSQL answers a connection from here within
    /// [`REACH_TIMEOUT`]: it completes one (startup, TLS, password), or refuses it with an
    /// error of its own (a login refused, too many clients: it answered), asked only while
    /// this standby is configured for the leader and not streaming. Not a bare TCP
    /// handshake: a link that lets handshakes through and drops what the leader sends (a path
    /// MTU blackhole, a middlebox, a postmaster hung while its kernel still accepts) read as a
    /// leader that answers and refuses to stream, and the standby stopped to rewind data that
    /// had not diverged (found by review).
    pub(crate) async fn leader_reachable(&self, local: &pgha_core::LocalPg) -> Option<bool> {
        let view = self.view.as_ref()?;
        let leader = &view.leader.as_ref()?.holder;
        if !local.running || !local.in_recovery || local.streaming {
            return None;
        }
        if local.upstream.as_ref() != Some(leader) {
            return None;
        }
        let address = postgres_address(leader, view.members.get(leader)?)?;
        let connect = self.spec.connect(&address, REACH_TIMEOUT);
        let answered = match tokio::time::timeout(REACH_TIMEOUT, connect).await {
            Ok(Ok(_)) => true,
            Ok(Err(pgha_pg::PgError::Sql { source, .. })) => source.as_db_error().is_some(),
            Ok(Err(_)) | Err(_) => false,
        };
        Some(answered)
    }

    /// A primary that crashed (state "in production" while stopped) finishes crash recovery
    /// first, so its end of WAL is known before the core compares it with the others'. Never
    /// on a directory a rewind left unfinished (pg_rewind removes the signal files): it is
    /// never started, not even alone.
    pub(crate) async fn finish_crash_recovery(&self) {
        let inst = &self.spec.instance;
        let stopped = !inst.is_running() && !inst.rewind_maybe_incomplete();
        if !inst.is_initialized() || !stopped || inst.has_standby_signal() {
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
}

/// A switchover scheduled for later (`at`) is not shown to the core until that instant: the
/// core has no wall clock, and until then the cluster runs as if nobody had asked.
fn hide_until_due(view: &mut pgha_core::ClusterView, now_unix: u64) {
    if view
        .switchover
        .as_ref()
        .and_then(|p| p.request.at)
        .is_some_and(|at| at > now_unix)
    {
        view.switchover = None;
    }
}

/// Seconds since the Unix epoch on the wall clock (what a scheduled switchover names).
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::hide_until_due;
    use pgha_core::{ClusterView, PendingSwitchover, RequestKind, SwitchoverRequest};

    #[test]
    fn a_scheduled_switchover_is_hidden_until_its_instant() {
        let mut view = ClusterView {
            switchover: Some(PendingSwitchover {
                request: SwitchoverRequest {
                    from: None,
                    to: None,
                    kind: RequestKind::Switchover,
                    at: Some(1000),
                },
                revision: 7,
            }),
            ..ClusterView::default()
        };
        let mut early = view.clone();
        hide_until_due(&mut early, 999);
        assert!(early.switchover.is_none());
        hide_until_due(&mut view, 1000);
        assert!(view.switchover.is_some());
    }
}

impl Agent {
    /// Keeps the cluster's system identifier beside the data directory when it is new to this
    /// member (see `Instance::remembered_cluster`).
    fn remember_cluster(&mut self, initialize: Option<pgha_core::SystemId>) {
        let Some(id) = initialize else { return };
        if self.member.cluster_seen() == Some(id) && self.cluster_remembered {
            return;
        }
        match self.spec.instance.remember_cluster(id.0) {
            Ok(()) => self.cluster_remembered = self.spec.instance.member_dir.is_dir(),
            Err(e) => tracing::warn!(
                "{}: cannot keep the cluster's identifier beside the data directory: {e}",
                self.spec.name
            ),
        }
    }
}

mod lost_keys;
mod timing_room;

#[cfg(test)]
mod config_tests;
#[cfg(test)]
mod crash_recovery_tests;
