//! Operations on a cluster's store shared by local mode (`pgha up`'s API) and distributed
//! mode (the CLI talking to etcd): read the view, request a switchover or failover, change
//! the dynamic settings.

use anyhow::{anyhow, bail};
use pgha_core::{ClusterConfig, ClusterView, RequestKind, SwitchoverRequest};
use pgha_store::{Guard, Key, Store, StoreError};

/// The cluster as the store sees it now.
pub async fn view(store: &dyn Store) -> anyhow::Result<ClusterView> {
    Ok(pgha_store::cluster_view(&store.snapshot().await?)?)
}

/// Validates a switchover/failover request against the current view and writes it; returns
/// the member that will be promoted. Refusals start with "refused:" and say why.
pub async fn request(store: &dyn Store, mut request: SwitchoverRequest) -> anyhow::Result<String> {
    let view = view(store).await?;
    if request.from.is_none() {
        // Name the leader the request is about: the target waits for its final position.
        request.from = view.leader.as_ref().map(|l| l.holder.clone());
    }
    let leader_lsn = view
        .leader
        .as_ref()
        .and_then(|l| view.members.get(&l.holder))
        .map(|r| r.lsn)
        .unwrap_or_default();
    let target = pgha_core::switchover::check(&view, leader_lsn, &request)
        .map_err(|why| anyhow!("refused: {why}"))?;
    if view.leader.is_none() && request.kind == RequestKind::Switchover {
        bail!("refused: a switchover needs a running leader; use `pgha failover --to {target}`");
    }
    let json = serde_json::to_string(&request)?;
    store
        .put(Key::Switchover, &json, Guard::Absent)
        .await
        .map_err(|e| match e {
            StoreError::Conflict { .. } => {
                anyhow!("refused: another switchover or failover is pending")
            }
            other => other.into(),
        })?;
    Ok(target.to_string())
}

/// Changes the dynamic config with compare-and-set, retrying if it moved meanwhile.
pub async fn update_config(
    store: &dyn Store,
    change: impl Fn(&mut ClusterConfig) -> Result<(), String>,
) -> anyhow::Result<ClusterConfig> {
    for _ in 0..5 {
        let snapshot = store.snapshot().await?;
        let current = snapshot
            .get(Key::Config)
            .ok_or_else(|| anyhow!("no config in the store"))?;
        let mut config: ClusterConfig = serde_json::from_str(&current.value)?;
        change(&mut config).map_err(|e| anyhow!("refused: {e}"))?;
        let json = serde_json::to_string(&config)?;
        match store
            .put(Key::Config, &json, Guard::Revision(current.revision))
            .await
        {
            Ok(_) => return Ok(config),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    bail!("the config kept changing under us; try again")
}

/// Writes `initial` as the dynamic config unless the store has one.
pub async fn ensure_config(store: &dyn Store, initial: &ClusterConfig) -> anyhow::Result<()> {
    if store.snapshot().await?.get(Key::Config).is_none() {
        let json = serde_json::to_string(initial)?;
        match store.put(Key::Config, &json, Guard::Absent).await {
            Ok(_) | Err(StoreError::Conflict { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Applies KEY=VALUE assignments to the dynamic config, all or none.
pub async fn set_assignments(
    store: &dyn Store,
    assignments: &[String],
) -> anyhow::Result<ClusterConfig> {
    update_config(store, |c| {
        let pairs = assignments
            .iter()
            .map(|a| crate::dynamic::split_assignment(a))
            .collect::<Result<Vec<_>, _>>()?;
        *c = crate::dynamic::set_keys(c, pairs)?;
        Ok(())
    })
    .await
}
