//! Observing the local PostgreSQL: data directory, running, role, timeline, WAL positions,
//! standbys and slots, as the core's `LocalPg`.

use std::time::Duration;

use pgha_core::{
    ClusterView, DataDir, LocalPg, Lsn, MemberName, ReplicaState, SyncApplied, SystemId, Timeline,
};
use pgha_pg::hot_standby::{running_settings, HotStandbySettings};
use pgha_pg::killed::{all_killed_within, InstanceId};
use pgha_pg::logical_slots::logical_slots;
use pgha_pg::probe::{list_slots, probe, set_by_alter_system, PgState, StartupActivity};
use tokio_postgres::Client;

use crate::spec::{postgres_address, NodeSpec};

/// The longest a probe (connection included) may take; the agent passes less when its lease
/// leaves less time (see `Agent::observe`).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// How often `pg_file_settings` (which re-reads every configuration file) is asked which
/// settings pgha owns `ALTER SYSTEM` overrides: not on every probe.
const ALTER_SYSTEM_EVERY: Duration = Duration::from_secs(5);

/// Keeps one connection to the local PostgreSQL across probes.
#[derive(Default)]
pub struct LocalProbe {
    client: Option<Client>,
    system_id: Option<SystemId>,
    /// The last state a probe read, reported (marked unresponsive) while probes fail.
    last_answer: Option<LocalPg>,
    /// The last connection attempt was refused for want of slots (SQLSTATE 53300).
    refused: bool,
    /// The owned settings `ALTER SYSTEM` overrode, as last read, and when.
    alter_system: Option<(tokio::time::Instant, Vec<String>)>,
    /// The postmaster the last probe read and its replay position then.
    last_replay: Option<(i32, u64)>,
    /// The last postmaster seen alive and its server processes: what it left once it is gone
    /// is found by them (and killed, see `Action::KillPostgres`).
    instance: Option<(i32, InstanceId)>,
    /// With no postmaster alive, nothing of that instance could run any more at the last
    /// look: none of it can fork, so that holds until a postmaster is seen alive again (and
    /// `/proc` is not scanned at every step of a stopped PostgreSQL).
    left_nothing: bool,
}

impl LocalProbe {
    /// Forgets cached facts about the data directory (after it was replaced).
    pub fn reset(&mut self) {
        self.client = None;
        self.system_id = None;
        self.last_answer = None;
        self.alter_system = None;
        self.last_replay = None;
        self.instance = None;
        self.left_nothing = false;
    }

    /// The server processes of the last postmaster seen alive, if one was.
    pub(crate) fn instance(&self) -> Option<&InstanceId> {
        self.instance.as_ref().map(|(_, instance)| instance)
    }

    /// Reads the `ALTER SYSTEM` overrides again at the next probe (after they were reset).
    pub(crate) fn forget_alter_system(&mut self) {
        self.alter_system = None;
    }

    /// A live connection to the local PostgreSQL, if it accepts one.
    pub async fn client(&mut self, spec: &NodeSpec, limit: Duration) -> Option<&Client> {
        if self.client.as_ref().is_some_and(|c| c.is_closed()) {
            self.client = None;
        }
        if self.client.is_none() {
            match spec.connect_local(limit).await {
                Ok(client) => {
                    self.client = Some(client);
                    self.refused = false;
                }
                Err(e) => self.refused = e.is_too_many_connections(),
            }
        }
        self.client.as_ref()
    }

