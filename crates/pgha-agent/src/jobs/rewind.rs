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
    let room_before = room(inst).await;
    if let Err(e) = rewind(inst, &source, REWIND_TIMEOUT).await {
        let room_after = room(inst).await;
        return Err(match full_at_some_point(room_before, room_after) {
            Some(available) => JobError::FullForRewind {
                dir: inst.member_dir.clone(),
                available,
                failure: e.to_string(),
            },
            None => e.into(),
        });
    }
    // pg_rewind copied the source's configuration files: put this member's back (with its
    // standby.signal); only then is the directory whole again.
    ctx.write_config(&inst.data_dir(), true, Some(up.clone()))
        .await?;
    inst.clear_rewind_marker()?;
    ctx.ensure_own_slot_on(&up).await;
    ctx.start_standby().await
}

/// Below this much room (a WAL segment) a rewind's failure is put down to a full file system.
const ROOM_FOR_A_REWIND: u64 = 16 << 20;

/// The room left on the member's file system, if it can be measured.
async fn room(inst: &pgha_pg::Instance) -> Option<u64> {
    let dir = inst.member_dir.clone();
    tokio::task::spawn_blocking(move || pgha_pg::room::available_bytes(&dir))
        .await
        .ok()?
        .ok()
}

/// The room that makes a rewind's failure a full disk's, not a divergence's: the member's
/// file system was full when the rewind began or when it failed (crash recovery cannot even
/// write its lock file). Measured on both sides, since room may be made while it runs (seen
/// in the whole suite: freed between the failure and a single measure after it, and the
/// intact data moved aside for a re-clone).
fn full_at_some_point(before: Option<u64>, after: Option<u64>) -> Option<u64> {
    [before, after]
        .into_iter()
        .flatten()
        .filter(|available| *available < ROOM_FOR_A_REWIND)
        .min()
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

#[cfg(test)]
mod tests {
    use super::{full_at_some_point, ROOM_FOR_A_REWIND};

    #[test]
    fn a_disk_full_when_the_rewind_began_or_failed_counts_as_full() {
        let (full, room) = (Some(0), Some(ROOM_FOR_A_REWIND * 4));
        assert_eq!(full_at_some_point(full, full), Some(0));
        // room made while it ran (the whole suite's race): still a full disk's failure
        assert_eq!(full_at_some_point(full, room), Some(0));
        assert_eq!(full_at_some_point(room, full), Some(0));
        assert_eq!(full_at_some_point(room, room), None);
        assert_eq!(full_at_some_point(None, None), None);
    }
}
