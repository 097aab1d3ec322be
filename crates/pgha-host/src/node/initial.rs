//! The cluster configuration an agent puts in a store that has none: the one this member last
//! read from the cluster's store (kept beside its data), before its node file's `[dynamic]`,
//! which is for a cluster's first start.

use pgha_core::ClusterConfig;
use pgha_pg::instance::Instance;

use super::NodeConfig;

/// What `pgha agent` writes as the configuration when the store has none (guarded by the key's
/// absence): the configuration kept beside the data directory when there is a valid one (etcd
/// lost its data: the cluster's, not a node file's, which may be out of date or the defaults),
/// else `[dynamic]` over the defaults.
pub fn initial_config(
    node: &NodeConfig,
    instance: &Instance,
) -> Result<ClusterConfig, crate::dynamic::SettingError> {
    let instead = "the node file's [dynamic] goes in its place if the store has none";
    match crate::kept_config::kept_cluster_config(&node.member.name, instance, instead) {
        Some(kept) => Ok(kept),
        None => node.initial_dynamic(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgha_core::SyncMode;

    /// Found by review: an agent starting while etcd had lost its data wrote its node file's
    /// `[dynamic]` (here asynchronous, ttl 3 s) into the store before the running agents put
    /// back the configuration they last read, and on a cold start always: the cluster went
    /// asynchronous with nobody told. The configuration the member last read wins.
    #[test]
    fn the_configuration_last_read_goes_before_the_node_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("node.toml");
        let text = concat!(
            include_str!("../../tests/fixtures/minimal_node.toml"),
            "[dynamic]\nttl_ms = 3000\nsafety_margin_ms = 1000\nloop_wait_ms = 500\n",
        );
        std::fs::write(&file, text).unwrap();
        let node = NodeConfig::load(&file).unwrap();
        let bins = pgha_pg::PgBinaries::discover(None).expect("PostgreSQL's programs");
        let run_as = pgha_pg::RunAs::detect("postgres").expect("the postgres OS user");
        let inst = Instance::new("node1", &dir.path().join("node1"), bins, run_as);
        inst.create_member_dir().unwrap();
        let from_file = node.initial_dynamic().unwrap();
        assert_eq!(
            initial_config(&node, &inst).unwrap(),
            from_file,
            "nothing kept"
        );
        let ran = ClusterConfig {
            synchronous_mode: SyncMode::Strict,
            ttl_ms: 6_000,
            ..from_file.clone()
        };
        let json = serde_json::to_string(&ran).unwrap();
        pgha_pg::kept_config::remember(&inst, &json).unwrap();
        assert_eq!(initial_config(&node, &inst).unwrap(), ran);
        let invalid = ClusterConfig {
            safety_margin_ms: 6_000,
            ..ran
        };
        let json = serde_json::to_string(&invalid).unwrap();
        pgha_pg::kept_config::remember(&inst, &json).unwrap();
        assert_eq!(
            initial_config(&node, &inst).unwrap(),
            from_file,
            "an invalid one kept"
        );
    }
}
