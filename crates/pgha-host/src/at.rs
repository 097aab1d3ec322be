//! Where a command finds its cluster: a local one (`pgha up`'s directory) or a distributed
//! one (this host's agent config file, which names etcd and the secrets).

use std::path::PathBuf;

use crate::{ClusterHandle, LocalCluster};

/// The cluster a command acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterAt {
    /// A local cluster's directory (created by `pgha up`).
    Dir(PathBuf),
    /// Distributed mode: this host's agent config file.
    Config(PathBuf),
}

impl ClusterAt {
    /// A handle on the cluster: a local one opened from its directory (it need not run), a
    /// distributed one through this host's agent and the agents etcd lists.
    pub async fn open(&self) -> anyhow::Result<ClusterHandle> {
        match self {
            ClusterAt::Dir(dir) => Ok(ClusterHandle::local(LocalCluster::open(dir)?)),
            ClusterAt::Config(file) => ClusterHandle::distributed(file).await,
        }
    }
}
