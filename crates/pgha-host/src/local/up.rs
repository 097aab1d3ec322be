//! `pgha up`: create or restart a local cluster, keep it in the foreground, stop it on Ctrl-C.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::signals::{OnHangup, StopSignals};
use anyhow::Context;

use super::config::{parse_param_flag, Config, CONFIG_FILE, DEFAULT_BASE_PORT};
use super::lock::DirLock;
use super::{absolute, LocalCluster, STORE_FILE};
use crate::error::CliError;
use crate::secrets::{Secrets, SECRETS_FILE};
use crate::{Host, HostSetup};
use pgha_store::{MemoryStore, Store, TokioClock};

/// What the user asked `pgha up` for.
#[derive(Debug, Clone)]
pub struct UpArgs {
    pub dir: PathBuf,
    pub members: Option<u16>,
    pub port: Option<u16>,
    pub params: Vec<String>,
    pub pg_bin_dir: Option<PathBuf>,
    pub os_user: Option<String>,
    /// Where the entry points' TLS ends, for a new cluster (`cluster.proxy_tls`).
    pub proxy_tls: Option<super::config::ProxyTlsMode>,
    /// Dynamic settings for a new cluster, as (key, value) text.
    pub settings: Vec<(String, String)>,
}

/// How long `pgha up` waits for every member to run (a large first clone can take a while).
const READY_TIMEOUT: Duration = Duration::from_secs(600);

/// Creates or restarts the cluster, calls `on_ready` with it and its primary once every member
/// runs, and keeps it until SIGINT/SIGTERM, then stops every member (the leader first).
pub async fn run(args: UpArgs, on_ready: impl FnOnce(&LocalCluster, &str)) -> anyhow::Result<()> {
    let dir = absolute(&args.dir)?;
    let (cluster, fresh) = prepare(&args, &dir)?;
    let mut initial = pgha_core::ClusterConfig::default();
    for (key, value) in &args.settings {
        if !fresh {
            return Err(CliError::FlagConflict {
                flag: "--synchronous-*",
                given: format!("{key}={value}"),
                existing: "its settings in the store".into(),
                dir: dir.clone(),
                file: dir.join(STORE_FILE),
            }
            .into());
        }
        initial = crate::dynamic::set_key(&initial, key, value)?;
    }
    // An existing cluster is locked first, so a second `up` says "already running".
    let existing_lock = if fresh {
        None
    } else {
        Some(DirLock::acquire(&dir)?)
    };
    check_ports(&cluster)?;
    let api_port = cluster.config.cluster.base_port + 2;
    let host = cluster.config.cluster.api_host().to_string();
    let api_listener = tokio::net::TcpListener::bind((host.as_str(), api_port))
        .await
        .map_err(|_| CliError::PortInUse {
            port: api_port,
            what: "the control API".into(),
            host: host.clone(),
        })?;
    if fresh {
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
    }
    let _lock = match existing_lock {
        Some(lock) => lock,
        None => DirLock::acquire(&dir)?,
    };
    // One agent a member: this process is the agent of each, and a `pgha agent` pointed at
    // one of these member directories is refused, as a second `pgha agent` would be.
    let _member_locks = cluster
        .members
        .iter()
        .map(|m| pgha_pg::agent_lock::AgentLock::acquire(&m.instance.member_dir))
        .collect::<Result<Vec<_>, _>>()?;
    if fresh {
        cluster
            .secrets
            .save(&dir.join(SECRETS_FILE))
            .context("write the secrets file")?;
        cluster
            .config
            .save(&dir.join(CONFIG_FILE))
            .context("write the cluster config")?;
        tracing::info!(
            "created cluster {} in {}",
            cluster.config.cluster.name,
            dir.display()
        );
    }
    let mut cluster = cluster;
    if cluster.secrets.api_token.is_none() {
        // A cluster made before the control API required a token gets one now.
        cluster.secrets.api_token = Some(pgha_pg::secrets::generate_password(32));
        cluster
            .secrets
            .save(&dir.join(SECRETS_FILE))
            .context("add the control API's token to the secrets file")?;
        tracing::info!(
            "added a control API token to {}",
            dir.join(SECRETS_FILE).display()
        );
    }
    cluster.write_passfile()?;
    cluster.ensure_tls()?;

    let host = open_host(&cluster, initial).await?;
    let api = crate::api::serve(api_listener, host.clone(), None);

    let proxy_stop = pgha_proxy::CancellationToken::new();
    let (rw, ro) = cluster.entry_points();
    let proxy = pgha_proxy::ProxyConfig {
        rw_listen: Some(rw),
        ro_listen: Some(ro),
        worker_threads: 0,
        tls: cluster.proxy_tls()?,
        ..pgha_proxy::ProxyConfig::default()
    };
    let metrics = crate::entry::start(
        host.store.clone(),
        proxy,
        &cluster.credentials(),
        proxy_stop.clone(),
    )
    .await
    .context("start the proxy")?;
    host.set_proxy_metrics(metrics);

    let mut stop = StopSignals::install(OnHangup::Stop)?;
    let started = std::time::Instant::now();
    let outcome = tokio::select! {
        r = async {
            host.start_all().await?;
            Ok::<_, anyhow::Error>(host.wait_ready(READY_TIMEOUT).await?)
        } => r,
        why = stop.recv() => Err(anyhow::anyhow!("{why} while starting the cluster")),
    };
    let leader = match outcome {
        Ok(leader) => leader,
        Err(e) => {
            tracing::info!("start-up failed; stopping the members that are running");
            super::shutdown_pause::stop_cluster_marked(&cluster.dir, &host).await;
            proxy_stop.cancel();
            api.stop().await;
            return Err(e);
        }
    };
    tracing::info!("cluster up in {:.1} s", started.elapsed().as_secs_f64());
    // What the caller prints must not skip the shutdown below: a panic there (`print!` to a
    // closed pipe) is logged, and the cluster runs on until it is stopped.
    let ready = std::panic::AssertUnwindSafe(|| on_ready(&cluster, leader.as_str()));
    if std::panic::catch_unwind(ready).is_err() {
        tracing::error!("printing the cluster's summary failed; it keeps running until Ctrl-C");
    }

    let why = stop.recv().await;
    tracing::info!(
        "{why}: shutting down: automatic actions paused, the leader stops first so its standbys receive everything it wrote"
    );
    super::shutdown_pause::stop_cluster_marked(&cluster.dir, &host).await;
    api.stop().await;
    tracing::info!(
        "all members stopped; `pgha up --dir {}` starts them again",
        args.dir.display()
    );
    Ok(())
}

