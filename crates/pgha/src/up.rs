//! `pgha up`: create or restart a local cluster, keep it in the foreground, stop it on Ctrl-C.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use pgha_pg::StopMode;
use tokio::signal::unix::{signal, SignalKind};

use crate::bootstrap::{bring_up, choose_primary};
use crate::cluster::{absolute, LocalCluster};
use crate::config::{parse_param_flag, Config, CONFIG_FILE, DEFAULT_BASE_PORT};
use crate::error::CliError;
use crate::lock::DirLock;
use crate::progress::ProgressBoard;
use crate::secrets::{Secrets, SECRETS_FILE};
use crate::status::{gather, ClusterStatus};

/// What the user asked `pgha up` for.
#[derive(Debug, Clone)]
pub struct UpArgs {
    pub dir: PathBuf,
    pub members: Option<u16>,
    pub port: Option<u16>,
    pub params: Vec<String>,
    pub pg_bin_dir: Option<PathBuf>,
    pub os_user: Option<String>,
}

const STOP_TIMEOUT: Duration = Duration::from_secs(60);

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let dir = absolute(&args.dir)?;
    let (cluster, fresh) = prepare(&args, &dir)?;
    check_ports(&cluster)?;
    if fresh {
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
    }
    let _lock = DirLock::acquire(&dir)?;
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
    cluster.write_passfile()?;

    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let board = ProgressBoard::new();
    let started = std::time::Instant::now();
    let outcome = tokio::select! {
        r = bring_up(&cluster, &board) => r,
        _ = sigint.recv() => Err(anyhow::anyhow!("interrupted while starting the cluster")),
        _ = sigterm.recv() => Err(anyhow::anyhow!("terminated while starting the cluster")),
    };
    let primary = match outcome {
        Ok(primary) => primary,
        Err(e) => {
            tracing::info!("start-up failed; stopping the members that are running");
            stop_all(&cluster).await;
            return Err(e);
        }
    };
    tracing::info!("cluster up in {:.1} s", started.elapsed().as_secs_f64());
    print_summary(&cluster, &primary, &args.dir);

    watch_until_signal(&cluster, &mut sigint, &mut sigterm).await;
    tracing::info!("shutting down: primary first, so its standbys receive everything it wrote");
    stop_all(&cluster).await;
    tracing::info!(
        "all members stopped; `pgha up --dir {}` starts them again",
        args.dir.display()
    );
    Ok(())
}

/// Loads an existing cluster or plans a new one, checking everything before anything is written.
fn prepare(args: &UpArgs, dir: &Path) -> anyhow::Result<(LocalCluster, bool)> {
    if dir.exists() && !dir.is_dir() {
        return Err(CliError::NotADirectory {
            dir: dir.to_path_buf(),
        }
        .into());
    }
    let config_file = dir.join(CONFIG_FILE);
    if config_file.is_file() {
        let config = Config::load(&config_file)?;
        let conflict =
            |flag: &'static str, given: String, existing: String| CliError::FlagConflict {
                flag,
                given,
                existing,
                dir: dir.to_path_buf(),
                file: config_file.clone(),
            };
        if let Some(n) = args.members.filter(|n| *n != config.cluster.members) {
            return Err(conflict(
                "--members",
                n.to_string(),
                format!("{} members", config.cluster.members),
            )
            .into());
        }
        if let Some(p) = args.port.filter(|p| *p != config.cluster.base_port) {
            return Err(conflict(
                "--port",
                p.to_string(),
                format!("base port {}", config.cluster.base_port),
            )
            .into());
        }
        if !args.params.is_empty() {
            return Err(conflict(
                "--param",
                args.params.join(" "),
                "its parameters in [postgresql.parameters]".into(),
            )
            .into());
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
    let mut params = BTreeMap::new();
    for flag in &args.params {
        let (k, v) = parse_param_flag(flag).map_err(anyhow::Error::msg)?;
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

/// Stops every running member: the primary first, then the standbys.
async fn stop_all(cluster: &LocalCluster) {
    let primary = choose_primary(cluster).ok().map(|m| m.name.clone());
    let mut order: Vec<_> = cluster.members.iter().collect();
    order.sort_by_key(|m| Some(&m.name) != primary.as_ref());
    for member in order {
        if !member.instance.is_running() {
            continue;
        }
        match member.instance.stop(StopMode::Fast, STOP_TIMEOUT).await {
            Ok(()) => tracing::info!("{}: stopped", member.name),
            Err(e) => {
                tracing::warn!(
                    "{}: fast stop failed ({e}); stopping immediately",
                    member.name
                );
                if let Err(e) = member
                    .instance
                    .stop(StopMode::Immediate, STOP_TIMEOUT)
                    .await
                {
                    tracing::error!("{}: could not stop PostgreSQL: {e}", member.name);
                }
            }
        }
    }
}

fn print_summary(cluster: &LocalCluster, primary: &str, dir_arg: &Path) {
    let dir = dir_arg.display();
    println!(
        "\nCluster {} is up: PostgreSQL {}, {} members, data in {}",
        cluster.config.cluster.name,
        cluster.bins.version,
        cluster.members.len(),
        cluster.dir.display()
    );
    for m in &cluster.members {
        let role = if m.name == primary {
            "primary".to_string()
        } else {
            format!("standby, streaming from {primary}")
        };
        println!("  {:<4} {}:{:<6} {}", m.name, m.host, m.port, role);
    }
    println!("\n  Connect:  psql \"$(pgha url --dir {dir})\"   (one member: --member NAME)");
    println!("  Status:   pgha status --dir {dir}");
    println!("  Stop:     Ctrl-C here; `pgha up --dir {dir}` starts the same cluster again\n");
}

/// Logs every change of a member's role or state until SIGINT or SIGTERM arrives.
async fn watch_until_signal(
    cluster: &LocalCluster,
    sigint: &mut tokio::signal::unix::Signal,
    sigterm: &mut tokio::signal::unix::Signal,
) {
    let mut previous: Option<ClusterStatus> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = sigint.recv() => return,
            _ = sigterm.recv() => return,
            _ = tick.tick() => {
                let now = gather(cluster).await;
                if let Some(before) = &previous {
                    for (b, n) in before.members.iter().zip(&now.members) {
                        if (b.role.as_str(), b.state.as_str()) != (n.role.as_str(), n.state.as_str()) {
                            tracing::warn!("{}: {} {} -> {} {}", n.name, b.role, b.state, n.role, n.state);
                        }
                    }
                    if before.leader != now.leader {
                        tracing::warn!("primary: {} -> {}", before.leader.as_deref().unwrap_or("none"), now.leader.as_deref().unwrap_or("none"));
                    }
                }
                previous = Some(now);
            }
        }
    }
}
