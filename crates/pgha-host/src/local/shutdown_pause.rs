//! The pause `pgha up`'s shutdown sets, undone at the next start if a kill cut the shutdown short.

use std::path::Path;

use pgha_store::Store;

use crate::host::Host;
use crate::ops::{self, OpError};

/// In the cluster directory while the shutdown holds the cluster paused for it.
pub const MARKER: &str = "paused-for-shutdown";

/// Before the shutdown pauses the cluster: notes that the pause is the shutdown's own, unless
/// the cluster is paused already (the operator's, kept as it is).
pub async fn mark(dir: &Path, store: &dyn Store) -> Result<(), OpError> {
    if !ops::view(store).await?.config.paused {
        if let Err(e) = std::fs::write(dir.join(MARKER), "") {
            tracing::warn!("cannot note the shutdown's pause in {}: {e}", dir.display());
        }
    }
    Ok(())
}

/// Once the shutdown has put the pause setting back.
pub fn unmark(dir: &Path) {
    let _ = std::fs::remove_file(dir.join(MARKER));
}

/// `host`'s [`Host::stop_cluster`], its pause marked in `dir` until the setting is seen put
/// back (a write of it that failed leaves the mark for the next start).
pub async fn stop_cluster_marked(dir: &Path, host: &Host) {
    if let Err(e) = mark(dir, host.store.as_ref()).await {
        tracing::warn!("cannot read the pause setting before the shutdown: {e}");
    }
    host.stop_cluster().await;
    if ops::view(host.store.as_ref())
        .await
        .is_ok_and(|v| !v.config.paused)
    {
        unmark(dir);
    }
}

/// At a start: a pause the last shutdown set and could not undo (`pgha up` killed while it
/// stopped the members) is undone, and said; members would otherwise never start PostgreSQL.
pub async fn resume_if_marked(dir: &Path, store: &dyn Store) -> Result<(), OpError> {
    let marker = dir.join(MARKER);
    if !marker.exists() {
        return Ok(());
    }
    if ops::view(store).await?.config.paused {
        ops::set_paused(store, false).await?;
        tracing::warn!(
            "the last shutdown of this cluster was cut short while it held the cluster paused: \
             resumed (`pgha pause` pauses it again)"
        );
    }
    unmark(dir);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgha_core::ClusterConfig;
    use pgha_store::{MemoryStore, TokioClock};
    use std::sync::Arc;

    async fn store_paused(paused: bool) -> MemoryStore {
        let store = MemoryStore::new(Arc::new(TokioClock::new()));
        let config = ClusterConfig {
            paused,
            ..ClusterConfig::default()
        };
        ops::ensure_config(&store, &config).await.unwrap();
        store
    }

    async fn paused(store: &MemoryStore) -> bool {
        ops::view(store).await.unwrap().config.paused
    }

    /// Found by review (2026-12-07): `pgha up` killed while its shutdown stopped the members
    /// left the cluster paused in its store, and every later `pgha up` started no PostgreSQL
    /// (none starts in maintenance mode), waiting out its 600 s with nothing said.
    #[tokio::test]
    async fn a_pause_the_shutdown_set_and_left_is_undone_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_paused(false).await;
        mark(dir.path(), &store).await.unwrap();
        ops::set_paused(&store, true).await.unwrap();
        // killed here; the next start
        resume_if_marked(dir.path(), &store).await.unwrap();
        assert!(!paused(&store).await);
        assert!(!dir.path().join(MARKER).exists());
    }

    /// The operator's pause is theirs: a shutdown of a paused cluster marks nothing, and the
    /// next start keeps it.
    #[tokio::test]
    async fn the_operators_pause_stays() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_paused(true).await;
        mark(dir.path(), &store).await.unwrap();
        assert!(!dir.path().join(MARKER).exists());
        resume_if_marked(dir.path(), &store).await.unwrap();
        assert!(paused(&store).await);
    }
}
