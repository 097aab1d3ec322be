//! The cluster configuration a member kept beside its data, for a start with none in the store.

use pgha_core::ClusterConfig;
use pgha_pg::instance::Instance;

/// The configuration member `name` kept beside its data when it is one pgha can run with;
/// `None` otherwise, and said in the log when there is one it cannot use, with `instead`: what
/// the caller does then.
pub fn kept_cluster_config(
    name: &str,
    instance: &Instance,
    instead: &str,
) -> Option<ClusterConfig> {
    match pgha_pg::kept_config::remembered(instance) {
        Ok(Some(json)) => match serde_json::from_str::<ClusterConfig>(&json) {
            Ok(kept) if kept.validate().is_ok() => return Some(kept),
            Ok(_) | Err(_) => tracing::warn!(
                "{name}: the cluster configuration kept beside the data directory is not one \
                 pgha can run with; {instead}"
            ),
        },
        Ok(None) => {}
        Err(e) => tracing::warn!(
            "{name}: cannot read the cluster configuration kept beside the data directory ({e}); \
             {instead}"
        ),
    }
    None
}
