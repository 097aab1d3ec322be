//! The long-running actions on the local PostgreSQL (jobs): dispatch, errors, and the short ones.
//!
//! Bootstrap, start, stop, promote, demote and follow are here; rewind and re-clone have
//! their own modules, as have the steps every job shares (`context`) and zombie reaping.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgha_core::{Action, JobFailure, MemberName, StartRole, StopMode as CoreStop};
use pgha_pg::conf::Upstream;
use pgha_pg::{PgError, StopMode};

use crate::spec::{Dynamic, NodeSpec};

mod context;
mod promotion;
mod reaping;
mod reclone;
mod rewind;

use reclone::reclone;
pub use reclone::{aside_path, MAX_KEPT_ASIDE};
use rewind::rewind_from;

const START_TIMEOUT: Duration = Duration::from_secs(120);
const SQL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a stopped stream's WAL receiver may take to end, and how often it is looked for.
const STREAM_STOP_TIMEOUT: Duration = Duration::from_secs(2);
const STREAM_STOP_POLL: Duration = Duration::from_millis(20);

/// What a job needs besides the action: the member, its peers' addresses, the sync setting.
#[derive(Clone)]
pub struct JobContext {
    pub spec: Arc<NodeSpec>,
    pub peers: BTreeMap<MemberName, Upstream>,
    pub dynamic: Dynamic,
    /// Set when the agent cancelled this job for another: it starts no postmaster any more.
    pub cancelled: crate::job_slot::Cancelled,
}

/// Runs one job action to completion.
pub async fn run_job(ctx: JobContext, action: Action) -> Result<(), JobFailure> {
    let result = match &action {
        Action::Bootstrap => bootstrap(&ctx).await,
        Action::StartPostgres(role) => start(&ctx, role).await,
        Action::StopPostgres(mode) => stop(&ctx, *mode).await,
        Action::RestartPostgres(role) => restart(&ctx, role).await,
        Action::Promote { newest_timeline } => promote(&ctx, *newest_timeline).await,
        Action::Demote { mode, .. } => demote(&ctx, *mode).await,
        Action::Follow { leader } => follow(&ctx, leader).await,
        Action::StopStreaming => stop_streaming(&ctx).await,
        Action::Rewind { from } => rewind_from(&ctx, from).await,
        Action::Reclone { from, move_aside } => reclone(&ctx, from, *move_aside).await,
        other => return Err(JobFailure::Failed(format!("{other:?} is not a job"))),
    };
    result.map_err(|e| match e {
        JobError::Vetoed(ended) => JobFailure::Vetoed(ended.to_string()),
        no_room @ (JobError::NoRoom { .. } | JobError::FullForRewind { .. }) => {
            JobFailure::NoRoom(no_room.to_string())
        }
        unreachable @ JobError::RewindSourceUnreachable { .. } => {
            JobFailure::SourceUnreachable(unreachable.to_string())
        }
        late @ JobError::DeadlinePassed => JobFailure::NotBegun(late.to_string()),
        other => JobFailure::Failed(other.to_string()),
    })
}

type JobResult = Result<(), JobError>;

