//! A host: the agents of the members it runs, over one store. `pgha up` is a host running
//! every member of a local cluster over the embedded store; `pgha agent` is a host running one
//! member over etcd. Both serve the same API (`crate::api`) from it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use pgha_agent::agent::Shutdown;
use pgha_agent::failsafe::Failsafe;
use pgha_agent::{AgentHandle, AgentReport, FailedJob, NodeSpec};
use pgha_core::{JobKind, MemberName, Reason};
use pgha_pg::probe::Credentials;
use pgha_proxy::MetricsHandle;
use pgha_store::Store;

use crate::ops::{self, OpError};

mod agents;

/// What a host is made of.
pub struct HostSetup {
    /// The cluster's name, as `pgha status` shows it.
    pub cluster: String,
    pub store: Arc<dyn Store>,
    /// The members this host runs.
    pub members: Vec<NodeSpec>,
    /// Bearer token of the API's mutating endpoints; without one they are refused.
    pub token: Option<String>,
    /// The superuser, for the probes of `GET /status`.
    pub credentials: Credentials,
    /// The client entry points (read-write, read-only) as `host:port`, empty when none.
    pub entry_points: (String, String),
}

/// A host with its running agents.
pub struct Host {
    pub cluster: String,
    pub store: Arc<dyn Store>,
    pub token: Option<String>,
    pub credentials: Credentials,
    pub entry_points: (String, String),
    specs: BTreeMap<MemberName, NodeSpec>,
    agents: Mutex<BTreeMap<MemberName, AgentHandle>>,
    proxy_metrics: OnceLock<MetricsHandle>,
}

/// Why the host did not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("no member named {name:?} here; members are {known}")]
    UnknownMember { name: String, known: String },
    #[error("the agent of {name} is not running here; start it first (`pgha start {name}`)")]
    AgentNotRunning { name: MemberName },
    #[error(
        "the agent of {name} is still stopping after {} s (its PostgreSQL, or a job that has \
         not ended); try `pgha start {name}` again in a minute",
        .after.as_secs()
    )]
    StillStopping { name: MemberName, after: Duration },
    #[error(
        "the store holds no cluster configuration (lost with etcd's data, or deleted by hand) \
         and {name} keeps none beside its data to start with; the running members put back \
         the one they last read within a loop: try again then, or set one with `pgha config \
         set`"
    )]
    NoConfiguration { name: MemberName },
    #[error(transparent)]
    Memory(#[from] pgha_agent::agent::MemoryUnreadable),
    #[error(transparent)]
    Reload(#[from] pgha_agent::agent::ReloadRefused),
    #[error(
        "{name}'s agent did not answer the reload within {} s (a long step, or the agent is \
         frozen); see `pgha status`",
        .after.as_secs()
    )]
    ReloadUnanswered { name: MemberName, after: Duration },
    #[error(transparent)]
    Restart(#[from] pgha_agent::agent::RestartRefused),
    #[error(
        "{name} did not run again within {} s of the restart request; see `pgha status` and \
         its log",
        .after.as_secs()
    )]
    RestartUnanswered { name: MemberName, after: Duration },
    #[error(transparent)]
    Op(#[from] OpError),
}

/// How long a reload request waits for the agent's answer.
pub const RELOAD_PATIENCE: Duration = Duration::from_secs(30);
/// How long a start waits for an agent of the same member to finish stopping.
const STOPPING_PATIENCE: Duration = Duration::from_secs(20);
/// How long a restart in place may take, from the request to PostgreSQL running again.
pub const RESTART_PATIENCE: Duration = Duration::from_secs(180);

/// Why the members did not come up.
#[derive(Debug, thiserror::Error)]
pub enum NotReady {
    #[error("member {member}: {failure}")]
    MemberFailed {
        member: MemberName,
        failure: FailedJob,
    },
    #[error("the cluster did not come up within {} s", .0.as_secs())]
    Timeout(Duration),
    #[error(transparent)]
    Op(#[from] OpError),
}

impl Host {
    pub fn new(setup: HostSetup) -> Arc<Self> {
        Arc::new(Host {
            cluster: setup.cluster,
            store: setup.store,
            token: setup.token,
            credentials: setup.credentials,
            entry_points: setup.entry_points,
            specs: setup
                .members
                .into_iter()
                .map(|s| (s.name.clone(), s))
                .collect(),
            agents: Mutex::new(BTreeMap::new()),
            proxy_metrics: OnceLock::new(),
        })
    }

    pub fn set_proxy_metrics(&self, metrics: MetricsHandle) {
        let _ = self.proxy_metrics.set(metrics);
    }

    pub fn proxy_metrics(&self) -> Option<&MetricsHandle> {
        self.proxy_metrics.get()
    }

    /// The members this host runs (whether their agents run or not).
    pub fn specs(&self) -> impl Iterator<Item = &NodeSpec> {
        self.specs.values()
    }