/// The host of every member over the embedded store, with `initial` as the dynamic config
/// unless the store has one, and the leader key given to the member holding the primary's
/// data so that its agent adopts it: a restart keeps the same primary and timeline.
async fn open_host(
    cluster: &LocalCluster,
    initial: pgha_core::ClusterConfig,
) -> anyhow::Result<std::sync::Arc<Host>> {
    let file = cluster.dir.join(STORE_FILE);
    let store = MemoryStore::persistent(std::sync::Arc::new(TokioClock::new()), &file)
        .with_context(|| format!("open the embedded store {}", file.display()))?;
    crate::ops::ensure_config(&store, &initial).await?;
    super::shutdown_pause::resume_if_marked(&cluster.dir, &store).await?;
    let view = crate::ops::view(&store).await?;
    let last_leader = view.leader_position.as_ref().map(|p| &p.leader);
    match pgha_core::restart::seed_leader(view.leader.is_some(), last_leader, &cluster.disks()) {
        Ok(Some(primary)) => {
            store
                .acquire_leader(primary.as_str(), view.config.ttl())
                .await?;
        }
        Ok(None) => {}
        Err(why) => tracing::warn!("{why}"),
    }
    Ok(Host::new(HostSetup {
        cluster: cluster.config.cluster.name.clone(),
        store: std::sync::Arc::new(store),
        members: cluster.specs(),
        token: cluster.secrets.api_token.clone(),
        credentials: cluster.credentials(),
        entry_points: cluster.entry_points(),
    }))
}

