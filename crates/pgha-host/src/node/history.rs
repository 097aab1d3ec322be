//! While the agent runs, keeps etcd's history from filling etcd: every few minutes, what is
//! older than `[etcd] history_retention_ms` is compacted away ([`Store::trim_history`]).

use std::sync::Arc;
use std::time::Duration;

use pgha_store::Store;
use tokio::task::JoinHandle;

/// The longest pause between two trims.
const MOST_EVERY: Duration = Duration::from_secs(300);

/// Trims `store`'s history to the last `keep`, at once and then every `keep / 2` (between a
/// second and five minutes), until the task is aborted. Says once that it does, and once
/// when it cannot (until it can again).
pub(crate) fn spawn_trimmer(store: Arc<dyn Store>, keep: Duration) -> JoinHandle<()> {
    let every = (keep / 2).clamp(Duration::from_secs(1), MOST_EVERY);
    tokio::spawn(async move {
        let (mut said, mut failing) = (false, false);
        loop {
            match store.trim_history(keep).await {
                Ok(compacted) => {
                    if std::mem::take(&mut failing) {
                        tracing::info!("etcd's history is compacted again");
                    }
                    if let (Some(revision), false) = (compacted, said) {
                        said = true;
                        tracing::info!(
                            "etcd's history older than {} s compacted (up to revision \
                             {revision}); this agent does so every {} s \
                             (etcd.history_retention_ms, 0: leave it to etcd)",
                            keep.as_secs(),
                            every.as_secs()
                        );
                    }
                }
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(
                        "could not compact etcd's history ({e}); its revisions pile up until \
                         etcd reaches its space quota and refuses every write"
                    );
                }
                Err(_) => {}
            }
            tokio::time::sleep(every).await;
        }
    })
}
