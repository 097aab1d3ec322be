//! Gathers the status: probes the members' PostgreSQL concurrently and adds what the store
//! and this host's agents know (leader, pause, synchronous set, each agent's last decision).

use std::time::Duration;

use pgha_pg::logical_slots::{logical_slots, LogicalSlot};
use pgha_pg::probe::{format_lsn, pending_restart, probe, PgState};

use crate::host::Host;
use crate::status::{sync_status, ClusterStatus, MemberStatus, ProxyStatus, Role, State, Target};

/// What a member's own host knows without connecting: whether its postmaster runs, and the
/// role its data directory has while it is stopped.
pub fn on_disk(name: &str, host: &str, port: u16, instance: &pgha_pg::Instance) -> Target {
    Target {
        name: name.to_string(),
        host: host.to_string(),
        port,
        running: Some(instance.is_running()),
        stopped_role: if instance.has_standby_signal() {
            Some(Role::Standby)
        } else if instance.is_initialized() {
            Some(Role::Primary)
        } else {
            None
        },
    }
}

/// Probes `targets` concurrently and assembles the status (leader: the one primary found).
pub async fn gather_targets(
    cluster_name: &str,
    targets: &[Target],
    credentials: &pgha_pg::probe::Credentials,
    proxy: ProxyStatus,
) -> ClusterStatus {
    let probes = targets.iter().map(|t| probe_target(t, credentials));
    let results: Vec<Probed> = futures::future::join_all(probes).await;
    let primaries: Vec<(&Target, &PgState)> = targets
        .iter()
        .zip(&results)
        .filter_map(|(t, p)| {
            let state = p.state.as_ref().ok().filter(|s| !s.in_recovery)?;
            Some((t, state))
        })
        .collect();
    let primary = if primaries.len() == 1 {
        Some(primaries[0])
    } else {
        None
    };
    let members = targets
        .iter()
        .zip(&results)
        .map(|(t, p)| MemberStatus {
            logical_slots: p.slots.clone(),
            pending_restart: p.pending_restart.clone(),
            ..describe(t, p.running, &p.state, primary)
        })
        .collect();
    ClusterStatus {
        cluster: cluster_name.to_string(),
        switchover: None,
        leader: primary.map(|(t, _)| t.name.clone()),
        managed: false,
        paused: false,
        members,
        proxy,
        synchronous: None,
    }
}

/// The status as a running host sees it: its own members from their disk, the others from
/// their records in the store, all probed; the leader, pause and synchronous set from the
/// store; each of its agents' last decision; the proxy's counters when it runs one.
pub async fn of_host(host: &Host) -> ClusterStatus {
    let view = crate::ops::view(host.store.as_ref()).await.ok();
    let mut targets: Vec<Target> = host
        .specs()
        .map(|s| on_disk(s.name.as_str(), &s.host, s.port, &s.instance))
        .collect();
    if let Some(view) = &view {
        for (name, record) in &view.members {
            if targets.iter().any(|t| t.name == name.as_str()) {
                continue;
            }
            let Some(addr) = pgha_agent::spec::postgres_address(name, record) else {
                continue;
            };
            targets.push(Target {
                name: name.to_string(),
                host: addr.host,
                port: addr.port,
                running: Some(record.running),
                stopped_role: Some(if record.in_recovery {
                    Role::Standby
                } else {
                    Role::Primary
                }),
            });
        }
    }
    targets.sort_by(|a, b| a.name.cmp(&b.name));
    let (rw, ro) = host.entry_points.clone();
    let proxy = ProxyStatus {
        rw,
        ro,
        listeners: host
            .proxy_metrics()
            .and_then(|m| serde_json::to_value(m.snapshot().listeners).ok()),
    };
    let mut status = gather_targets(&host.cluster, &targets, &host.credentials, proxy).await;
    status.managed = true;
    if let Some(view) = &view {
        status.leader = view.leader.as_ref().map(|l| l.holder.to_string());
        // A stopped member with a primary's data is not a second primary beside the leader.
        for m in &mut status.members {
            let led_by_another = status.leader.as_ref().is_some_and(|l| *l != m.name);
            if m.role == Role::Primary && m.state == State::Stopped && led_by_another {
                m.role = Role::FormerPrimary;
            }
        }
        status.paused = view.config.paused;
        status.switchover = view.switchover.as_ref().map(|p| p.request.clone());
        status.synchronous = Some(sync_status(view, &status.members));
    }
    if let Some(view) = &view {
        for m in &mut status.members {
            let record = view
                .members
                .get(&pgha_core::MemberName::new(m.name.as_str()));
            m.upstream = record.and_then(|r| r.streaming_from.as_ref().map(|u| u.to_string()));
            m.tags = record.map(|r| r.tags.clone());
            m.pgha_version = record.and_then(|r| r.pgha_version.clone());
        }
    }
    let reports = host.reports();
    for m in &mut status.members {
        m.decision = reports
            .get(&pgha_core::MemberName::new(m.name.as_str()))
            .and_then(|r| r.reason.as_ref().map(|reason| reason.to_string()));
    }
    status
}