    /// The member `name` of this host.
    pub fn spec(&self, name: &str) -> Result<&NodeSpec, HostError> {
        self.specs
            .get(&MemberName::new(name))
            .ok_or_else(|| HostError::UnknownMember {
                name: name.to_string(),
                known: self
                    .specs
                    .keys()
                    .map(MemberName::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// The one member of a host that runs one (a `pgha agent`); `None` when it runs several.
    pub fn only_member(&self) -> Option<&NodeSpec> {
        let mut specs = self.specs.values();
        match (specs.next(), specs.next()) {
            (Some(one), None) => Some(one),
            _ => None,
        }
    }

    /// The members whose agents run.
    pub fn running(&self) -> Vec<MemberName> {
        let agents = self.agents.lock().expect("agents lock");
        agents
            .iter()
            .filter(|(_, a)| !a.is_finished())
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Each agent's last report (one that ended included: it says why), but those stopping.
    pub fn reports(&self) -> BTreeMap<MemberName, AgentReport> {
        let agents = self.agents.lock().expect("agents lock");
        agents
            .iter()
            .filter(|(_, a)| !a.is_leaving())
            .map(|(n, a)| (n.clone(), a.report.borrow().clone()))
            .collect()
    }

    /// The last report of `name`'s agent (see [`Host::reports`]).
    pub fn report(&self, name: &MemberName) -> Option<AgentReport> {
        let agents = self.agents.lock().expect("agents lock");
        agents
            .get(name)
            .filter(|a| !a.is_leaving())
            .map(|a| a.report.borrow().clone())
    }

    /// The failsafe state of `name`'s agent, if it runs and was not asked to stop: one that
    /// no longer reads the store must not confirm a leader on what it read last.
    pub fn failsafe(&self, name: &MemberName) -> Option<Failsafe> {
        let agents = self.agents.lock().expect("agents lock");
        Self::serving(&agents, name).map(|a| a.failsafe.clone())
    }

    /// Starts every member: the one holding the leader key first, so it bootstraps or adopts.
    pub async fn start_all(&self) -> Result<(), HostError> {
        let leader = self.leader().await?;
        let mut names: Vec<MemberName> = self.specs.keys().cloned().collect();
        names.sort_by_key(|n| Some(n) != leader.as_ref());
        for name in names {
            self.start_member(name.as_str()).await?;
        }
        Ok(())
    }

    async fn leader(&self) -> Result<Option<MemberName>, OpError> {
        let snapshot = self.store.snapshot().await?;
        Ok(snapshot.leader.map(|l| MemberName::new(l.holder)))
    }

    /// Waits until a leader runs writable and every member of this host is it or streams
    /// from it; fails early when the leader's agent cannot start or bootstrap PostgreSQL.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<MemberName, NotReady> {
        let deadline = Instant::now() + timeout;
        loop {
            let view = ops::view(self.store.as_ref()).await?;
            if let Some(holder) = view.leader.as_ref().map(|l| &l.holder) {
                let ready = self.specs.keys().chain([holder]).all(|name| {
                    view.members.get(name).is_some_and(|r| {
                        if name == holder {
                            r.running && !r.in_recovery
                        } else {
                            r.running && r.streaming_from.as_ref() == Some(holder)
                        }
                    })
                });
                if ready {
                    return Ok(holder.clone());
                }
                let failure = self.report(holder).and_then(|r| r.last_error);
                if let Some(failure) = failure {
                    if matches!(failure.kind, JobKind::Start | JobKind::Bootstrap) {
                        return Err(NotReady::MemberFailed {
                            member: holder.clone(),
                            failure,
                        });
                    }
                }
            }
            if Instant::now() > deadline {
                return Err(NotReady::Timeout(timeout));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the whole cluster this host runs (`pgha up`'s Ctrl-C): pauses automatic actions
    /// so nobody fails over, stops the leader first (its standbys receive everything it
    /// wrote), then the others, and restores the pause setting it found.
    pub async fn stop_cluster(&self) {
        let was_paused = ops::view(self.store.as_ref())
            .await
            .map(|v| v.config.paused)
            .unwrap_or(false);
        if ops::set_paused(self.store.as_ref(), true).await.is_ok() {
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                let settled = self.reports().values().all(|r| {
                    matches!(
                        r.reason,
                        None | Some(Reason::Paused | Reason::PausedWithoutLeader)
                    )
                });
                if settled {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let leader = self.leader().await.ok().flatten();
        let mut names = self.running();
        names.sort_by_key(|n| Some(n) != leader.as_ref());
        for name in names {
            let how = Shutdown::Leave(pgha_pg::StopMode::Fast);
            if let Err(e) = self.stop_member(name.as_str(), how).await {
                tracing::error!("{name}: {e}");
            }
        }
        if !was_paused {
            let _ = ops::set_paused(self.store.as_ref(), false).await;
        }
    }

    /// This host leaves a cluster that carries on (`pgha agent`'s SIGTERM): its PostgreSQL
    /// stops and the others fail over at once if it led. In maintenance mode the agents stop
    /// alone and PostgreSQL keeps running under its supervisor (fencing is disarmed while
    /// paused); agents started again adopt it, which is how pgha is upgraded without a
    /// failover.
    pub async fn leave_cluster(&self) {
        let paused = tokio::time::timeout(Duration::from_secs(2), ops::view(self.store.as_ref()))
            .await
            .ok()
            .and_then(Result::ok)
            .is_some_and(|v| v.config.paused);
        for name in self.running() {
            let how = if paused {
                tracing::info!(
                    "{name}: cluster paused: stopping the agent only, PostgreSQL keeps running"
                );
                Shutdown::Detach
            } else {
                tracing::info!("{name}: stopping PostgreSQL and leaving the cluster");
                Shutdown::Leave(pgha_pg::StopMode::Fast)
            };
            if let Err(e) = self.stop_member(name.as_str(), how).await {
                tracing::error!("{name}: {e}");
            }
        }
    }
}

#[cfg(test)]
#[path = "host_tests.rs"]
mod tests;
