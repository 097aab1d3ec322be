//! `pgha agent --config FILE`: a host of one member of a distributed cluster over etcd, serving
//! the API, until SIGINT/SIGTERM; and `pgha proxy --config FILE`, the proxy alone. Under
//! systemd (`Type=notify`) both say when they are ready, what they do, and when they stop; the
//! agent feeds the service watchdog only while its loop makes progress (`systemd`).

use std::path::Path;

use anyhow::{bail, Context};
use pgha_agent::NodeSpec;
use pgha_store::Store;

use super::notify::Notifier;
use super::Node;
use crate::signals::{OnHangup, StopSignals};
use crate::{Host, HostSetup};

mod systemd;

use systemd::serve_systemd;

/// Runs the agent until SIGINT/SIGTERM.
pub async fn agent(file: &Path) -> anyhow::Result<()> {
    let notify = Notifier::from_env();
    let node = Node::load(file)?;
    // Root writes the lease and failsafe files beside the member directory, and creates it.
    pgha_pg::trust::check_ancestors(&node.config.member.dir)?;
    if node.config.tls.is_none() {
        tracing::warn!(
            "{}: no [tls] section: replication and pgha's connections to PostgreSQL are not \
             encrypted, and a fake member written into etcd would be sent the superuser password; \
             make certificates with `pgha tls ca` and `pgha tls member`",
            file.display()
        );
    }
    if node.config.etcd.ca_file.is_none() {
        tracing::warn!(
            "{}: no etcd.ca_file: etcd is reached in clear text; give etcd TLS (see `pgha agent --help`)",
            file.display()
        );
    }
    let spec = node.spec()?;
    // One agent a member, held until this process ends: taken before anything else is
    // touched (beside the member directory, in the directory that holds it).
    let _agent_lock = pgha_pg::agent_lock::AgentLock::acquire(&spec.instance.member_dir)
        .with_context(|| format!("start the agent of {}", file.display()))?;
    let api_listener = tokio::net::TcpListener::bind(&node.config.member.api)
        .await
        .with_context(|| {
            format!(
                "bind the REST API on {} (member.api in {})",
                node.config.member.api,
                file.display()
            )
        })?;
    spec.instance.create_member_dir()?;
    let mut spec = spec;
    spec.tls = node.member_tls(&spec.instance.member_dir, &spec.instance.run_as)?;
    spec.api_https = node.api_https();
    let api_tls = node.api_server_tls()?;
    let pg = &node.config.postgresql;
    pgha_pg::secrets::write_passfile(
        &spec.passfile,
        &[
            (&pg.replication_user, &node.secrets.replication_password),
            (&pg.superuser, &node.secrets.superuser_password),
        ],
        &spec.instance.run_as,
    )?;

    let mut stop = StopSignals::install(OnHangup::KeepRunning)?;
    notify.status(&format!(
        "waiting for etcd at {}",
        node.config.etcd.endpoints.join(", ")
    ));
    let store = tokio::select! {
        s = node.connect_store_for_service(None) => s?,
        why = stop.recv() => bail!("{why} while waiting for etcd"),
    };
    let trimmer = node
        .config
        .etcd_history_retention()
        .map(|keep| super::history::spawn_trimmer(store.clone(), keep));
    let initial = super::initial::initial_config(&node.config, &spec.instance)?;
    crate::ops::ensure_config(store.as_ref(), &initial).await?;
    refuse_foreign_data(&spec, store.as_ref()).await?;

    let config = crate::ops::view(store.as_ref()).await?.config;
    arm_watchdog(&mut spec, &node.config.watchdog, &config, file)?;
    let (name, host_addr, port) = (spec.name.clone(), spec.host.clone(), spec.port);
    let p = &node.config.proxy;
    let host = Host::new(HostSetup {
        cluster: node.config.cluster.name.clone(),
        store,
        members: vec![spec],
        token: node.secrets.api_token.clone(),
        credentials: node.credentials(),
        entry_points: (
            p.rw_listen.clone().unwrap_or_default(),
            p.ro_listen.clone().unwrap_or_default(),
        ),
    });
    host.start_member(name.as_str()).await?;
    let api = crate::api::serve(api_listener, host.clone(), api_tls);
    tracing::info!(
        "agent {name} of cluster {} running: PostgreSQL {host_addr}:{port}, REST API {}",
        node.config.cluster.name,
        node.config.member.api
    );
    let why = serve_systemd(&notify, &host, &name, &mut stop).await;
    notify.stopping(&format!("{why}: stopping the agent"));
    host.leave_cluster().await;
    api.stop().await;
    if let Some(trimmer) = trimmer {
        trimmer.abort();
    }
    Ok(())
}

