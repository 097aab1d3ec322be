//! Unit tests of the node config file: loading, defaults and the errors that name the key.

use super::*;

const GOOD: &str = concat!(
    include_str!("../../tests/fixtures/minimal_node.toml"),
    "[dynamic]\nttl_ms = 3000\nsafety_margin_ms = 1000\nloop_wait_ms = 500\n",
);

fn load(text: &str) -> Result<NodeConfig, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("node.toml");
    std::fs::write(&file, text).unwrap();
    NodeConfig::load(&file)
}

/// Why `text` is refused; panics if it loads.
fn refusal(text: &str) -> String {
    match load(text) {
        Ok(_) => panic!("loaded, though it should be refused:\n{text}"),
        Err(e) => e.to_string(),
    }
}

/// The node config the README shows is one pgha loads as it stands.
#[test]
fn the_readme_example_loads() {
    let readme = include_str!("../../../../README.md");
    let section = readme
        .split("## Distributed mode")
        .nth(1)
        .expect("README has a Distributed mode section");
    let example = section
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a toml block in the Distributed mode section");
    let config = load(example).unwrap_or_else(|e| panic!("README example: {e}"));
    assert_eq!(config.member.name, "node1");
    assert_eq!(config.initial_dynamic().unwrap().ttl_ms, 10_000);
}

#[test]
fn loads_and_names_bad_keys() {
    let c = load(GOOD).unwrap();
    assert_eq!(c.initial_dynamic().unwrap().ttl_ms, 3000);
    assert_eq!(c.replication_hosts(), ["127.0.0.1"]);
    let err = refusal(&GOOD.replace("port = 5432", "port = \"x\""));
    assert!(err.contains("node.toml") && err.contains("port"), "{err}");
    let err = refusal(&GOOD.replace("ttl_ms = 3000", "ttl_ms = 10"));
    assert!(err.contains("ttl_ms"), "{err}");
    let err = refusal(&GOOD.replace("name = \"node1\"", "name = \"Node 1\""));
    assert!(err.contains("member.name"), "{err}");
    // Issue 11: replication_from reaches pg_hba.conf only as addresses.
    let with_from = |from: &str| {
        load(&format!("replication_from = [{from:?}]\n{GOOD}")).map_err(|e| e.to_string())
    };
    assert!(with_from("10.0.0.0/24").is_ok());
    let err = with_from("0.0.0.0/0 trust\nhost all all 0.0.0.0/0").unwrap_err();
    assert!(err.contains("replication_from[0]"), "{err}");
    assert!(with_from("all").is_err());
    // TLS is required unless refused in so many words, and not both.
    let err = refusal(&GOOD.replace("insecure_no_tls = true\n", ""));
    assert!(
        err.contains("`tls`") && err.contains("insecure_no_tls"),
        "{err}"
    );
    // A terminating proxy needs the cluster CA to verify the members.
    let proxy_tls = "\n[proxy.tls]\ncert_file = \"/p.crt\"\nkey_file = \"/p.key\"\n";
    let err = refusal(&format!("{GOOD}{proxy_tls}"));
    assert!(err.contains("proxy.tls") && err.contains("[tls]"), "{err}");
    let with_tls =
        "\n[tls]\nca_file = \"/ca.crt\"\ncert_file = \"/n.crt\"\nkey_file = \"/n.key\"\n";
    let secure = GOOD.replace("insecure_no_tls = true\n", "");
    assert!(load(&format!("{secure}{with_tls}{proxy_tls}")).is_ok());
    let err = refusal(&format!("{GOOD}{with_tls}"));
    assert!(err.contains("insecure_no_tls"), "{err}");
}

/// Only `ttl_ms = 3000` in `[dynamic]`: the agent used to refuse to start (the default safety
/// margin, 2500, left no room for the default loop interval); the other two follow from it.
#[test]
fn a_short_ttl_alone_is_enough() {
    let only_ttl = GOOD
        .replace("safety_margin_ms = 1000\n", "")
        .replace("loop_wait_ms = 500\n", "");
    let c = load(&only_ttl).unwrap_or_else(|e| panic!("{e}"));
    let d = c.initial_dynamic().unwrap();
    assert_eq!(
        (d.ttl_ms, d.safety_margin_ms, d.loop_wait_ms),
        (3000, 750, 1000)
    );
    d.validate().unwrap();
    // Given values that cannot fit are refused, saying which would.
    let err = refusal(&GOOD.replace("safety_margin_ms = 1000", "safety_margin_ms = 2900"));
    assert!(
        err.contains("node.toml") && err.contains("loop_wait_ms from 1 to 50"),
        "{err}"
    );
}

/// The node config's tags are keys of `[member]`, which refuses a misspelt one by name.
#[test]
fn a_misspelt_member_tag_is_refused() {
    let text = GOOD.replace(
        "api = \"127.0.0.1:8008\"",
        "api = \"127.0.0.1:8008\"\nnofailver = true",
    );
    let err = refusal(&text);
    assert!(
        err.contains("unknown field `nofailver`") && err.contains("nofailover"),
        "{err}"
    );
}

/// Found by the distributed tags test: an unset `priority` was 0 in a node config and 1 in a
/// local cluster (and in the docs), so `pgha status` showed "priority 0" for every member.
#[test]
fn an_unset_priority_is_the_default_tag() {
    let config = load(GOOD).unwrap();
    assert_eq!(config.member.priority, pgha_core::Tags::default().priority);
    let set = load(&GOOD.replace("port = 5432", "port = 5432\npriority = 3")).unwrap();
    assert_eq!(set.member.priority, 3);
}

/// etcd's history is compacted after an hour unless `[etcd] history_retention_ms` says
/// otherwise (0: left to etcd); a retention under a second is refused, naming the key.
#[test]
fn the_etcd_history_retention_defaults_to_an_hour_and_zero_leaves_it_to_etcd() {
    let c = load(GOOD).unwrap();
    assert_eq!(
        c.etcd_history_retention(),
        Some(std::time::Duration::from_secs(3600))
    );
    let with = |ms: &str| {
        GOOD.replacen(
            "[etcd]\n",
            &format!("[etcd]\nhistory_retention_ms = {ms}\n"),
            1,
        )
    };
    assert_eq!(load(&with("0")).unwrap().etcd_history_retention(), None);
    assert_eq!(
        load(&with("60000")).unwrap().etcd_history_retention(),
        Some(std::time::Duration::from_secs(60))
    );
    let err = refusal(&with("500"));
    assert!(
        err.contains("etcd.history_retention_ms") && err.contains("0: leave compaction to etcd"),
        "{err}"
    );
}
