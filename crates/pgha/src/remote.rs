//! CLI commands in distributed mode (`--config FILE`): they read and write etcd directly,
//! the same operations local mode runs through `pgha up`'s API.

use std::path::Path;
use std::time::{Duration, Instant};

use pgha_core::{MemberName, RequestKind, SwitchoverRequest};

use crate::agent_cmd::Node;
use crate::status::{gather_targets, sync_status, ClusterStatus, ProxyStatus, Role, Target};

const CLI_ETCD_PATIENCE: Option<Duration> = Some(Duration::from_secs(5));

/// The cluster as etcd and the members' PostgreSQL report it.
pub async fn status(file: &Path) -> anyhow::Result<ClusterStatus> {
    let node = Node::load(file)?;
    let store = node.connect_store(CLI_ETCD_PATIENCE).await?;
    let view = crate::ops::view(store.as_ref()).await?;
    let targets: Vec<Target> = view
        .members
        .iter()
        .filter_map(|(name, record)| {
            let addr = pgha_agent::spec::postgres_address(record)?;
            Some(Target {
                name: name.to_string(),
                host: addr.host,
                port: addr.port,
                running: Some(record.running),
                stopped_role: Some(if record.in_recovery {
                    Role::Standby
                } else {
                    Role::Primary
                }),
            })
        })
        .collect();
    let p = &node.config.proxy;
    let proxy = ProxyStatus {
        rw: p.rw_listen.clone().unwrap_or_default(),
        ro: p.ro_listen.clone().unwrap_or_default(),
        listeners: None,
    };
    let mut status = gather_targets(
        &node.config.cluster.name,
        &targets,
        &node.credentials(),
        proxy,
    )
    .await;
    status.managed = true;
    status.leader = view.leader.as_ref().map(|l| l.holder.to_string());
    status.paused = view.config.paused;
    status.synchronous = Some(sync_status(&view, &status.members));
    Ok(status)
}

/// Requests a switchover or failover in etcd and waits until the target is a writable leader.
pub async fn promote(file: &Path, to: Option<String>, kind: RequestKind) -> anyhow::Result<()> {
    let node = Node::load(file)?;
    let store = node.connect_store(CLI_ETCD_PATIENCE).await?;
    let started = Instant::now();
    let request = SwitchoverRequest {
        from: None,
        to: to.map(MemberName::new),
        kind,
    };
    let target = crate::ops::request(store.as_ref(), request).await?;
    println!(
        "{} to {target} requested",
        if kind == RequestKind::Switchover {
            "switchover"
        } else {
            "failover"
        }
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let view = crate::ops::view(store.as_ref()).await?;
        let leads = view
            .leader
            .as_ref()
            .is_some_and(|l| l.holder.as_str() == target);
        let writable = view
            .members
            .get(&MemberName::new(target.as_str()))
            .is_some_and(|r| r.running && !r.in_recovery);
        if leads && writable {
            println!(
                "{target} is the primary (took {:.1} s)",
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("{target} is not the primary after 120 s; see `pgha status` and `pgha history`")
}

pub async fn set(file: &Path, assignments: &[String]) -> anyhow::Result<pgha_core::ClusterConfig> {
    let node = Node::load(file)?;
    let store = node.connect_store(CLI_ETCD_PATIENCE).await?;
    Ok(crate::ops::set_assignments(store.as_ref(), assignments).await?)
}

pub async fn config(file: &Path) -> anyhow::Result<pgha_core::ClusterConfig> {
    let node = Node::load(file)?;
    let store = node.connect_store(CLI_ETCD_PATIENCE).await?;
    Ok(crate::ops::view(store.as_ref()).await?.config)
}

pub async fn history(file: &Path) -> anyhow::Result<Vec<pgha_store::HistoryEntry>> {
    let node = Node::load(file)?;
    let store = node.connect_store(CLI_ETCD_PATIENCE).await?;
    use pgha_store::Store;
    Ok(pgha_store::history_entries(&store.snapshot().await?))
}

/// `pgha proxy --config FILE`: the proxy alone, following the leader in etcd.
pub async fn proxy(file: &Path) -> anyhow::Result<()> {
    let node = Node::load(file)?;
    let p = &node.config.proxy;
    if p.rw_listen.is_none() && p.ro_listen.is_none() {
        anyhow::bail!(
            "{}: set proxy.rw_listen and/or proxy.ro_listen",
            file.display()
        );
    }
    let store = node.connect_store(None).await?;
    let config = pgha_proxy::ProxyConfig {
        rw_listen: p.rw_listen.clone(),
        ro_listen: p.ro_listen.clone(),
        ..pgha_proxy::ProxyConfig::default()
    };
    let shutdown = pgha_proxy::CancellationToken::new();
    let dyn_store: std::sync::Arc<dyn pgha_store::Store> = store;
    crate::entry::start_with(dyn_store, config, &node.credentials(), shutdown.clone()).await?;
    tracing::info!(
        "proxy running: read-write {:?}, read-only {:?}",
        p.rw_listen,
        p.ro_listen
    );
    crate::stop_signals::StopSignals::install()?.recv().await;
    shutdown.cancel();
    Ok(())
}