/// Loads an existing cluster or plans a new one, checking everything before anything is written.
fn prepare(args: &UpArgs, dir: &Path) -> anyhow::Result<(LocalCluster, bool)> {
    if dir.exists() && !dir.is_dir() {
        return Err(CliError::NotADirectory {
            dir: dir.to_path_buf(),
        }
        .into());
    }
    if dir.exists() {
        pgha_pg::trust::check(dir)?;
    }
    pgha_pg::trust::check_ancestors(dir)?;
    let config_file = dir.join(CONFIG_FILE);
    if config_file.is_file() {
        pgha_pg::trust::check(&config_file)?;
        let config = Config::load(&config_file)?;
        let conflict =
            |flag: &'static str, given: String, existing: String| CliError::FlagConflict {
                flag,
                given,
                existing,
                dir: dir.to_path_buf(),
                file: config_file.clone(),
            };
        let c = &config.cluster;
        let given_members = args
            .members
            .filter(|n| *n != c.members)
            .map(|n| n.to_string());
        let given_port = args
            .port
            .filter(|p| *p != c.base_port)
            .map(|p| p.to_string());
        let given_tls = args.proxy_tls.filter(|t| *t != c.proxy_tls);
        for (flag, given, existing) in [
            ("--members", given_members, format!("{} members", c.members)),
            ("--port", given_port, format!("base port {}", c.base_port)),
            (
                "--proxy-tls",
                given_tls.map(|t| format!("{t:?}").to_lowercase()),
                format!("cluster.proxy_tls = {:?}", c.proxy_tls).to_lowercase(),
            ),
        ] {
            if let Some(given) = given {
                return Err(conflict(flag, given, existing).into());
            }
        }
        if !args.params.is_empty() {
            return Err(conflict(
                "--param",
                args.params.join(" "),
                "its parameters in [postgresql.parameters]".into(),
            )
            .into());
        }
        // The data directories belong to one major version: other server programs are a
        // change of pgha.toml, never a flag that would be ignored.
        if let Some(bin) = args
            .pg_bin_dir
            .as_ref()
            .filter(|b| config.postgresql.bin_dir.as_ref() != Some(*b))
        {
            let existing = match &config.postgresql.bin_dir {
                Some(d) => format!("postgresql.bin_dir = {}", d.display()),
                None => "no postgresql.bin_dir (its server programs are discovered)".into(),
            };
            return Err(conflict("--pg-bin-dir", bin.display().to_string(), existing).into());
        }
        let secrets = Secrets::load(&dir.join(SECRETS_FILE))?;
        let cluster = LocalCluster::assemble(dir.to_path_buf(), config, secrets)?;
        cluster.run_as.check_reachable(dir)?;
        return Ok((cluster, false));
    }
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        return Err(CliError::NotEmpty {
            dir: dir.to_path_buf(),
        }
        .into());
    }
    let name: String = dir
        .file_name()
        .map(|n| {
            n.to_string_lossy()
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect()
        })
        .filter(|n: &String| !n.is_empty())
        .unwrap_or_else(|| "pgha".into());
    let mut config = Config::new(
        &name,
        args.members.unwrap_or(3),
        args.port.unwrap_or(DEFAULT_BASE_PORT),
    );
    config.postgresql.bin_dir = args.pg_bin_dir.clone();
    if let Some(user) = &args.os_user {
        config.postgresql.os_user = user.clone();
    }
    if let Some(mode) = args.proxy_tls {
        config.cluster.proxy_tls = mode;
    }
    let mut params = BTreeMap::new();
    for flag in &args.params {
        let (k, v) = parse_param_flag(flag)?;
        params.insert(k, v);
    }
    config.postgresql.parameters = params;
    config.validate(&config_file)?;
    let cluster = LocalCluster::assemble(dir.to_path_buf(), config, Secrets::generate())?;
    cluster.run_as.check_reachable(dir)?;
    Ok((cluster, true))
}

/// Fails if a port a member needs is taken by something other than that member itself.
fn check_ports(cluster: &LocalCluster) -> anyhow::Result<()> {
    let c = &cluster.config.cluster;
    for (port, what) in [
        (c.base_port, "the read-write entry point"),
        (c.base_port + 1, "the read-only entry point"),
    ] {
        if TcpListener::bind((c.host.as_str(), port)).is_err() {
            return Err(CliError::PortInUse {
                port,
                what: what.into(),
                host: c.host.clone(),
            }
            .into());
        }
    }
    for member in &cluster.members {
        if member.instance.is_running() {
            continue;
        }
        if TcpListener::bind((member.host.as_str(), member.port)).is_err() {
            return Err(CliError::PortInUse {
                port: member.port,
                what: format!("member {}'s PostgreSQL", member.name),
                host: member.host.clone(),
            }
            .into());
        }
    }
    Ok(())
}
