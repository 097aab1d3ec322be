//! The long-running actions (bootstrap, start, stop, promote, demote, follow, rewind, re-clone)
//! carried out on the local PostgreSQL with pgha-pg; each returns Ok or an error text.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pgha_core::{Action, MemberName, StartRole, StopMode as CoreStop};
use pgha_pg::basebackup::{clone, CloneSource};
use pgha_pg::conf::{slot_name, Upstream};
use pgha_pg::probe::{ensure_replication_role, ensure_slot};
use pgha_pg::rewind::{rewind, RewindSource};
use pgha_pg::{PgError, StopMode};

use crate::spec::{Dynamic, NodeSpec};

const START_TIMEOUT: Duration = Duration::from_secs(120);
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
const PROMOTE_TIMEOUT: Duration = Duration::from_secs(60);
const CLONE_TIMEOUT: Duration = Duration::from_secs(6 * 3600);
const REWIND_TIMEOUT: Duration = Duration::from_secs(3600);
const SQL_TIMEOUT: Duration = Duration::from_secs(5);
const CHECKPOINT_TIMEOUT: Duration = Duration::from_secs(120);

/// What a job needs besides the action: the member, its peers' addresses, the sync setting.
#[derive(Clone)]
pub struct JobContext {
    pub spec: Arc<NodeSpec>,
    pub peers: BTreeMap<MemberName, Upstream>,
    pub dynamic: Dynamic,
}

/// Runs one job action to completion.
pub async fn run_job(ctx: JobContext, action: Action) -> Result<(), String> {
    let result = match &action {
        Action::Bootstrap => bootstrap(&ctx).await,
        Action::StartPostgres(role) => start(&ctx, role).await,
        Action::StopPostgres(mode) => stop(&ctx, *mode).await,
        Action::Promote => promote(&ctx).await,
        Action::Demote { mode } => demote(&ctx, *mode).await,
        Action::Follow { leader } => follow(&ctx, leader).await,
        Action::Rewind { from } => rewind_from(&ctx, from).await,
        Action::Reclone { from, move_aside } => reclone(&ctx, from, *move_aside).await,
        other => return Err(format!("{other:?} is not a job")),
    };
    result.map_err(|e| e.to_string())
}

type JobResult = Result<(), JobError>;