/// `pgha proxy --config FILE`: the proxy alone, following the leader in etcd.
pub async fn proxy(file: &Path) -> anyhow::Result<()> {
    let notify = Notifier::from_env();
    if notify.watchdog_interval().is_some() {
        tracing::warn!(
            "WatchdogSec is set for the proxy, which has no loop to vouch for: it sends no \
             WATCHDOG=1 and systemd will kill it; remove WatchdogSec from its unit"
        );
    }
    let node = Node::load(file)?;
    let p = &node.config.proxy;
    if p.rw_listen.is_none() && p.ro_listen.is_none() {
        bail!(
            "{}: set proxy.rw_listen and/or proxy.ro_listen",
            file.display()
        );
    }
    notify.status(&format!(
        "waiting for etcd at {}",
        node.config.etcd.endpoints.join(", ")
    ));
    let store = node.connect_store_for_service(None).await?;
    let tls = match (&p.tls, &node.config.tls) {
        (Some(own), Some(cluster)) => {
            pgha_pg::trust::check(&own.cert_file)?;
            pgha_pg::trust::check_secrets(&own.key_file)?;
            Some(pgha_proxy::ProxyTls {
                cert_file: own.cert_file.clone(),
                key_file: own.key_file.clone(),
                ca_file: cluster.ca_file.clone(),
                require: own.require,
            })
        }
        _ => None,
    };
    let config = pgha_proxy::ProxyConfig {
        rw_listen: p.rw_listen.clone(),
        ro_listen: p.ro_listen.clone(),
        tls,
        ..pgha_proxy::ProxyConfig::default()
    };
    let shutdown = pgha_proxy::CancellationToken::new();
    let metrics = crate::entry::start(store, config, &node.credentials(), shutdown.clone()).await?;
    if let Some(addr) = &p.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("bind proxy.metrics_listen {addr} ({})", file.display()))?;
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let text = metrics.render_prometheus();
                async move { ([("content-type", "text/plain; version=0.0.4")], text) }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        tracing::info!("proxy metrics on http://{addr}/metrics");
    }
    tracing::info!(
        "proxy running: read-write {:?}, read-only {:?}",
        p.rw_listen,
        p.ro_listen
    );
    let mut stop = StopSignals::install(OnHangup::KeepRunning)?;
    notify.ready(&format!(
        "proxy listening: read-write {}, read-only {}",
        p.rw_listen.as_deref().unwrap_or("-"),
        p.ro_listen.as_deref().unwrap_or("-")
    ));
    let why = stop.recv().await;
    notify.stopping(&format!("{why}: stopping the proxy"));
    shutdown.cancel();
    Ok(())
}

/// Gives the supervisor its watchdog setting. The timeout must fit in half the safety margin
/// (the supervisor stops keeping it alive at its fence deadline, the store expires the lease
/// half a margin later). `required` without a usable device: this member is never promoted.
fn arm_watchdog(
    spec: &mut NodeSpec,
    section: &super::config::WatchdogSection,
    config: &pgha_core::ClusterConfig,
    file: &Path,
) -> anyhow::Result<()> {
    use pgha_pg::watchdog::{check, timeout_for, WatchdogMode};
    let mode = section.mode;
    if mode == WatchdogMode::Off {
        return Ok(());
    }
    // the margin in force (at least a fifth of the ttl), which the fencing deadline goes by
    let margin = config.margin_ms();
    let timeout_s = timeout_for(margin);
    if u64::from(timeout_s) * 1000 > margin / 2 {
        let why = format!(
            "watchdog.mode = {mode} in {} needs a safety margin of at least 2000 ms (it is \
             {margin}): the watchdog's 1 s must fit in half the margin",
            file.display(),
        );
        if mode == WatchdogMode::Required {
            bail!("{why}; raise it with pgha config set safety_margin_ms=2000");
        }
        tracing::warn!("{why}; the watchdog stays off");
        return Ok(());
    }
    if mode == WatchdogMode::Required {
        if let Err(e) = check(&section.device, timeout_s) {
            tracing::error!(
                "{}: watchdog required but unusable ({e}): this member will not be promoted",
                spec.name
            );
            spec.tags.nofailover = true;
        }
    }
    spec.instance.watchdog = pgha_pg::supervisor::WatchdogSetting {
        mode,
        device: section.device.clone(),
        timeout_s,
    };
    Ok(())
}

/// Refuses to start on a data directory that belongs to another cluster (changes nothing).
async fn refuse_foreign_data(spec: &NodeSpec, store: &dyn Store) -> anyhow::Result<()> {
    let view = crate::ops::view(store).await?;
    if view.initialize.is_none() || !spec.instance.is_initialized() {
        return Ok(());
    }
    let local = spec.instance.controldata().await?.system_identifier;
    let local = local.parse().map(pgha_core::SystemId).ok();
    if let Err(foreign) = pgha_core::restart::check_belongs(view.initialize, local) {
        bail!(
            "{} belongs to another cluster (system identifier {}, the cluster in etcd has {}); \
             refusing to touch it. Point member.dir elsewhere, or move that data directory away yourself",
            spec.instance.data_dir().display(),
            foreign.local,
            foreign.store
        );
    }
    Ok(())
}