    /// Reads the local state. `upstream` is the member this node was last configured to follow.
    pub async fn observe(
        &mut self,
        spec: &NodeSpec,
        view: Option<&ClusterView>,
        upstream: Option<&MemberName>,
        sync_applied: &SyncApplied,
        limit: Duration,
    ) -> LocalPg {
        let inst = &spec.instance;
        // A data directory that cannot be looked at may hold a running PostgreSQL: only one
        // seen without `PG_VERSION` has no data (its postmaster is looked for otherwise).
        if inst.initialized() == Some(false) {
            self.reset();
            return LocalPg {
                data: DataDir::Missing,
                ..LocalPg::default()
            };
        }
        let rewind_incomplete = inst.rewind_incomplete();
        let mut local = LocalPg {
            data: DataDir::Missing,
            running: false,
            rewind_incomplete,
            // a standby.signal that cannot be looked at is not taken for a primary's data: a
            // leader starts it as a standby and promotes it (a new timeline, its checks), a
            // follower starts it following (a fork shows as it streams)
            in_recovery: inst.standby_signal().unwrap_or(true),
            upstream: upstream.cloned(),
            sync_applied: sync_applied.clone(),
            ..LocalPg::default()
        };
        // Read once: its pid also tells a restart between probes (`replaying_local_wal`). One
        // that could not be looked for may run: it is probed, never taken for stopped.
        let holder = inst.pid_file_holder();
        let postmaster = holder.postmaster();
        let postmaster_alive = holder.may_run();
        if let Some(pm) = postmaster {
            self.left_nothing = false;
            if self.instance.as_ref().is_none_or(|(seen, _)| *seen != pm) {
                if let Some(instance) = InstanceId::of(pm) {
                    self.instance = Some((pm, instance));
                }
            }
        }
        let state = if postmaster_alive {
            self.probe(spec, limit).await
        } else {
            None
        };
        if postmaster_alive && state.is_none() {
            // Alive but silent: never "stopped", never "standby" on a guess.
            let mut silent = self.last_answer.clone().unwrap_or(local);
            silent.running = true;
            silent.unresponsive = true;
            silent.rewind_incomplete = rewind_incomplete;
            silent.refusing_connections = self.refused;
            silent.sync_applied = sync_applied.clone();
            // killed only when shown, with the postmaster's pid file read
            silent.killed = false;
            if let (Some(instance), Some(_)) = (self.instance(), postmaster) {
                silent.killed = all_killed_within(instance, postmaster, limit).await;
            }
            if silent.data == DataDir::Missing {
                if let Ok(cd) = inst.controldata().await {
                    if let Ok(id) = cd.system_identifier.parse() {
                        self.system_id = Some(SystemId(id));
                    }
                    silent.timeline = Timeline(cd.checkpoint_timeline);
                    silent.lsn = Lsn(cd.checkpoint_lsn);
                }
                if let Some(id) = self.system_id {
                    silent.data = DataDir::Present { system_id: id };
                }
            }
            return silent;
        }
        match state {
            Some(Probed {
                state,
                slots,
                synced_slots,
                altered,
                paused_with,
            }) => {
                if let Some(running) = paused_with {
                    // Paused by PostgreSQL itself when the primary asks for more than this
                    // standby runs with (its pg_control then holds the primary's values).
                    if let Ok(cd) = inst.controldata().await {
                        local.replay_held_by = cd
                            .primary_settings
                            .above(&running)
                            .into_iter()
                            .map(String::from)
                            .collect();
                    }
                }
                local.running = true;
                local.synced_slots = synced_slots;
                local.altered_by_alter_system = altered;
                local.in_recovery = state.in_recovery;
                local.timeline = Timeline(state.wal_timeline().unwrap_or(0));
                local.lsn = Lsn(state.position().unwrap_or(0));
                local.replay_lsn = Lsn(state.replay_lsn.or(state.current_lsn).unwrap_or(0));
                local.streaming = state.is_streaming();
                // no receiver runs now (the agent tells whether one may start again)
                local.stream_stopped = state.in_recovery && state.wal_receiver_status.is_none();
                if local.streaming {
                    if let Some(name) = state.upstream.as_deref().and_then(|a| member_at(view, a)) {
                        local.upstream = Some(name);
                    }
                }
                local.replicas = state
                    .replication
                    .iter()
                    .map(|r| ReplicaState {
                        name: MemberName::new(r.application_name.as_str()),
                        streaming: r.state == "streaming",
                        flush_lsn: Lsn(r.flush_lsn.unwrap_or(0)),
                        replay_lsn: Lsn(r.replay_lsn.unwrap_or(0)),
                    })
                    .collect();
                local.slots = slots.into_iter().map(MemberName::new).collect();
                local.wal_waiting_at = state.wal_waiting_at().map(Lsn);
                local.flushed_lsn = Lsn(state.flush_lsn.unwrap_or(0));
                let replay = state.replay_lsn.unwrap_or(0);
                local.replaying_local_wal = replaying_local_wal(
                    &state,
                    postmaster
                        .zip(self.last_replay)
                        .and_then(|(pid, (last_pid, at))| (pid == last_pid).then_some(at)),
                    !local.replay_held_by.is_empty(),
                );
                self.last_replay = postmaster.map(|pid| (pid, replay));
                // What PostgreSQL applies, not what the agent last asked for.
                if let Some(applied) = SyncApplied::parse(&state.sync_names) {
                    local.sync_applied = applied;
                }
                if let Ok(id) = state.system_identifier.parse() {
                    self.system_id = Some(SystemId(id));
                }
            }
            None => {
                // What the last postmaster may have left (backends blocked on a disk).
                if let Some(instance) = self.instance().filter(|_| !self.left_nothing) {
                    self.left_nothing = all_killed_within(instance, None, limit).await;
                }
                local.killed = self.left_nothing;
                if let Ok(cd) = inst.controldata().await {
                    local.crashed = cd.cluster_state == "in production";
                    local.timeline = Timeline(cd.checkpoint_timeline);
                    local.lsn = Lsn(cd.checkpoint_lsn);
                    local.replay_lsn = Lsn(cd.checkpoint_lsn);
                    if let Ok(id) = cd.system_identifier.parse() {
                        self.system_id = Some(SystemId(id));
                    }
                }
            }
        }
        if let Some(id) = self.system_id {
            local.data = DataDir::Present { system_id: id };
        }
        self.last_answer = local.running.then(|| local.clone());
        local
    }

