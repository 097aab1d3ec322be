//! Watching a promotion through: asked of PostgreSQL, done once it is writable, failed only
//! when its replay stops moving on (a slow promotion is waited for, a stalled one is not).

use std::time::{Duration, Instant};

use tokio_postgres::Client;

use super::{JobContext, JobError, JobResult, SQL_TIMEOUT};

/// How long a promotion may go without its replay moving on before it counts as failed. The
/// WAL a standby received but has not replayed yet is replayed before it leaves recovery:
/// minutes where the backlog is large, and no reason to give up while it shrinks.
const PROMOTION_STALL: Duration = Duration::from_secs(60);

/// How often the promotion is looked at (`pg_ctl promote` looks every 100 ms).
const POLL: Duration = Duration::from_millis(20);

/// Asks PostgreSQL to promote, then waits until it takes writes. Fails if the postmaster stops
/// meanwhile, or if replay does not move on for [`PROMOTION_STALL`] (a stalled disk, a
/// paused process): then the promotion may still complete later, which the core guards
/// against before it lets go of the lease.
pub(super) async fn promote_and_wait(ctx: &JobContext) -> JobResult {
    let inst = &ctx.spec.instance;
    deadline_ahead(ctx)?;
    inst.request_promotion().await?;
    let mut client: Option<Client> = None;
    let mut replayed: Option<String> = None;
    let mut moved_at = Instant::now();
    loop {
        if !inst.is_running() {
            return Err(JobError::StoppedWhilePromoting);
        }
        if client.as_ref().is_none_or(|c| c.is_closed()) {
            client = ctx.spec.connect_local(SQL_TIMEOUT).await.ok();
        }
        if let Some(c) = &client {
            let query = "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text";
            match tokio::time::timeout(SQL_TIMEOUT, c.query_one(query, &[])).await {
                Ok(Ok(row)) if !row.get::<_, bool>(0) => return Ok(()),
                Ok(Ok(row)) => {
                    let now: Option<String> = row.get(1);
                    if now != replayed {
                        replayed = now;
                        moved_at = Instant::now();
                    }
                }
                _ => client = None,
            }
        }
        if moved_at.elapsed() > PROMOTION_STALL {
            return Err(JobError::PromotionStalled {
                replayed: replayed.unwrap_or_else(|| "unknown".into()),
                secs: PROMOTION_STALL.as_secs(),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A promotion decided on a lease and carried out later (the agent paused or slowed after
/// deciding it) goes on only while the deadline armed for it is ahead: past it, the lease it
/// was decided on may be gone. A disarmed deadline is the maintenance mode's.
pub(super) fn deadline_ahead(ctx: &JobContext) -> JobResult {
    let armed = ctx.spec.instance.lease_file().read();
    if armed.is_some_and(|deadline| deadline <= pgha_pg::lease_file::boot_clock_ms()) {
        return Err(JobError::DeadlinePassed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by review: a promotion decided on a lease was asked of PostgreSQL whenever the
    /// job got to it, a deadline that had passed meanwhile (the agent paused after deciding)
    /// included: PostgreSQL turned writable for up to a supervisor's poll with no lease. It
    /// is not asked then, and the core hears it was not begun.
    #[tokio::test]
    async fn a_promotion_is_not_asked_past_the_deadline_armed_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let spec = std::sync::Arc::new(crate::test_spec::spec(dir.path()));
        spec.instance.create_member_dir().unwrap();
        let lease = spec.instance.lease_file();
        lease
            .arm(pgha_pg::lease_file::boot_clock_ms().saturating_sub(1))
            .unwrap();
        let ctx = JobContext {
            spec,
            peers: Default::default(),
            dynamic: Default::default(),
            cancelled: Default::default(),
        };
        let result = crate::jobs::run_job(
            ctx,
            pgha_core::Action::Promote {
                newest_timeline: pgha_core::Timeline(1),
            },
        )
        .await;
        assert!(
            matches!(result, Err(pgha_core::JobFailure::NotBegun(_))),
            "{result:?}"
        );
    }
}
