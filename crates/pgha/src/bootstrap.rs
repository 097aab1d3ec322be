//! Bringing a local cluster's members up: initdb of the primary, clones of the standbys,
//! start, replication role and slots, and the wait until every standby streams.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use pgha_pg::basebackup::{clone, CloneSource};
use pgha_pg::conf::slot_name;
use pgha_pg::probe::{ensure_replication_role, ensure_slot, probe};

use crate::cluster::{LocalCluster, Member};
use crate::progress::ProgressBoard;

const START_TIMEOUT: Duration = Duration::from_secs(120);
const CLONE_TIMEOUT: Duration = Duration::from_secs(3600);
const STREAMING_TIMEOUT: Duration = Duration::from_secs(120);

/// Which member holds the primary's data: the initialised one without standby.signal, or the
/// first member of a brand-new cluster.
pub fn choose_primary(cluster: &LocalCluster) -> anyhow::Result<&Member> {
    let initialised: Vec<&Member> = cluster
        .members
        .iter()
        .filter(|m| m.instance.is_initialized())
        .collect();
    if initialised.is_empty() {
        return Ok(&cluster.members[0]);
    }
    let primaries: Vec<&Member> = initialised
        .iter()
        .copied()
        .filter(|m| !m.instance.has_standby_signal())
        .collect();
    match primaries.as_slice() {
        [one] => Ok(one),
        [] => bail!(
            "no member of {} holds a primary's data directory (every initialised member has standby.signal); \
             promote one by hand (`pg_ctl promote`) or restore the primary's data",
            cluster.dir.display()
        ),
        many => bail!(
            "members {} all hold primary data directories; refusing to start two primaries. \
             Keep the one with the newest data and remove standby duties from the rest by hand",
            many.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// Initialises (if needed) and starts the primary, then makes sure the replication role and
/// every standby's slot exist.
pub async fn bring_up_primary(cluster: &LocalCluster, primary: &Member) -> anyhow::Result<()> {
    let inst = &primary.instance;
    inst.create_member_dir()?;
    if !inst.is_initialized() {
        let staging = inst.member_dir.join("data.init");
        remove_incomplete(&staging)?;
        tracing::info!(
            "{}: initdb (scram-sha-256 authentication, data checksums)",
            primary.name
        );
        inst.initdb(
            &staging,
            &cluster.config.postgresql.superuser,
            &cluster.secrets.superuser_password,
        )
        .await?;
        inst.write_config(
            &staging,
            &cluster.member_conf(primary, None),
            &cluster.hba(),
        )?;
        std::fs::rename(&staging, inst.data_dir())
            .context("move the new data directory into place")?;
    } else {
        inst.write_config(
            &inst.data_dir(),
            &cluster.member_conf(primary, None),
            &cluster.hba(),
        )?;
    }
    if !inst.is_running() {
        inst.start(START_TIMEOUT).await?;
        tracing::info!(
            "{}: primary started on {}:{}",
            primary.name,
            primary.host,
            primary.port
        );
    }
    let client = connect_when_ready(cluster, primary).await?;
    let pg = &cluster.config.postgresql;
    ensure_replication_role(
        &client,
        &primary.name,
        &pg.replication_user,
        &cluster.secrets.replication_password,
    )
    .await?;
    let mut created = Vec::new();
    for other in cluster.members.iter().filter(|m| m.name != primary.name) {
        if ensure_slot(&client, &primary.name, &slot_name(&other.name)).await? {
            created.push(slot_name(&other.name));
        }
    }
    if !created.is_empty() {
        tracing::info!(
            "{}: replication slots created: {}",
            primary.name,
            created.join(", ")
        );
    }
    Ok(())
}

/// Clones (if needed), configures and starts one standby of `primary`, then waits until it streams.
pub async fn bring_up_standby(
    cluster: &LocalCluster,
    standby: &Member,
    primary: &Member,
    board: &ProgressBoard,
) -> anyhow::Result<()> {
    let inst = &standby.instance;
    inst.create_member_dir()?;
    let conf = cluster.member_conf(standby, Some(primary));
    if !inst.is_initialized() {
        let staging = inst.member_dir.join("data.partial");
        remove_incomplete(&staging)?;
        tracing::info!(
            "{}: cloning {} with pg_basebackup (WAL streamed through slot {})",
            standby.name,
            primary.name,
            conf.slot_name()
        );
        let passfile = cluster.passfile();
        let slot = conf.slot_name();
        let source = CloneSource {
            host: &primary.host,
            port: primary.port,
            replication_user: &cluster.config.postgresql.replication_user,
            passfile: &passfile,
            slot: &slot,
        };
        let mut reporter = board.reporter(&format!("{} clone", standby.name));
        clone(inst, &source, &staging, CLONE_TIMEOUT, |p| {
            reporter.update(p)
        })
        .await
        .with_context(|| format!("{}: clone from {} failed", standby.name, primary.name))?;
        reporter.finish();
        inst.write_config(&staging, &conf, &cluster.hba())?;
        std::fs::rename(&staging, inst.data_dir())
            .context("move the cloned data directory into place")?;
    } else {
        inst.write_config(&inst.data_dir(), &conf, &cluster.hba())?;
    }
    if !inst.is_running() {
        inst.start(START_TIMEOUT).await?;
    }
    wait_streaming(cluster, standby).await?;
    tracing::info!("{}: streaming from {}", standby.name, primary.name);
    Ok(())
}

/// Brings the whole cluster up; returns the primary's name.
pub async fn bring_up(cluster: &LocalCluster, board: &ProgressBoard) -> anyhow::Result<String> {
    let primary = choose_primary(cluster)?;
    bring_up_primary(cluster, primary).await?;
    let standbys = cluster.members.iter().filter(|m| m.name != primary.name);
    futures::future::try_join_all(standbys.map(|s| bring_up_standby(cluster, s, primary, board)))
        .await?;
    Ok(primary.name.clone())
}

/// Removes a staging directory an interrupted run of pgha left behind (never a usable data
/// directory: staging directories are renamed into place only once complete).
fn remove_incomplete(staging: &std::path::Path) -> anyhow::Result<()> {
    if staging.exists() {
        tracing::warn!(
            "removing {}, an incomplete directory left by an interrupted run",
            staging.display()
        );
        std::fs::remove_dir_all(staging)
            .with_context(|| format!("remove {}", staging.display()))?;
    }
    Ok(())
}

async fn connect_when_ready(
    cluster: &LocalCluster,
    member: &Member,
) -> anyhow::Result<tokio_postgres::Client> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        match cluster.connect(member, Duration::from_secs(3)).await {
            Ok(client) => return Ok(client),
            Err(e) if Instant::now() < deadline && e.is_retryable() => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => return Err(e.into()),
        }
    }
}

async fn wait_streaming(cluster: &LocalCluster, member: &Member) -> anyhow::Result<()> {
    let deadline = Instant::now() + STREAMING_TIMEOUT;
    let mut last = String::from("not connected");
    while Instant::now() < deadline {
        if !member.instance.is_running() {
            bail!(
                "{}: PostgreSQL stopped while waiting for it to stream; see {}",
                member.name,
                member.instance.log_file().display()
            );
        }
        if let Ok(client) = cluster.connect(member, Duration::from_secs(3)).await {
            loop {
                match probe(&client, &member.name).await {
                    Ok(state) if state.is_streaming() => return Ok(()),
                    Ok(state) => {
                        last = format!(
                            "wal receiver: {}",
                            state
                                .wal_receiver_status
                                .as_deref()
                                .unwrap_or("not running")
                        )
                    }
                    Err(e) => {
                        last = e.to_string();
                        break;
                    }
                }
                if Instant::now() >= deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "{}: not streaming after {} s ({last}); see {}",
        member.name,
        STREAMING_TIMEOUT.as_secs(),
        member.instance.log_file().display()
    )
}
