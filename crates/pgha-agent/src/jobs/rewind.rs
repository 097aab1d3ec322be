//! Rejoining through pg_rewind: stop, checkpoint the source, rewind, configure, start.

use std::time::Duration;

use pgha_core::MemberName;
use pgha_pg::conf::Upstream;
use pgha_pg::rewind::rewind;
use pgha_pg::StopMode;

use super::{JobContext, JobError, JobResult, SQL_TIMEOUT};

const REWIND_TIMEOUT: Duration = Duration::from_secs(3600);
const CHECKPOINT_TIMEOUT: Duration = Duration::from_secs(120);

pub(super) async fn rewind_from(ctx: &JobContext, from: &MemberName) -> JobResult {
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
    let source = ctx.source(&up, &spec.superuser);
    rewind(inst, &source, REWIND_TIMEOUT).await?;
    // pg_rewind copied the source's configuration files: put this member's back (with its
    // standby.signal); only then is the directory whole again.
    ctx.write_config(&inst.data_dir(), true, Some(up.clone()))?;
    inst.clear_rewind_marker()?;
    ctx.ensure_own_slot_on(&up).await;
    ctx.start_standby().await
}

/// A CHECKPOINT on the rewind source. Right after a promotion the source's control file still
/// names the old timeline until its first checkpoint completes, and pg_rewind, seeing both
/// sides on the same timeline, answers "no rewind required" and changes nothing: the member
/// then cannot stream the new timeline.
async fn checkpoint_source(ctx: &JobContext, up: &Upstream) -> JobResult {
    let spec = &ctx.spec;
    let client = spec.connect(up, SQL_TIMEOUT).await?;
    tokio::time::timeout(CHECKPOINT_TIMEOUT, client.batch_execute("CHECKPOINT"))
        .await
        .map_err(|_| JobError::Refused("CHECKPOINT on the rewind source timed out".into()))?
        .map_err(|e| JobError::Refused(format!("CHECKPOINT on the rewind source: {e}")))?;
    Ok(())
}
