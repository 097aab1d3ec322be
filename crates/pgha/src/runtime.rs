//! The local runtime behind `pgha up`: the embedded store, one agent per member, and the
//! operations the control API offers (stop/start a member, switchover, failover, pause).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use pgha_agent::{Agent, AgentHandle, AgentReport, NodeSpec};
use pgha_core::{ClusterConfig, ClusterView, JobKind, MemberName, Reason, SwitchoverRequest, Tags};
use pgha_store::{MemoryStore, Store, TokioClock};
use tokio::sync::Mutex;

use crate::cluster::{LocalCluster, Member};

/// File of the embedded store's persisted state (config, history, initialize).
pub const STORE_FILE: &str = "store.json";

/// A local cluster with its agents running in this process.
pub struct Runtime {
    pub cluster: LocalCluster,
    pub store: Arc<MemoryStore>,
    agents: Mutex<BTreeMap<String, AgentHandle>>,
    proxy_metrics: std::sync::OnceLock<pgha_proxy::MetricsHandle>,
}

impl Runtime {
    /// Opens the embedded store and writes `initial` as the dynamic config if there is none.
    pub async fn open(cluster: LocalCluster, initial: ClusterConfig) -> anyhow::Result<Arc<Self>> {
        let file = cluster.dir.join(STORE_FILE);
        let store = MemoryStore::persistent(Arc::new(TokioClock::new()), &file)
            .with_context(|| format!("open the embedded store {}", file.display()))?;
        let runtime = Arc::new(Runtime {
            cluster,
            store: Arc::new(store),
            agents: Mutex::new(BTreeMap::new()),
            proxy_metrics: std::sync::OnceLock::new(),
        });
        crate::ops::ensure_config(runtime.store.as_ref(), &initial).await?;
        Ok(runtime)
    }

    pub fn set_proxy_metrics(&self, metrics: pgha_proxy::MetricsHandle) {
        let _ = self.proxy_metrics.set(metrics);
    }

    pub fn proxy_metrics(&self) -> Option<&pgha_proxy::MetricsHandle> {
        self.proxy_metrics.get()
    }

    pub async fn view(&self) -> anyhow::Result<ClusterView> {
        Ok(crate::ops::view(self.store.as_ref()).await?)
    }

    pub async fn config(&self) -> anyhow::Result<ClusterConfig> {
        Ok(self.view().await?.config)
    }

    /// Gives the leader key to the member that holds the primary's data (the first member of a
    /// new cluster), so its agent adopts it: a restart keeps the same primary and timeline.
    pub async fn seed_leader(&self) -> anyhow::Result<()> {
        let Ok(primary) = self.cluster.choose_primary() else {
            return Ok(());
        };
        let snapshot = self.store.snapshot().await?;
        if snapshot.leader.is_none() {
            let ttl = Duration::from_millis(self.config().await?.ttl_ms);
            self.store.acquire_leader(&primary.name, ttl).await?;
        }
        Ok(())
    }

    fn spec(&self, member: &Member) -> NodeSpec {
        let c = &self.cluster;
        NodeSpec {
            name: MemberName::new(member.name.as_str()),
            instance: member.instance.clone(),
            host: member.host.clone(),
            port: member.port,
            api: None,
            superuser: c.config.postgresql.superuser.clone(),
            superuser_password: c.secrets.superuser_password.clone(),
            replication_user: c.config.postgresql.replication_user.clone(),
            replication_password: c.secrets.replication_password.clone(),
            passfile: c.passfile(),
            cluster_size: c.members.len(),
            parameters: c.config.parameters(),
            hba: c.hba(),
            tags: Tags::default(),
        }
    }

    /// Starts the agent of `name` (no-op when it runs).
    pub async fn start_member(&self, name: &str) -> anyhow::Result<bool> {
        let member = self.cluster.member(name)?;
        let mut agents = self.agents.lock().await;
        if agents.get(name).is_some_and(|a| !a.is_finished()) {
            return Ok(false);
        }
        let config = self.config().await?;
        let store: Arc<dyn Store> = self.store.clone();
        agents.insert(
            name.to_string(),
            Agent::spawn(self.spec(member), store, config),
        );
        Ok(true)
    }

