//! Which cluster a command acts on: `--dir` (a local cluster) or `--config` (a distributed one).

use std::path::PathBuf;

use pgha_host::{ClusterAt, ClusterHandle};

/// Which cluster a command acts on: a local one (`pgha up`'s directory) or a distributed one
/// (this host's agent config file, which names etcd and the secrets).
#[derive(Debug, Clone, clap::Args)]
#[group(required = true, multiple = false)]
pub struct Where {
    /// Local cluster directory (created by `pgha up`).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Distributed mode: the agent config file (etcd endpoints, member, secrets).
    #[arg(long)]
    config: Option<PathBuf>,
}

impl Where {
    /// The cluster the command acts on.
    pub fn at(&self) -> anyhow::Result<ClusterAt> {
        match (&self.dir, &self.config) {
            (Some(dir), _) => Ok(ClusterAt::Dir(dir.clone())),
            (None, Some(file)) => Ok(ClusterAt::Config(file.clone())),
            (None, None) => {
                anyhow::bail!("give --dir DIR (local cluster) or --config FILE (distributed)")
            }
        }
    }

    pub async fn open(&self) -> anyhow::Result<ClusterHandle> {
        self.at()?.open().await
    }
}