/// Why a job failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Pg(#[from] PgError),
    #[error("{0}")]
    Refused(String),
    /// Cancelled for another job before it could start PostgreSQL.
    #[error("cancelled before starting PostgreSQL")]
    Cancelled,
    /// The `pre_promote` callback did not exit 0 in time.
    #[error("vetoed by the pre_promote callback: {0}")]
    Vetoed(crate::callbacks::Ended),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    /// A re-clone keeps the old data directory beside the new copy: not begun (the data left
    /// in place) where the file system lacks the room for both.
    #[error(
        "not re-cloning: {dir} has {} MiB left, and a copy beside the data it keeps takes about \
         {} MiB; the data directory stays in place (make room: this member rewinds or \
         re-clones then)",
        available >> 20,
        needed >> 20,
        dir = dir.display()
    )]
    NoRoom {
        dir: std::path::PathBuf,
        available: u64,
        needed: u64,
    },
    /// The rewind source could not be reached, or not checkpointed, before pg_rewind began:
    /// nothing here was changed and no divergence shown; the rewind is tried again.
    #[error(
        "the rewind source {from} could not be reached ({source}): nothing here was changed, \
         and an unreachable source is no divergence: the rewind is tried again, no re-clone"
    )]
    RewindSourceUnreachable {
        from: MemberName,
        source: Box<JobError>,
    },
    /// Not promoted: the fencing deadline armed for this promotion had passed by the time it
    /// was to be asked (the agent paused or slowed after deciding it): the supervisor would
    /// kill a primary at once, and the lease it was decided on may be gone.
    #[error("not promoted: the fencing deadline armed for it passed before it was asked")]
    DeadlinePassed,
    /// The postmaster stopped while it was promoting.
    #[error("PostgreSQL stopped while promoting (its log says why)")]
    StoppedWhilePromoting,
    /// Promoting, its replay did not move on for `secs`.
    #[error(
        "the promotion made no progress for {secs} s (replay stuck at {replayed}): a stalled \
         disk or process"
    )]
    PromotionStalled { replayed: String, secs: u64 },
    /// A rewind failed with the member's file system full: no divergence, the data stays.
    #[error(
        "pg_rewind could not run with {dir} full ({} MiB left): {failure}; a full disk is no \
         divergence: the data directory stays in place (make room: this member rewinds then)",
        available >> 20,
        dir = dir.display()
    )]
    FullForRewind {
        dir: std::path::PathBuf,
        available: u64,
        failure: String,
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
    ctx.write_config(&staging, false, None).await?;
    std::fs::rename(&staging, inst.data_dir())
        .map_err(io("move the new data directory into place"))?;
    ctx.start_postgres().await?;
    let deadline = Instant::now() + START_TIMEOUT;
    let client = loop {
        match spec.connect_local(SQL_TIMEOUT).await {
            Ok(c) => break c,
            Err(e) if Instant::now() > deadline => return Err(e.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    ctx.ensure_replication_role_on(&client).await
}

async fn start(ctx: &JobContext, role: &StartRole) -> JobResult {
    let data = ctx.spec.instance.data_dir();
    match role {
        StartRole::Primary => {
            ctx.write_config(&data, false, None).await?;
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
            ctx.write_config(&data, true, up).await?;
        }
    }
    ctx.start_standby().await
}

async fn stop(ctx: &JobContext, mode: CoreStop) -> JobResult {
    ctx.stop_any(pg_mode(mode)).await
}

/// Stops PostgreSQL (fast: sessions are ended, the shutdown checkpoint written and sent to
/// the standbys) and starts it again as `role`.
async fn restart(ctx: &JobContext, role: &StartRole) -> JobResult {
    tracing::info!("{}: restarting PostgreSQL in place", ctx.spec.name);
    ctx.stop_any(StopMode::Fast).await?;
    start(ctx, role).await
}

async fn promote(ctx: &JobContext, newest_timeline: pgha_core::Timeline) -> JobResult {
    let inst = &ctx.spec.instance;
    promotion::deadline_ahead(ctx)?;
    if let Some(script) = &ctx.spec.callbacks.pre_promote {
        let call = crate::callbacks::Call {
            script: script.clone(),
            action: "pre_promote",
            role: crate::callbacks::Role::Standby,
        };
        match ctx.spec.callback_runner().run(&call).await {
            crate::callbacks::Ended::Succeeded { .. } => {}
            refused => return Err(JobError::Vetoed(refused)),
        }
    }
    let reserved = pgha_pg::timelines::reserve_through(inst, newest_timeline.0).await?;
    if !reserved.is_empty() {
        tracing::warn!(
            "{}: timelines {reserved:?} were started by another member and never reached this \
             one: placeholders laid so that this promotion starts a newer timeline",
            ctx.spec.name,
        );
    }
    // A promotion that fails leaves its placeholders: PostgreSQL, still running, may yet end
    // its recovery and must then start a timeline above them. They go before the next start.
    promotion::promote_and_wait(ctx).await?;
    rewind::checkpoint_after_promotion(ctx.spec.clone());
    ctx.write_config(&inst.data_dir(), false, None).await?;
    inst.reload().await?;
    Ok(())
}

async fn demote(ctx: &JobContext, mode: CoreStop) -> JobResult {
    ctx.stop_any(pg_mode(mode)).await?;
    ctx.write_config(&ctx.spec.instance.data_dir(), true, None)
        .await?;
    ctx.start_standby().await
}

async fn follow(ctx: &JobContext, leader: &MemberName) -> JobResult {
    let spec = &ctx.spec;
    let inst = &spec.instance;
    let up = ctx.peer(leader)?;
    ctx.ensure_own_slot_on(&up).await;
    let was_standby = inst.has_standby_signal();
    ctx.write_config(&inst.data_dir(), true, Some(up)).await?;
    if !inst.is_running() {
        return ctx.start_standby().await;
    }
    if was_standby && inst.bins.major >= 13 {
        // PostgreSQL 13+ re-reads primary_conninfo on reload: no restart needed.
        inst.reload().await?;
        return Ok(());
    }
    ctx.stop_any(StopMode::Fast).await?;
    ctx.start_standby().await
}

/// Takes `primary_conninfo` away (PostgreSQL 13+ applies it on reload: the startup process,
/// woken by the signal, ends its WAL receiver and starts none) and waits until no receiver
/// runs, so that nothing more is received, flushed or acknowledged here. The first look comes
/// a poll after the reload: `pg_ctl reload` only signals the postmaster, which passes it on.
async fn stop_streaming(ctx: &JobContext) -> JobResult {
    let inst = &ctx.spec.instance;
    if !inst.is_running() || !inst.has_standby_signal() {
        return Err(JobError::Refused(
            "not a running standby: no stream to stop".into(),
        ));
    }
    ctx.write_config(&inst.data_dir(), true, None).await?;
    inst.reload().await?;
    let name = ctx.spec.name.as_str();
    let give_up = Instant::now() + STREAM_STOP_TIMEOUT;
    let client = ctx.spec.connect_local(SQL_TIMEOUT).await?;
    loop {
        tokio::time::sleep(STREAM_STOP_POLL).await;
        let runs = pgha_pg::probe::wal_receiver_runs(&client, name);
        let runs = tokio::time::timeout(SQL_TIMEOUT, runs)
            .await
            .map_err(|_| JobError::Refused("the WAL receiver query timed out".into()))??;
        if !runs {
            return Ok(());
        }
        if Instant::now() >= give_up {
            return Err(JobError::Refused(format!(
                "the WAL receiver still runs {} s after primary_conninfo was taken away \
                 (PostgreSQL ends it once replay has caught up with what it received)",
                STREAM_STOP_TIMEOUT.as_secs()
            )));
        }
    }
}