    /// Stops a member: its PostgreSQL stops and it leaves (the others fail over if it led).
    pub async fn stop_member(&self, name: &str, mode: pgha_pg::StopMode) -> anyhow::Result<bool> {
        self.cluster.member(name)?;
        let handle = self.agents.lock().await.remove(name);
        match handle {
            Some(h) => {
                h.shutdown(pgha_agent::agent::Shutdown::Leave(mode)).await;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    pub async fn running_agents(&self) -> Vec<String> {
        self.agents
            .lock()
            .await
            .iter()
            .filter(|(_, a)| !a.is_finished())
            .map(|(n, _)| n.clone())
            .collect()
    }

    pub async fn reports(&self) -> BTreeMap<String, AgentReport> {
        self.agents
            .lock()
            .await
            .iter()
            .map(|(n, a)| (n.clone(), a.report.borrow().clone()))
            .collect()
    }

    /// Starts every member: the one holding the leader key first, so it bootstraps or adopts.
    pub async fn start_all(&self) -> anyhow::Result<()> {
        self.seed_leader().await?;
        let leader = self.store.snapshot().await?.leader.map(|l| l.holder);
        let mut names: Vec<String> = self
            .cluster
            .members
            .iter()
            .map(|m| m.name.clone())
            .collect();
        names.sort_by_key(|n| Some(n) != leader.as_ref());
        for name in names {
            self.start_member(&name).await?;
        }
        Ok(())
    }

    /// Waits until one leader runs and every other member streams from it; fails early with
    /// an agent's job error (a member that cannot start says why).
    pub async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let view = self.view().await?;
            if let Some(leader) = &view.leader {
                let holder = &leader.holder;
                let ready = self.cluster.members.iter().all(|m| {
                    let name = MemberName::new(m.name.as_str());
                    view.members.get(&name).is_some_and(|r| {
                        if &name == holder {
                            r.running && !r.in_recovery
                        } else {
                            r.running && r.streaming_from.as_ref() == Some(holder)
                        }
                    })
                });
                if ready {
                    return Ok(holder.to_string());
                }
            }
            // The leader failing to start its PostgreSQL is fatal to a start-up: say why.
            if let Some(leader) = &view.leader {
                let reports = self.reports().await;
                if let Some(failure) = reports
                    .get(leader.holder.as_str())
                    .and_then(|r| r.last_error.clone())
                {
                    if matches!(failure.kind, JobKind::Start | JobKind::Bootstrap) {
                        bail!("member {}: {failure}", leader.holder);
                    }
                }
            }
            if Instant::now() > deadline {
                bail!("the cluster did not come up within {} s", timeout.as_secs());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sets `paused` in the dynamic config.
    pub async fn set_paused(&self, paused: bool) -> anyhow::Result<()> {
        crate::ops::set_assignments(self.store.as_ref(), &[format!("paused={paused}")]).await?;
        Ok(())
    }

    /// Validates a switchover/failover request against the current view and writes it.
    pub async fn request(&self, request: SwitchoverRequest) -> anyhow::Result<String> {
        Ok(crate::ops::request(self.store.as_ref(), request).await?)
    }

    /// Stops every member cleanly: pauses automatic actions so nobody fails over, stops the
    /// leader first (its standbys receive everything it wrote), then the others.
    pub async fn shutdown_all(&self) {
        let was_paused = self.config().await.map(|c| c.paused).unwrap_or(false);
        if self.set_paused(true).await.is_ok() {
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                let reports = self.reports().await;
                if reports.values().all(|r| {
                    matches!(
                        r.reason,
                        None | Some(Reason::Paused | Reason::PausedWithoutLeader)
                    )
                }) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let leader = self
            .store
            .snapshot()
            .await
            .ok()
            .and_then(|s| s.leader.map(|l| l.holder));
        let mut names = self.running_agents().await;
        names.sort_by_key(|n| Some(n) != leader.as_ref());
        for name in names {
            if let Err(e) = self.stop_member(&name, pgha_pg::StopMode::Fast).await {
                tracing::error!("{name}: {e:#}");
            }
        }
        if !was_paused {
            let _ = self.set_paused(false).await;
        }
    }
}