/// Why a job failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Pg(#[from] PgError),
    #[error("{0}")]
    Refused(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> JobError {
    let context = context.into();
    move |source| JobError::Io { context, source }
}

fn pg_mode(mode: CoreStop) -> StopMode {
    match mode {
        CoreStop::Fast => StopMode::Fast,
        CoreStop::Immediate => StopMode::Immediate,
    }
}

impl JobContext {
    fn peer(&self, name: &MemberName) -> Result<Upstream, JobError> {
        self.peers.get(name).cloned().ok_or_else(|| {
            JobError::Refused(format!("{name} has not published its PostgreSQL address"))
        })
    }

    fn write_config(
        &self,
        data: &std::path::Path,
        standby: bool,
        upstream: Option<Upstream>,
    ) -> JobResult {
        let spec = &self.spec;
        let conf = spec.conf(standby, upstream, &self.dynamic);
        spec.instance.write_config(data, &conf, &spec.hba)?;
        Ok(())
    }

    /// Creates this member's slot on `upstream` so it can stream at once (best effort: the
    /// leader also maintains slots for every member).
    async fn ensure_own_slot_on(&self, upstream: &Upstream) {
        let spec = &self.spec;
        match spec
            .connect(&upstream.host, upstream.port, SQL_TIMEOUT)
            .await
        {
            Ok(client) => {
                if let Err(e) =
                    ensure_slot(&client, spec.name.as_str(), &slot_name(spec.name.as_str())).await
                {
                    tracing::debug!("{}: could not create its slot upstream: {e}", spec.name);
                }
            }
            Err(e) => tracing::debug!(
                "{}: could not reach upstream to create its slot: {e}",
                spec.name
            ),
        }
    }

    /// Starts PostgreSQL, or waits for an already running postmaster to accept connections.
    /// A postmaster that died (killed, crashed) is started again rather than waited for, also
    /// while it is an unreaped zombie, which still answers `kill(pid, 0)`.
    async fn start_or_wait(&self) -> JobResult {
        let spec = &self.spec;
        wait_reaped(&spec.instance).await;
        if !spec.instance.is_running() {
            spec.instance.start(START_TIMEOUT).await?;
            return Ok(());
        }
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if spec.instance.postmaster_pid().is_some_and(is_zombie) {
                wait_reaped(&spec.instance).await;
            }
            if !spec.instance.is_running() {
                spec.instance.start(START_TIMEOUT).await?;
                return Ok(());
            }
            match spec.connect_local(SQL_TIMEOUT).await {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() > deadline => return Err(e.into()),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Creates (or re-keys) the replication role on the local primary: idempotent, and run on
    /// every start as primary, so a bootstrap interrupted after initdb still gets it.
    async fn ensure_replication_role(&self) -> JobResult {
        let spec = &self.spec;
        let client = spec.connect_local(SQL_TIMEOUT).await?;
        ensure_replication_role(
            &client,
            spec.name.as_str(),
            &spec.replication_user,
            &spec.replication_password,
        )
        .await?;
        Ok(())
    }

    async fn stop_any(&self, mode: StopMode) -> JobResult {
        let inst = &self.spec.instance;
        if let Err(e) = inst.stop(mode, STOP_TIMEOUT).await {
            if mode == StopMode::Immediate {
                return Err(e.into());
            }
            tracing::warn!(
                "{}: fast stop failed ({e}); stopping immediately",
                self.spec.name
            );
            inst.stop(StopMode::Immediate, STOP_TIMEOUT).await?;
        }
        Ok(())
    }
}

async fn bootstrap(ctx: &JobContext) -> JobResult {
    let spec = &ctx.spec;
    let inst = &spec.instance;
    inst.create_member_dir()?;
    let staging = inst.member_dir.join("data.init");
    if staging.exists() {
        tracing::warn!(
            "{}: removing {}, left by an interrupted bootstrap",
            spec.name,
            staging.display()
        );
        std::fs::remove_dir_all(&staging).map_err(io("remove the incomplete data.init"))?;
    }
    tracing::info!(
        "{}: initdb (scram-sha-256 authentication, data checksums)",
        spec.name
    );
    inst.initdb(&staging, &spec.superuser, &spec.superuser_password)
        .await?;
    ctx.write_config(&staging, false, None)?;
    std::fs::rename(&staging, inst.data_dir())
        .map_err(io("move the new data directory into place"))?;
    inst.start(START_TIMEOUT).await?;
    let deadline = Instant::now() + START_TIMEOUT;
    let client = loop {
        match spec.connect_local(SQL_TIMEOUT).await {
            Ok(c) => break c,
            Err(e) if Instant::now() > deadline => return Err(e.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    ensure_replication_role(
        &client,
        spec.name.as_str(),
        &spec.replication_user,
        &spec.replication_password,
    )
    .await?;
    Ok(())
}

/// How long a dead postmaster may stay an unreaped zombie before starting is tried anyway
/// (PostgreSQL refuses to start while its lock file names a pid that answers signals).
const REAP_WAIT: Duration = Duration::from_secs(10);

/// Whether process `pid` has exited but not been reaped by its parent yet.
fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// Waits (bounded) until a dead postmaster's zombie is gone.
async fn wait_reaped(inst: &pgha_pg::Instance) {
    let deadline = Instant::now() + REAP_WAIT;
    while inst.postmaster_pid().is_some_and(is_zombie) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn start(ctx: &JobContext, role: &StartRole) -> JobResult {
    let data = ctx.spec.instance.data_dir();
    match role {
        StartRole::Primary => {
            ctx.write_config(&data, false, None)?;
            ctx.start_or_wait().await?;
            return ctx.ensure_replication_role().await;
        }
        StartRole::Standby { upstream } => {
            let up = match upstream {
                Some(name) => Some(ctx.peer(name)?),
                None => None,
            };
            if let Some(up) = &up {
                ctx.ensure_own_slot_on(up).await;
            }
            ctx.write_config(&data, true, up)?;
        }
    }
    ctx.start_or_wait().await
}

async fn stop(ctx: &JobContext, mode: CoreStop) -> JobResult {
    ctx.stop_any(pg_mode(mode)).await
}

async fn promote(ctx: &JobContext) -> JobResult {
    let inst = &ctx.spec.instance;
    inst.promote(PROMOTE_TIMEOUT).await?;
    ctx.write_config(&inst.data_dir(), false, None)?;
    inst.reload().await?;
    Ok(())
}

async fn demote(ctx: &JobContext, mode: CoreStop) -> JobResult {
    ctx.stop_any(pg_mode(mode)).await?;
    ctx.write_config(&ctx.spec.instance.data_dir(), true, None)?;
    ctx.start_or_wait().await
}

async fn follow(ctx: &JobContext, leader: &MemberName) -> JobResult {
    let spec = &ctx.spec;
    let inst = &spec.instance;
    let up = ctx.peer(leader)?;
    ctx.ensure_own_slot_on(&up).await;
    let was_standby = inst.has_standby_signal();
    ctx.write_config(&inst.data_dir(), true, Some(up))?;
    if !inst.is_running() {
        return ctx.start_or_wait().await;
    }
    if was_standby && inst.bins.major >= 13 {
        // PostgreSQL 13+ re-reads primary_conninfo on reload: no restart needed.
        inst.reload().await?;
        return Ok(());
    }
    ctx.stop_any(StopMode::Fast).await?;
    ctx.start_or_wait().await
}

async fn rewind_from(ctx: &JobContext, from: &MemberName) -> JobResult {
    let spec = &ctx.spec;
    let inst = &spec.instance;
    let up = ctx.peer(from)?;
    if inst.is_running() {
        ctx.stop_any(StopMode::Fast).await?;
    }
    checkpoint_source(ctx, &up).await?;
    tracing::info!(
        "{}: pg_rewind from {from} ({}:{})",
        spec.name,
        up.host,
        up.port
    );
    let source = RewindSource {
        host: &up.host,
        port: up.port,
        superuser: &spec.superuser,
        passfile: &spec.passfile,
    };
    rewind(inst, &source, REWIND_TIMEOUT).await?;
    // pg_rewind copied the source's configuration files: put this member's back.
    ctx.write_config(&inst.data_dir(), true, Some(up.clone()))?;
    ctx.ensure_own_slot_on(&up).await;
    ctx.start_or_wait().await
}

/// A CHECKPOINT on the rewind source. Right after a promotion the source's control file still
/// names the old timeline until its first checkpoint completes, and pg_rewind, seeing both
/// sides on the same timeline, answers "no rewind required" and changes nothing: the member
/// then cannot stream the new timeline.
async fn checkpoint_source(ctx: &JobContext, up: &Upstream) -> JobResult {
    let spec = &ctx.spec;
    let client = spec.connect(&up.host, up.port, SQL_TIMEOUT).await?;
    tokio::time::timeout(CHECKPOINT_TIMEOUT, client.batch_execute("CHECKPOINT"))
        .await
        .map_err(|_| JobError::Refused("CHECKPOINT on the rewind source timed out".into()))?
        .map_err(|e| JobError::Refused(format!("CHECKPOINT on the rewind source: {e}")))?;
    Ok(())
}

/// How many moved-aside data directories a member keeps before it refuses to move another:
/// pgha never deletes one, and a member re-cloned again and again must not fill the disk.
pub const MAX_KEPT_ASIDE: usize = 2;

/// A fresh `data.old-<seconds>[-n]` name in `member_dir`, or a refusal when it already holds
/// [`MAX_KEPT_ASIDE`] of them (naming them, so the DBA can look and remove what is not needed).
pub fn aside_path(member_dir: &std::path::Path) -> Result<std::path::PathBuf, JobError> {
    let mut kept: Vec<String> = std::fs::read_dir(member_dir)
        .map_err(io("list the member directory"))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("data.old-"))
        .collect();
    kept.sort();
    if kept.len() >= MAX_KEPT_ASIDE {
        return Err(JobError::Refused(format!(
            "{} already keeps {} old data directories ({}); look at them, remove what you do not \
             need, and this member re-clones",
            member_dir.display(),
            kept.len(),
            kept.join(", ")
        )));
    }
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut aside = member_dir.join(format!("data.old-{stamp}"));
    let mut n = 1;
    while aside.exists() {
        aside = member_dir.join(format!("data.old-{stamp}-{n}"));
        n += 1;
    }
    Ok(aside)
}

async fn reclone(ctx: &JobContext, from: &MemberName, move_aside: bool) -> JobResult {
    let spec = &ctx.spec;
    let inst = &spec.instance;
    let up = ctx.peer(from)?;
    if inst.is_running() {
        ctx.stop_any(StopMode::Fast).await?;
    }
    inst.create_member_dir()?;
    let data = inst.data_dir();
    if data.exists() {
        if inst.is_initialized() {
            if !move_aside {
                return Err(JobError::Refused(format!(
                    "{} holds a data directory; refusing to overwrite it without moving it aside",
                    data.display()
                )));
            }
            let aside = aside_path(&inst.member_dir)?;
            tracing::warn!(
                "{}: moving the old data directory aside to {} before re-cloning (kept, not deleted)",
                spec.name,
                aside.display()
            );
            std::fs::rename(&data, &aside).map_err(io("move the old data directory aside"))?;
        } else {
            std::fs::remove_dir_all(&data)
                .map_err(io("remove an empty, uninitialised data directory"))?;
        }
    }
    let staging = inst.member_dir.join("data.partial");
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(io("remove an incomplete clone"))?;
    }
    ctx.ensure_own_slot_on(&up).await;
    tracing::info!("{}: cloning {from} with pg_basebackup", spec.name);
    let slot = slot_name(spec.name.as_str());
    let source = CloneSource {
        host: &up.host,
        port: up.port,
        replication_user: &spec.replication_user,
        passfile: &spec.passfile,
        slot: &slot,
    };
    let mut last_quarter = 0;
    let name = spec.name.clone();
    clone(inst, &source, &staging, CLONE_TIMEOUT, |p| {
        let quarter = (p.done_kb * 4).checked_div(p.total_kb).unwrap_or(0);
        if quarter > last_quarter {
            last_quarter = quarter;
            tracing::info!(
                "{name}: clone {}% ({} of {} kB)",
                quarter * 25,
                p.done_kb,
                p.total_kb
            );
        }
    })
    .await?;
    ctx.write_config(&staging, true, Some(up))?;
    std::fs::rename(&staging, &data).map_err(io("move the clone into place"))?;
    ctx.start_or_wait().await
}

#[cfg(test)]
mod tests {
    use super::{aside_path, MAX_KEPT_ASIDE};

    /// Issue 11: moved-aside data directories get unique names, and a member that already
    /// keeps two refuses to move a third (pgha deletes none: it stops and says which).
    #[test]
    fn old_data_directories_are_unique_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let first = aside_path(dir.path()).unwrap();
        std::fs::create_dir(&first).unwrap();
        let second = aside_path(dir.path()).unwrap();
        assert_ne!(first, second, "two moves in the same second");
        std::fs::create_dir(&second).unwrap();
        let err = aside_path(dir.path()).unwrap_err().to_string();
        let kept = format!("{MAX_KEPT_ASIDE} old data directories");
        assert!(err.contains(&kept) && err.contains("data.old-"), "{err}");
    }

    use super::is_zombie;

    #[test]
    fn an_exited_unreaped_child_is_a_zombie_until_reaped() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !is_zombie(pid) {
            assert!(
                std::time::Instant::now() < deadline,
                "never became a zombie"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        // A zombie still answers kill(pid, 0): that alone cannot tell a dead postmaster.
        let probe = std::process::Command::new("kill")
            .args(["-0", &pid.to_string()])
            .status()
            .unwrap();
        assert!(probe.success());
        child.wait().unwrap();
        assert!(!is_zombie(pid));
        assert!(!is_zombie(std::process::id() as i32));
    }
}