/// How long `GET /status` waits for one member's answers, all queries together.
const PROBE_PATIENCE: Duration = Duration::from_secs(5);

async fn probe_target(target: &Target, credentials: &pgha_pg::probe::Credentials) -> Probed {
    if target.running == Some(false) {
        return Probed {
            running: false,
            state: Err(Unprobed::NotRunning),
            slots: Vec::new(),
            pending_restart: Vec::new(),
        };
    }
    // bounded as a whole: a member that accepts and then stops answering (a link blackholed
    // after the handshake) must not hold the request, nor leave it pending on the server
    let probing = async {
        let client = pgha_pg::probe::connect(
            &target.name,
            &target.host,
            target.port,
            credentials,
            Duration::from_secs(2),
        )
        .await?;
        let state = probe(&client, &target.name).await?;
        let slots = logical_slots(&client, &target.name, state.server_version_num).await?;
        let pending = pending_restart(&client, &target.name).await?;
        Ok::<_, pgha_pg::PgError>((state, slots, pending))
    };
    let result = tokio::time::timeout(PROBE_PATIENCE, probing)
        .await
        .unwrap_or_else(|_| {
            Err(pgha_pg::PgError::Timeout {
                what: format!("probing {}", target.name),
                seconds: PROBE_PATIENCE.as_secs(),
            })
        })
        .map_err(Unprobed::Failed);
    // A remote member that does not answer may simply be down.
    let running = target.running.unwrap_or(result.is_ok());
    match result {
        Ok((state, slots, pending_restart)) => Probed {
            running,
            state: Ok(state),
            slots,
            pending_restart,
        },
        Err(e) => Probed {
            running,
            state: Err(e),
            slots: Vec::new(),
            pending_restart: Vec::new(),
        },
    }
}

/// What probing one member found.
struct Probed {
    running: bool,
    /// Its state, or why it could not be read.
    state: Result<PgState, Unprobed>,
    slots: Vec<LogicalSlot>,
    /// Parameters whose new value waits for a restart.
    pending_restart: Vec<String>,
}

/// Why a member's state was not read.
#[derive(Debug)]
enum Unprobed {
    /// Its host says its PostgreSQL does not run: nothing was asked.
    NotRunning,
    /// Asked, and no answer came (the text shown as the member's error).
    Failed(pgha_pg::PgError),
}

fn describe(
    member: &Target,
    running: bool,
    result: &Result<PgState, Unprobed>,
    primary: Option<(&Target, &PgState)>,
) -> MemberStatus {
    let state = if running {
        State::Unreachable
    } else {
        State::Stopped
    };
    let mut status = MemberStatus::new(
        &member.name,
        &member.host,
        member.port,
        Role::Unknown,
        state,
    );
    let state = match result {
        Ok(state) => state,
        Err(Unprobed::Failed(e)) if running => {
            status.error = Some(e.to_string());
            return status;
        }
        Err(_) => {
            if let Some(role) = member.stopped_role {
                status.role = role;
            }
            return status;
        }
    };
    status.timeline = state.timeline;
    let v = state.server_version_num;
    status.server_version = Some(format!("{}.{}", v / 10000, v % 10000));
    status.system_identifier = Some(state.system_identifier.clone());
    if !state.in_recovery {
        status.role = Role::Primary;
        status.state = State::Running;
        status.lsn = state.current_lsn.map(format_lsn);
        status.synchronous_standby_names = Some(state.sync_names.clone());
        return status;
    }
    status.role = Role::Standby;
    status.state = if state.is_streaming() {
        State::Streaming
    } else {
        State::Recovering
    };
    status.lsn = state.position().map(format_lsn);
    status.received_lsn = state.receive_lsn.map(format_lsn);
    status.replayed_lsn = state.replay_lsn.map(format_lsn);
    if let Some((_, p)) = primary {
        if let (Some(current), Some(replayed)) = (p.current_lsn, state.replay_lsn) {
            status.lag_bytes = Some(current.saturating_sub(replayed));
        }
        if let Some(peer) = p
            .replication
            .iter()
            .find(|r| r.application_name == member.name)
        {
            status.sync_state = Some(peer.sync_state.clone());
            status.lag_seconds = peer.replay_lag_seconds.or(if status.lag_bytes == Some(0) {
                Some(0.0)
            } else {
                None
            });
        }
    }
    status
}
