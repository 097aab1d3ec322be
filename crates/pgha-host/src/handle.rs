//! One handle on a cluster for the CLI: the API client of its hosts (`pgha up`'s, or the
//! `pgha agent`s' found through etcd), the same calls in both modes. A local cluster that is
//! not running is read from its directory and persisted store instead.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::api::control::{ConfigChange, MemberChanged, Reinitialised, StopRequest};
use crate::client::{Client, ClientError};
use crate::status::{ClusterStatus, ProxyStatus};
use crate::sync_wait::{self, SyncProgress};
use pgha_core::ClusterConfig;
use pgha_store::{HistoryEntry, MemoryStore, Store, TokioClock};

mod promotions;

pub use promotions::Promoted;

use crate::error::CliError;
use crate::local::{LocalCluster, STORE_FILE};
use crate::node::Node;

/// How long the CLI waits for etcd to find the agents' addresses.
const CLI_ETCD_PATIENCE: Option<Duration> = Some(Duration::from_secs(5));
/// What a request the host bounds itself (a stop by the agent's leave, a reload by its
/// patience) may take beyond that bound: the agent's step ending first, the answer on its way.
const HOST_SLACK: Duration = Duration::from_secs(10);

/// A cluster the CLI acts on.
pub struct ClusterHandle {
    pub(crate) client: Client,
    /// The local cluster, when the handle is on one: what is known while it is stopped.
    local: Option<Box<LocalCluster>>,
    /// Distributed mode: the API of the agent that runs each member (from etcd), for the
    /// requests only that host can serve (stop, start).
    member_apis: std::collections::BTreeMap<String, String>,
    /// Distributed mode: the node config file the handle was opened with.
    config_file: Option<std::path::PathBuf>,
    token: Option<String>,
    api_tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

/// What a configuration change did.
pub struct ConfigChanged {
    pub config: ClusterConfig,
    /// The cluster is stopped: the change takes effect at its next start.
    pub deferred: bool,
    /// A synchronous setting changed: where the leader stands with it, and how long the wait
    /// for it took.
    pub sync: Option<(SyncProgress, Duration)>,
}

impl ClusterHandle {
    /// A local cluster: its `pgha up` serves the API on `api_host:base_port+2`.
    pub fn local(cluster: LocalCluster) -> Self {
        let address = format!(
            "{}:{}",
            cluster.config.cluster.api_host(),
            cluster.config.cluster.base_port + 2
        );
        ClusterHandle {
            client: Client::new([address], cluster.secrets.api_token.clone(), None),
            token: cluster.secrets.api_token.clone(),
            local: Some(Box::new(cluster)),
            member_apis: Default::default(),
            config_file: None,
            api_tls: None,
        }
    }

    /// A handle on the API at `address` alone (tests: a stub API).
    #[cfg(test)]
    pub(crate) fn over(address: String) -> Self {
        ClusterHandle {
            client: Client::new([address], None, None),
            local: None,
            member_apis: Default::default(),
            config_file: None,
            token: None,
            api_tls: None,
        }
    }

    /// A distributed cluster: this host's agent first, then every agent whose address its
    /// record in etcd publishes (found only if etcd answers within a few seconds).
    pub async fn distributed(file: &Path) -> anyhow::Result<Self> {
        let node = Node::load(file)?;
        let mut addresses = vec![node.config.member.api.clone()];
        let mut member_apis = std::collections::BTreeMap::new();
        member_apis.insert(
            node.config.member.name.clone(),
            node.config.member.api.clone(),
        );
        match node.connect_store(CLI_ETCD_PATIENCE).await {
            Ok(store) => {
                let view = crate::ops::view(store.as_ref()).await?;
                for (name, record) in &view.members {
                    if let Some(api) = record.addresses.get(pgha_agent::spec::API_ADDRESS) {
                        addresses.push(api.clone());
                        member_apis.insert(name.to_string(), api.clone());
                    }
                }
            }
            Err(e) => tracing::warn!("{e:#}; asking only this host's agent"),
        }
        Ok(ClusterHandle {
            client: Client::new(
                addresses,
                node.secrets.api_token.clone(),
                node.api_client_tls(),
            ),
            local: None,
            member_apis,
            config_file: Some(file.to_path_buf()),
            token: node.secrets.api_token.clone(),
            api_tls: node.api_client_tls(),
        })
    }

