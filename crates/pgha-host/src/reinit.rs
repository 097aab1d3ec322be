//! `pgha reinit MEMBER`: re-clone a broken standby from the leader. Its agent stops (and its
//! PostgreSQL with it), its data directory moves aside (kept, never deleted), and its agent
//! starts again and clones.

use std::path::PathBuf;

use pgha_agent::agent::Shutdown;
use pgha_pg::StopMode;

use crate::host::{Host, HostError};
use crate::ops::{self, OpError, Refusal};

/// Why a member is not re-cloned.
#[derive(Debug, thiserror::Error)]
pub enum ReinitRefused {
    #[error("{0} is the leader: switch over to another member first (`pgha switchover`)")]
    Leader(String),
    #[error("the cluster has no leader to clone {0} from")]
    NoLeader(String),
    #[error(transparent)]
    Aside(#[from] pgha_agent::jobs::JobError),
    #[error("could not move {from} aside to {to}: {source}")]
    Move {
        from: PathBuf,
        to: PathBuf,
        source: std::io::Error,
    },
}

impl Host {
    /// Re-clones member `name` from the leader; answers where its old data directory went
    /// (`None` when it had none).
    pub async fn reinit_member(&self, name: &str) -> Result<Option<PathBuf>, HostError> {
        let spec = self.spec(name)?.clone();
        let refused = |r: ReinitRefused| HostError::Op(OpError::Refused(Refusal::Reinit(r)));
        let view = ops::view(self.store.as_ref()).await?;
        match view.leader.as_ref().map(|l| l.holder.as_str()) {
            Some(leader) if leader == name => {
                return Err(refused(ReinitRefused::Leader(name.to_string())))
            }
            None => return Err(refused(ReinitRefused::NoLeader(name.to_string()))),
            Some(_) => {}
        }
        self.stop_member(name, Shutdown::Leave(StopMode::Fast))
            .await?;
        let instance = &spec.instance;
        let data = instance.data_dir();
        let moved = if data.exists() {
            let aside = pgha_agent::jobs::aside_path(&instance.member_dir)
                .map_err(|e| refused(ReinitRefused::Aside(e)))?;
            // A rename within the member directory: it follows no link in the last component.
            std::fs::rename(&data, &aside).map_err(|source| {
                refused(ReinitRefused::Move {
                    from: data.clone(),
                    to: aside.clone(),
                    source,
                })
            })?;
            tracing::warn!(
                "{name}: data directory moved aside to {} for a re-clone (kept, not deleted)",
                aside.display()
            );
            Some(aside)
        } else {
            None
        };
        self.start_member(name).await?;
        Ok(moved)
    }
}