    /// The local PostgreSQL's state, its physical slots, on a 17+ standby how many
    /// synchronized logical slots a promotion would find usable, and the settings pgha owns
    /// that `ALTER SYSTEM` overrides.
    async fn probe(&mut self, spec: &NodeSpec, limit: Duration) -> Option<Probed> {
        let name = spec.name.to_string();
        let started = tokio::time::Instant::now();
        let known_altered = self
            .alter_system
            .as_ref()
            .filter(|(at, _)| at.elapsed() < ALTER_SYSTEM_EVERY)
            .map(|(_, altered)| altered.clone());
        let read_altered = known_altered.is_none();
        let client = self.client(spec, limit).await?;
        let left = limit.saturating_sub(started.elapsed());
        let result = tokio::time::timeout(left, async {
            let state = probe(client, &name).await?;
            let slots = list_slots(client, &name).await?;
            let synced_slots = if state.in_recovery && state.server_version_num >= 170000 {
                let logical = logical_slots(client, &name, state.server_version_num).await?;
                let usable = logical.iter().filter(|s| s.synced && s.ready).count();
                u32::try_from(usable).unwrap_or(u32::MAX)
            } else {
                0
            };
            let paused_with = if state.replay_paused {
                Some(running_settings(client, &name).await?)
            } else {
                None
            };
            let altered = match known_altered {
                Some(altered) => altered,
                None => {
                    let refused: Vec<&str> = pgha_pg::conf::refused_parameters().collect();
                    set_by_alter_system(client, &name, &refused).await?
                }
            };
            Ok::<_, pgha_pg::PgError>(Probed {
                state,
                slots,
                synced_slots,
                altered,
                paused_with,
            })
        })
        .await;
        match result {
            Ok(Ok(v)) => {
                if read_altered {
                    self.alter_system = Some((tokio::time::Instant::now(), v.altered.clone()));
                }
                Some(v)
            }
            _ => {
                self.client = None;
                None
            }
        }
    }
}

/// What one probe of the running local PostgreSQL read.
struct Probed {
    state: PgState,
    slots: Vec<String>,
    synced_slots: u32,
    altered: Vec<String>,
    /// On a standby whose replay is paused: the settings it runs with.
    paused_with: Option<HotStandbySettings>,
}

/// The member whose PostgreSQL listens on `address` ("host:port", as PostgreSQL reports the
/// WAL receiver's sender). With TLS to an IP address the conninfo names the member as `host`
/// (verified against its certificate) and the IP as `hostaddr`, and PostgreSQL reports `host`:
/// the member of that name on that port, when no member's address is `address` itself.
fn member_at(view: Option<&ClusterView>, address: &str) -> Option<MemberName> {
    let (host, port) = address.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let members = &view?.members;
    let on_port = |n: &MemberName, r: &pgha_core::MemberRecord| {
        postgres_address(n, r).filter(|u| u.port == port)
    };
    let by_address = members.iter().find(|(n, r)| {
        on_port(n, r).is_some_and(|u| u.host == host || same_loopback(&u.host, host))
    });
    let by_name = || (members.iter()).find(|(n, r)| n.as_str() == host && on_port(n, r).is_some());
    by_address.or_else(by_name).map(|(n, _)| n.clone())
}

fn same_loopback(a: &str, b: &str) -> bool {
    let lo = |h: &str| h == "127.0.0.1" || h == "localhost" || h == "::1";
    lo(a) && lo(b)
}

/// Whether a standby's position (its replay, when it received nothing since it started) may
/// still be short of the WAL it holds. Not once its startup process waits for more WAL (it
/// replayed all it has); still while its replay is held (paused, delayed, waiting out a
/// query it conflicts with), which stands still between probes short of the end. Otherwise
/// (replaying, reading through a slow `restore_command`, or not seen): while its replay moved
/// since the last probe of the same postmaster (`replayed_before`; none: this is the first),
/// or PostgreSQL holds it (`held`).
fn replaying_local_wal(state: &PgState, replayed_before: Option<u64>, held: bool) -> bool {
    if !state.in_recovery || state.receive_lsn.is_some() {
        return false;
    }
    match state.startup {
        Some(StartupActivity::WaitingForWal) => false,
        Some(StartupActivity::Held) => true,
        Some(StartupActivity::Other) | None => {
            held || replayed_before.is_none_or(|before| state.replay_lsn.unwrap_or(0) > before)
        }
    }
}

#[cfg(test)]
#[path = "local_tests.rs"]
mod tests;