    /// A local cluster that no `pgha up` serves: `Some` when the handle is on one and
    /// nothing answers.
    fn stopped<'a>(&'a self, e: &ClientError) -> Option<&'a LocalCluster> {
        self.local.as_deref().filter(|_| e.unreachable())
    }

    /// [`ClusterHandle::stopped`], and no `pgha up` holds its directory: what its files say
    /// is the cluster's state (a `pgha up` that runs, starting or stalled, has its own).
    fn stopped_for_reading<'a>(&'a self, e: &ClientError) -> Option<&'a LocalCluster> {
        self.stopped(e)
            .filter(|cluster| up_holding(cluster).is_none())
    }

    /// The CLI's error for a failed request, saying how to start what does not answer, or
    /// that the `pgha up` holding the directory runs but did not answer.
    pub(crate) fn explain(&self, e: ClientError) -> anyhow::Error {
        match (&e, &self.local) {
            (ClientError::Unreachable { tried }, Some(cluster)) => match up_holding(cluster) {
                Some(pid) => CliError::UpNotAnswering {
                    dir: cluster.dir.clone(),
                    pid,
                    api: tried.join(", "),
                }
                .into(),
                None => CliError::NotRunning {
                    dir: cluster.dir.clone(),
                    api: tried.join(", "),
                }
                .into(),
            },
            (ClientError::Unreachable { tried }, None) => CliError::NoAgent {
                tried: tried.join(", "),
            }
            .into(),
            _ => e.into(),
        }
    }

    /// The members, their roles and positions, the synchronous state.
    pub async fn status(&self) -> anyhow::Result<ClusterStatus> {
        match self.client.get("/status").await {
            Ok(status) => Ok(status),
            Err(e) => match self.stopped_for_reading(&e) {
                Some(cluster) => Ok(stopped_status(cluster).await),
                None => Err(self.explain(e)),
            },
        }
    }

    /// The dynamic settings in force.
    pub async fn config(&self) -> anyhow::Result<ClusterConfig> {
        match self.client.get("/config").await {
            Ok(config) => Ok(config),
            Err(e) => match self.stopped_for_reading(&e) {
                Some(cluster) => {
                    let store = persisted_store(cluster)?;
                    Ok(crate::ops::stored_config(&store).await?)
                }
                None => Err(self.explain(e)),
            },
        }
    }

    /// Applies KEY=VALUE assignments, all or none.
    pub async fn set_config(&self, assignments: &[String]) -> anyhow::Result<ConfigChanged> {
        let body = ConfigChange {
            assignments: assignments.to_vec(),
        };
        match self.client.post("/config", &body).await {
            Ok(config) => {
                let sync = match sync_wait::touches_sync(assignments) {
                    true => Some(self.wait_sync_in_force(&config).await?),
                    false => None,
                };
                Ok(ConfigChanged {
                    config,
                    deferred: false,
                    sync,
                })
            }
            Err(e) => match self.stopped(&e) {
                Some(cluster) => {
                    // Held until the store is written: a `pgha up` that holds it (stalled,
                    // not stopped) would write its own store over this change when it goes on.
                    let _lock = crate::local::lock::lock_unanswered(&cluster.dir, &e)?;
                    let store = persisted_store(cluster)?;
                    let (bins, run_as) = (&cluster.bins, &cluster.run_as);
                    crate::parameter_check::check(bins, run_as, assignments).await?;
                    Ok(ConfigChanged {
                        config: crate::ops::set_assignments(&store, assignments).await?,
                        deferred: true,
                        sync: None,
                    })
                }
                None => Err(self.explain(e)),
            },
        }
    }

    /// Maintenance mode on or off.
    pub async fn pause(&self, paused: bool) -> anyhow::Result<()> {
        let path = if paused { "/pause" } else { "/resume" };
        let _: ClusterConfig = self
            .client
            .post(path, &())
            .await
            .map_err(|e| self.explain(e))?;
        Ok(())
    }

    /// The client of the host that runs member `name` (in distributed mode, its own agent).
    fn member_client(&self, name: &str) -> std::borrow::Cow<'_, Client> {
        match self.member_apis.get(name) {
            Some(api) => std::borrow::Cow::Owned(Client::new(
                [api.clone()],
                self.token.clone(),
                self.api_tls.clone(),
            )),
            None => std::borrow::Cow::Borrowed(&self.client),
        }
    }

    /// The client of the host that runs member `name`, refused (naming the fix) when no host
    /// is known to run it: a local cluster without that member, or, in distributed mode, a
    /// member neither etcd nor the config file names an agent for.
    fn host_of(&self, name: &str) -> anyhow::Result<std::borrow::Cow<'_, Client>> {
        if let Some(cluster) = &self.local {
            cluster.member(name)?;
        } else if !self.member_apis.contains_key(name) {
            return Err(NoHostFor {
                name: name.to_string(),
                file: self.config_file.clone().unwrap_or_default(),
                known: self
                    .member_apis
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
            }
            .into());
        }
        Ok(self.member_client(name))
    }

    /// Re-clones member `name` from the leader, through the host that runs it.
    pub async fn reinit(&self, name: &str) -> anyhow::Result<Reinitialised> {
        // it answers once the member's agent has left (as long as a stop takes), as a stop
        // does: given up sooner, the rename and the start after it would never run
        let patience = pgha_agent::agent::LEAVE_PATIENCE + HOST_SLACK;
        self.member_client(name)
            .post_waiting(&format!("/members/{name}/reinit"), &(), patience)
            .await
            .map_err(|e| self.explain(e))
    }

    /// Stops (`Some(request)`) or starts (`None`) one member, through the host that runs it.
    /// A stop answers once the member's agent has left, as long as that takes (a cancelled
    /// job waited for, a slow stop of PostgreSQL): the request waits for it.
    pub async fn stop_or_start(
        &self,
        name: &str,
        stop: Option<StopRequest>,
    ) -> anyhow::Result<MemberChanged> {
        let client = self.host_of(name)?;
        match &stop {
            Some(body) => {
                let patience = pgha_agent::agent::LEAVE_PATIENCE + HOST_SLACK;
                let path = format!("/members/{name}/stop");
                client.post_waiting(&path, body, patience).await
            }
            None => client.post(&format!("/members/{name}/start"), &()).await,
        }
        .map_err(|e| self.explain(e))
    }

    /// Member `name` renders its PostgreSQL configuration and reloads it, through the host
    /// that runs it.
    pub async fn reload(&self, name: &str) -> anyhow::Result<MemberChanged> {
        // past the host's own bound, so that its answer (why the agent did not reload) comes
        let patience = crate::host::RELOAD_PATIENCE + HOST_SLACK;
        self.host_of(name)?
            .post_waiting(&format!("/members/{name}/reload"), &(), patience)
            .await
            .map_err(|e| self.explain(e))
    }

    /// Member `name` restarts its PostgreSQL in place (a leader keeps its lease), through the
    /// host that runs it; answers once it runs again.
    pub async fn restart_member(&self, name: &str) -> anyhow::Result<MemberChanged> {
        let patience = crate::host::RESTART_PATIENCE + std::time::Duration::from_secs(10);
        self.host_of(name)?
            .post_waiting(&format!("/members/{name}/restart"), &(), patience)
            .await
            .map_err(|e| self.explain(e))
    }

    /// Failovers, switchovers and rejoins, oldest first.
    pub async fn history(&self) -> anyhow::Result<Vec<HistoryEntry>> {
        match self.client.get("/history").await {
            Ok(entries) => Ok(entries),
            Err(e) => match self.stopped_for_reading(&e) {
                Some(cluster) if !cluster.dir.join(STORE_FILE).exists() => Ok(Vec::new()),
                Some(cluster) => {
                    let snapshot = persisted_store(cluster)?.snapshot().await?;
                    Ok(pgha_store::history_entries(&snapshot))
                }
                None => Err(self.explain(e)),
            },
        }
    }
}

