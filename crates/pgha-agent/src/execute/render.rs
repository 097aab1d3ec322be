//! The configuration a member's PostgreSQL runs with: rendered from the role its data
//! directory has now, the dynamic settings and its upstream, written and reloaded.

use std::collections::BTreeMap;

use pgha_core::MemberName;

use crate::action_error::ActionError;
use crate::agent::Agent;
use crate::spec::{postgres_address, Dynamic};

impl Agent {
    /// The dynamic settings every configuration write renders.
    pub(crate) fn dynamic(&self) -> Dynamic {
        Dynamic {
            sync_names: self.sync_applied.to_string(),
            synchronous_commit: self.commit_level.map(|c| c.to_string()).unwrap_or_default(),
            parameters: self.parameters.clone().unwrap_or_default(),
            replication_timeout: self.replication_timeout,
        }
    }

    /// Rewrites pgha.conf for the role the data directory has now and reloads PostgreSQL.
    /// A standby whose upstream is not known yet is left alone (its conninfo must not be lost).
    /// `sync_change`: the rewrite carries a new `synchronous_standby_names` the core relies on,
    /// so it is never skipped silently (a leader about to promote renders without upstream).
    pub(crate) async fn rewrite_config(&self, sync_change: bool) -> Result<(), ActionError> {
        let inst = &self.spec.instance;
        if !inst.is_initialized() || self.jobs.current().is_some() {
            if sync_change {
                return Err(ActionError::SyncNotApplied);
            }
            return Ok(());
        }
        if self.render_config(sync_change).await? && inst.is_running() {
            inst.reload().await?;
        }
        Ok(())
    }

    /// Writes pgha.conf and pg_hba.conf for the role the data directory has now; `false`
    /// when it left them alone (a standby whose upstream is not known yet, unless
    /// `sync_change`). The caller checks that no job runs and reloads.
    pub(crate) async fn render_config(&self, sync_change: bool) -> Result<bool, ActionError> {
        let inst = &self.spec.instance;
        // A role rendered on a guess could take a standby's signal and upstream away: when
        // `standby.signal` cannot be looked at, nothing is written this time.
        let Some(standby) = inst.standby_signal() else {
            tracing::warn!(
                "{}: cannot look at standby.signal: configuration not rewritten",
                self.spec.name
            );
            if sync_change {
                return Err(ActionError::SyncNotApplied);
            }
            return Ok(false);
        };
        let upstream = if standby {
            let peers = self.peers();
            match self.upstream.as_ref().and_then(|u| peers.get(u)) {
                Some(up) => Some(up.clone()),
                None if sync_change => None,
                None => return Ok(false),
            }
        } else {
            None
        };
        let conf = self.spec.conf(standby, upstream, &self.dynamic());
        inst.write_config(&inst.data_dir(), &conf, &self.spec.hba)
            .await?;
        Ok(true)
    }

    pub(crate) fn peers(&self) -> BTreeMap<MemberName, pgha_pg::conf::Upstream> {
        self.view
            .iter()
            .flat_map(|v| v.members.iter())
            .filter_map(|(n, r)| Some((n.clone(), postgres_address(n, r)?)))
            .collect()
    }
}
