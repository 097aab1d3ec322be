//! Rejoining through pg_rewind: stop, checkpoint the source, rewind, configure, start; and the
//! checkpoint after a promotion that keeps a primary crashed soon after it rewindable.

use std::time::Duration;

use pgha_core::MemberName;
use pgha_pg::conf::Upstream;
use pgha_pg::rewind::rewind;
use pgha_pg::StopMode;

use super::{JobContext, JobError, JobResult, SQL_TIMEOUT};
use crate::spec::NodeSpec;

const REWIND_TIMEOUT: Duration = Duration::from_secs(3600);
const CHECKPOINT_TIMEOUT: Duration = Duration::from_secs(120);

pub(super) async fn rewind_from(ctx: &JobContext, from: &MemberName) -> JobResult {
    let spec = &ctx.spec;
    let inst = &spec.instance;
    let up = ctx.peer(from)?;
    if inst.is_running() {
        ctx.stop_any(StopMode::Fast).await?;
    }
    checkpoint_source(ctx, &up)
        .await
        .map_err(|e| JobError::RewindSourceUnreachable {
            from: from.clone(),
            source: Box::new(e),
        })?;
    tracing::info!(
        "{}: pg_rewind from {from} ({}:{})",
        spec.name,
        up.host,
        up.port
    );
    let source = ctx.source(&up, &spec.superuser);
    if let Err(e) = rewind(inst, &source, REWIND_TIMEOUT).await {
        return Err(full_or(inst, e.into()).await);
    }
    // pg_rewind copied the source's configuration files: put this member's back (with its
    // standby.signal); only then is the directory whole again.
    ctx.write_config(&inst.data_dir(), true, Some(up.clone()))?;
    inst.clear_rewind_marker()?;
    ctx.ensure_own_slot_on(&up).await;
    ctx.start_standby().await
}

/// Below this much room (a WAL segment) a rewind's failure is put down to a full file system.
const ROOM_FOR_A_REWIND: u64 = 16 << 20;

/// `failure` of a rewind, unless the member's file system is full: then a full disk, which is
/// no divergence (crash recovery cannot even write its lock file), so that the data stays in
/// place instead of being moved aside for a re-clone once room is made.
async fn full_or(inst: &pgha_pg::Instance, failure: JobError) -> JobError {
    let dir = inst.member_dir.clone();
    let measured = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || pgha_pg::room::available_bytes(&dir)
    })
    .await;
    match measured {
        Ok(Ok(available)) if available < ROOM_FOR_A_REWIND => JobError::FullForRewind {
            dir,
            available,
            failure: failure.to_string(),
        },
        _ => failure,
    }
}

/// A CHECKPOINT on the rewind source. Right after a promotion the source's control file still
/// names the old timeline until its first checkpoint completes, and pg_rewind, seeing both
/// sides on the same timeline, answers "no rewind required" and changes nothing: the member
/// then cannot stream the new timeline.
async fn checkpoint_source(ctx: &JobContext, up: &Upstream) -> JobResult {
    let client = ctx.spec.connect(up, SQL_TIMEOUT).await?;
    checkpoint(&client, "the rewind source").await
}

/// An immediate CHECKPOINT through `client` (on `whom`, for errors), bounded.
async fn checkpoint(client: &tokio_postgres::Client, whom: &str) -> JobResult {
    tokio::time::timeout(CHECKPOINT_TIMEOUT, client.batch_execute("CHECKPOINT"))
        .await
        .map_err(|_| JobError::Refused(format!("CHECKPOINT on {whom} timed out")))?
        .map_err(|e| JobError::Refused(format!("CHECKPOINT on {whom}: {e}")))?;
    Ok(())
}

/// An immediate CHECKPOINT on this member just promoted, in the background (it writes no
/// client data; the promotion does not wait for it). Until the first checkpoint on the new
/// timeline completes, the control file still names the old one, and PostgreSQL only asks for
/// a spread checkpoint after a promotion (minutes long): should this primary crash meanwhile,
/// pg_rewind (PostgreSQL 15 and older) reads the old timeline from it, fails, and the member
/// has to be re-cloned.
pub(super) fn checkpoint_after_promotion(spec: std::sync::Arc<NodeSpec>) {
    tokio::spawn(async move {
        let done = async {
            let client = spec.connect_local(SQL_TIMEOUT).await?;
            checkpoint(&client, "the new primary").await
        };
        match done.await {
            Ok(()) => tracing::debug!("{}: checkpoint after the promotion done", spec.name),
            Err(e) => tracing::warn!(
                "{}: checkpoint after the promotion failed ({e}): until PostgreSQL's own one \
                 completes, a crash would leave this member to be re-cloned, not rewound",
                spec.name
            ),
        }
    });
}
