//! What the CLI prints of configuration: the dynamic settings, and what a valid file sets up.

use std::time::Duration;

use pgha_core::{ClusterConfig, CommitLevel, SyncMode};
use pgha_host::sync_wait::SyncProgress;

/// The settings as aligned `key = value` lines.
pub fn render_config(config: &ClusterConfig) -> String {
    pgha_host::config_edit::render(config)
}

/// Where a change of the synchronous settings stands once `pgha config set` stopped waiting.
pub fn render_sync_progress(
    config: &ClusterConfig,
    progress: &SyncProgress,
    took: Duration,
) -> String {
    match progress {
        SyncProgress::InForce { leader, set } => {
            let names: Vec<&str> = set.members.iter().map(|m| m.as_str()).collect();
            let local = matches!(
                config.synchronous_commit,
                CommitLevel::Off | CommitLevel::Local
            );
            let commits = match (config.synchronous_mode, names.is_empty()) {
                (SyncMode::Off, _) => "asynchronous: commits wait for no standby".to_string(),
                (_, false) if local => format!(
                    "synchronous set [{}], but synchronous_commit = {}: commits wait for no \
                     standby",
                    names.join(", "),
                    config.synchronous_commit
                ),
                (_, false) => format!(
                    "commits wait for {} of [{}] (synchronous_commit = {})",
                    set.count,
                    names.join(", "),
                    config.synchronous_commit
                ),
                (SyncMode::On, true) => {
                    "no standby streams: commits do not wait until one does".to_string()
                }
                (SyncMode::Strict, true) => {
                    "no standby streams: commits wait until one does".to_string()
                }
            };
            format!(
                "synchronous settings in force on the leader {leader} after {:.2} s: {commits}",
                took.as_secs_f64()
            )
        }
        SyncProgress::Paused => "synchronous settings not applied yet: the cluster is in \
            maintenance mode; the leader keeps its synchronous standbys as they are and applies \
            the change on `pgha resume`"
            .to_string(),
        SyncProgress::NoLeader => format!(
            "synchronous settings not in force yet: no member leads after {:.0} s; the next leader \
             starts with them",
            took.as_secs_f64()
        ),
        SyncProgress::Pending { leader } => {
            format!("synchronous settings not yet in force on the leader {leader}")
        }
        SyncProgress::Unreported { leader } => format!(
            "synchronous settings stored; the leader {leader} runs an older pgha agent, which \
             applies them in its next loop without saying when (not waited for)"
        ),
    }
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
