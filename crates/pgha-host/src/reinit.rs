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
    #[error(
        "the cluster is paused (maintenance mode): {0} would be left without data, its clone \
         waiting for `pgha resume`; resume first"
    )]
    Paused(String),
    #[error(
        "{0}'s PostgreSQL still runs after its agent stopped, or its postmaster.pid cannot be \
         looked at (its stop failed: see its log); its data stays in place and its agent runs \
         again if it ran. Try again once it stops (its supervisor fences it at its deadline if it was a \
         primary)"
    )]
    StillRunning(String),
    #[error(
        "the leader changed while {name}'s agent stopped ({before} before, {after} now): its \
         data stays in place (it may hold writes the new leader lacks) and its agent runs \
         again if it ran. Look at `pgha status` and the history, then try again"
    )]
    LeaderChanged {
        name: String,
        before: String,
        after: String,
    },
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
        if view.config.paused {
            return Err(refused(ReinitRefused::Paused(name.to_string())));
        }
        let leader = match &view.leader {
            Some(leader) if leader.holder.as_str() == name => {
                return Err(refused(ReinitRefused::Leader(name.to_string())))
            }
            None => return Err(refused(ReinitRefused::NoLeader(name.to_string()))),
            Some(leader) => leader.clone(),
        };
        // the start after the move must not be refused: checked before anything is stopped
        self.config_to_start_with(&spec).await?;
        let was_running = self
            .stop_member(name, Shutdown::Leave(StopMode::Fast))
            .await?;
        let instance = &spec.instance;
        // Nothing moves while its PostgreSQL runs, nor after a change of leader meanwhile (it
        // may have won and taken writes): its agent runs again instead.
        let now = ops::view(self.store.as_ref()).await.map(|v| v.leader);
        let changed = match &now {
            Ok(Some(l)) if *l == leader => None,
            Ok(other) => Some(
                other
                    .as_ref()
                    .map_or("none".into(), |l| l.holder.to_string()),
            ),
            Err(e) => Some(format!("unknown ({e})")),
        };
        let why = if instance.is_running() {
            Some(ReinitRefused::StillRunning(name.to_string()))
        } else {
            changed.map(|after| ReinitRefused::LeaderChanged {
                name: name.to_string(),
                before: leader.holder.to_string(),
                after,
            })
        };
        if let Some(why) = why {
            if was_running {
                if let Err(e) = self.start_member(name).await {
                    tracing::error!("{name}: its agent does not run again: {e}");
                }
            }
            return Err(refused(why));
        }
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
