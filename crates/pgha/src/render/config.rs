//! What the CLI prints of configuration: the dynamic settings, and what a valid file sets up.

use pgha_core::ClusterConfig;

/// The settings as aligned `key = value` lines.
pub fn render_config(config: &ClusterConfig) -> String {
    pgha_host::config_edit::render(config)
}

/// What `pgha config validate` says a valid node config sets up.
pub fn node_config_summary(c: &pgha_host::node::config::NodeConfig) -> String {
    let m = &c.member;
    let mut lines = vec![
        format!("  distributed node config of cluster {}", c.cluster.name),
        format!(
            "  member {}: PostgreSQL on {}:{}, data in {}, REST API on {}",
            m.name,
            m.host,
            m.port,
            m.dir.join("data").display(),
            m.api
        ),
        format!(
            "  etcd: {} ({} ms per call)",
            c.etcd.endpoints.join(", "),
            c.etcd.timeout_ms
        ),
        format!(
            "  secrets: {} (read when the agent starts)",
            c.secrets.file.display()
        ),
        match &c.tls {
            Some(t) => format!(
                "  TLS: CA {}, certificate {}{}",
                t.ca_file.display(),
                t.cert_file.display(),
                if t.api { ", REST API over HTTPS" } else { "" }
            ),
            None => "  TLS: off (insecure_no_tls = true)".to_string(),
        },
        format!("  replication from: {}", c.replication_hosts().join(", ")),
    ];
    let listeners: Vec<String> = [
        ("read-write", &c.proxy.rw_listen),
        ("read-only", &c.proxy.ro_listen),
        ("metrics", &c.proxy.metrics_listen),
    ]
    .into_iter()
    .filter_map(|(what, addr)| addr.as_ref().map(|a| format!("{what} {a}")))
    .collect();
    if !listeners.is_empty() {
        lines.push(format!("  proxy: {}", listeners.join(", ")));
    }
    if let Ok(d) = c.initial_dynamic() {
        lines.push(format!(
            "  initial dynamic settings: ttl_ms = {}, safety_margin_ms = {}, loop_wait_ms = {}",
            d.ttl_ms, d.safety_margin_ms, d.loop_wait_ms
        ));
    }
    lines.join("\n") + "\n"
}

/// What `pgha config validate` says a valid `pgha.toml` sets up.
pub fn local_config_summary(c: &pgha_host::local::config::Config) -> String {
    let cl = &c.cluster;
    let mut lines = vec![
        format!(
            "  local cluster {}: {} members (n1 to n{}) on {}",
            cl.name, cl.members, cl.members, cl.host
        ),
        format!(
            "  ports: read-write {}, read-only {}, control API {} on {}, members {} to {}",
            cl.base_port,
            cl.base_port + 1,
            cl.base_port + 2,
            cl.api_host(),
            c.member_port(1),
            c.member_port(cl.members)
        ),
        format!("  entry points' TLS: {:?}", cl.proxy_tls).to_lowercase(),
    ];
    let params = c.parameters();
    if !params.is_empty() {
        let list: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        lines.push(format!("  PostgreSQL parameters: {}", list.join(", ")));
    }
    lines.join("\n") + "\n"
}
