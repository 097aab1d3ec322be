//! The cluster configuration a member kept beside its data directory (the one it last read from
//! the store), for an agent that starts while the store holds none.

use pgha_core::ClusterConfig;
use pgha_pg::instance::Instance;

/// The configuration member `name` kept beside its data when it is one pgha can run with;
/// `None` (said in the log when there is one it cannot use) otherwise.
pub fn kept_cluster_config(name: &str, instance: &Instance) -> Option<ClusterConfig> {
    match pgha_pg::kept_config::remembered(instance) {
        Ok(Some(json)) => match serde_json::from_str::<ClusterConfig>(&json) {
            Ok(kept) if kept.validate().is_ok() => return Some(kept),
            Ok(_) | Err(_) => tracing::warn!(
                "{name}: the cluster configuration kept beside the data directory is not one \
                 pgha can run with"
            ),
        },
        Ok(None) => {}
        Err(e) => tracing::warn!(
            "{name}: cannot read the cluster configuration kept beside the data directory ({e})"
        ),
    }
    None
}