/// Distributed mode: no agent is known to run a member (a member stopped by `pgha stop` has
/// left etcd, and so has its API address).
#[derive(Debug, thiserror::Error)]
#[error(
    "no agent known for member {name}: etcd and {} name the agents of {known} only (a member \
     stopped by `pgha stop` has left etcd); run the command with {name}'s own node config \
     (`--config FILE` of its host), whose agent process still serves the API",
    .file.display()
)]
pub struct NoHostFor {
    pub name: String,
    pub file: std::path::PathBuf,
    pub known: String,
}

/// The pid (if it wrote one) of the `pgha up` that holds `cluster`'s directory, if one does:
/// it runs, whether its API answers or not.
fn up_holding(cluster: &LocalCluster) -> Option<Option<u32>> {
    match crate::local::lock::DirLock::try_acquire(&cluster.dir) {
        Ok(Err(crate::local::lock::HeldBy(pid))) => Some(pid),
        // free (released again at once), or not to be taken: nothing says one runs
        Ok(Ok(_)) | Err(_) => None,
    }
}

/// A stopped local cluster as its data directories show it (nothing manages it).
async fn stopped_status(cluster: &LocalCluster) -> ClusterStatus {
    let targets: Vec<_> = cluster
        .members
        .iter()
        .map(|m| crate::gather::on_disk(&m.name, &m.host, m.port, &m.instance))
        .collect();
    let (rw, ro) = cluster.entry_points();
    let proxy = ProxyStatus {
        rw,
        ro,
        listeners: None,
    };
    crate::gather::gather_targets(
        &cluster.config.cluster.name,
        &targets,
        &cluster.credentials(),
        proxy,
    )
    .await
}

/// The embedded store a stopped local cluster persisted.
fn persisted_store(cluster: &LocalCluster) -> anyhow::Result<MemoryStore> {
    let file = cluster.dir.join(STORE_FILE);
    if !file.exists() {
        anyhow::bail!(
            "{} has no settings yet: run `pgha up --dir {}` once",
            cluster.dir.display(),
            cluster.dir.display()
        );
    }
    Ok(MemoryStore::persistent(Arc::new(TokioClock::new()), &file)?)
}
