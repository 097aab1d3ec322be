//! One handle on a cluster for the CLI: a local one (through `pgha up`'s control API, or its
//! persisted store while it is stopped) or a distributed one (etcd, directly). Every command
//! is one call on the handle; the mode is decided here once, never in the commands.

use std::path::PathBuf;

use pgha_core::{ClusterConfig, RequestKind};
use pgha_store::HistoryEntry;

use crate::cluster::LocalCluster;
use crate::status::ClusterStatus;
use crate::{api, client, control, remote};

/// A cluster the CLI acts on.
pub enum ClusterHandle {
    Local(Box<LocalCluster>),
    Distributed(PathBuf),
}

/// What a configuration change did.
pub struct ConfigChanged {
    pub config: ClusterConfig,
    /// The cluster is stopped: the change takes effect at its next start.
    pub deferred: bool,
}

impl ClusterHandle {
    /// The members, their roles and positions, the synchronous state.
    pub async fn status(&self) -> anyhow::Result<ClusterStatus> {
        match self {
            ClusterHandle::Local(cluster) => {
                match client::get::<ClusterStatus>(cluster, "/cluster") {
                    Ok(status) => Ok(status),
                    Err(client::ApiError::NotRunning) => Ok(crate::status::gather(cluster).await),
                    Err(e) => Err(client::explain(cluster, e)),
                }
            }
            ClusterHandle::Distributed(file) => remote::status(file).await,
        }
    }

    /// The dynamic settings in force.
    pub async fn config(&self) -> anyhow::Result<ClusterConfig> {
        match self {
            ClusterHandle::Local(cluster) => control::config(cluster).await,
            ClusterHandle::Distributed(file) => remote::config(file).await,
        }
    }

    /// Applies KEY=VALUE assignments, all or none.
    pub async fn set_config(&self, assignments: &[String]) -> anyhow::Result<ConfigChanged> {
        match self {
            ClusterHandle::Local(cluster) => control::set_config(cluster, assignments).await,
            ClusterHandle::Distributed(file) => Ok(ConfigChanged {
                config: remote::set(file, assignments).await?,
                deferred: false,
            }),
        }
    }

    /// Requests a switchover (`to` optional) or a failover, and waits until the target runs
    /// as the primary.
    pub async fn promote(&self, to: Option<String>, kind: RequestKind) -> anyhow::Result<()> {
        match self {
            ClusterHandle::Local(cluster) => {
                let (path, force, allow_data_loss) = match kind {
                    RequestKind::Switchover => ("/switchover", false, false),
                    RequestKind::Failover {
                        force,
                        allow_data_loss,
                    } => ("/failover", force, allow_data_loss),
                };
                let body = api::PromoteRequest {
                    to,
                    force,
                    allow_data_loss,
                    ..Default::default()
                };
                control::promote(cluster, path, &body)
            }
            ClusterHandle::Distributed(file) => remote::promote(file, to, kind).await,
        }
    }

    /// Maintenance mode on or off.
    pub async fn pause(&self, paused: bool) -> anyhow::Result<()> {
        match self {
            ClusterHandle::Local(cluster) => {
                control::say(cluster, if paused { "/pause" } else { "/resume" }, &())
            }
            ClusterHandle::Distributed(file) => {
                remote::set(file, &[format!("paused={paused}")]).await?;
                println!("{}", if paused { "paused" } else { "resumed" });
                Ok(())
            }
        }
    }

    /// Failovers, switchovers and rejoins, oldest first.
    pub async fn history(&self) -> anyhow::Result<Vec<HistoryEntry>> {
        match self {
            ClusterHandle::Local(cluster) => control::history(cluster).await,
            ClusterHandle::Distributed(file) => remote::history(file).await,
        }
    }
}
