//! pg_rewind: resynchronise a former primary's data directory with the new primary, finishing
//! crash recovery first when the old primary did not shut down cleanly.

use std::time::Duration;

use crate::command::run;
use crate::error::{PgError, Result};
use crate::instance::Instance;
use crate::source::SourceServer;

/// Runs pg_rewind on a stopped instance from `source`, a running primary reached as the
/// superuser. pg_rewind copies the source's configuration files,
/// so the caller must write pgha's own configuration again afterwards.
///
/// The data directory is marked ([`Instance::rewind_marker`], written and synced first) for
/// as long as pg_rewind may have changed part of it: a rewind that fails or is cut short
/// leaves the mark, and the member re-clones instead of starting that directory. The mark
/// stays after a rewind that succeeded too: pg_rewind copied the source's configuration
/// files and wrote no `standby.signal`, so the caller clears it
/// ([`Instance::clear_rewind_marker`]) once the member's own configuration is back.
pub async fn rewind(
    instance: &Instance,
    source: &SourceServer<'_>,
    timeout: Duration,
) -> Result<()> {
    shut_down_cleanly_for_rewind(instance, timeout).await?;
    let conninfo = format!(
        "{} dbname=postgres passfile={} connect_timeout=5",
        source.conninfo(),
        crate::conf::quote_conninfo(&source.passfile.to_string_lossy()),
    );
    let mut cmd = instance
        .run_as
        .command(instance.bins.program("pg_rewind"), &instance.member_dir);
    cmd.arg(format!("--target-pgdata={}", instance.data_dir().display()))
        .arg(format!("--source-server={conninfo}"))
        .arg("--progress");
    run(cmd, "pg_rewind", timeout).await?;
    Ok(())
}

/// Marks the data directory as being rewound, then leaves it cleanly shut down, as pg_rewind
/// requires: crash recovery in single-user mode when it was not. PostgreSQL refuses standby
/// mode in single-user mode ("standby mode is not supported by single-user servers"), so a
/// standby's `standby.signal` and `recovery.signal` go first; the member's configuration,
/// `standby.signal` with it, is written again after the rewind, and until then the mark keeps
/// the directory from being started or seeded (before: every rewind of a standby that had not
/// shut down cleanly failed, and the member was re-cloned instead).
pub async fn shut_down_cleanly_for_rewind(instance: &Instance, timeout: Duration) -> Result<()> {
    crate::beneath::write(
        &instance.rewind_marker(),
        b"pg_rewind began here and has not finished\n",
        0o600,
        &instance.run_as,
    )?;
    let state = instance.controldata().await?.cluster_state;
    if state == "shut down" || state == "shut down in recovery" {
        return Ok(());
    }
    tracing::info!(
        "{}: data directory is `{state}`; finishing crash recovery before pg_rewind",
        instance.name
    );
    for signal in ["standby.signal", "recovery.signal"] {
        let path = instance.data_dir().join(signal);
        if crate::beneath::is_file(&path, &instance.run_as) {
            crate::beneath::remove(&path, &instance.run_as)?;
        }
    }
    finish_crash_recovery(instance, timeout).await
}

/// Starts PostgreSQL in single-user mode on the data directory and exits at once, so crash
/// recovery runs and the cluster is left cleanly shut down (pg_rewind's requirement).
pub async fn finish_crash_recovery(instance: &Instance, timeout: Duration) -> Result<()> {
    let mut cmd = instance
        .run_as
        .command(instance.bins.program("postgres"), &instance.member_dir);
    cmd.arg("--single")
        .arg("-D")
        .arg(instance.data_dir())
        .args([
            "-c",
            "archive_mode=off",
            "-c",
            "hot_standby=off",
            "postgres",
        ]);
    cmd.stdin(std::process::Stdio::null());
    let output = tokio::time::timeout(timeout, cmd.output())
        .await
        .map_err(|_| PgError::Timeout {
            what: "single-user crash recovery".into(),
            seconds: timeout.as_secs(),
        })?
        .map_err(|e| PgError::io("run postgres --single", e))?;
    if !output.status.success() {
        return Err(PgError::CommandFailed {
            program: "postgres --single".into(),
            status: output.status.to_string(),
            output_tail: crate::command::tail(&String::from_utf8_lossy(&output.stderr), 10),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A standby stopped as by a crash (its state "in archive recovery", `standby.signal`
    /// present) is left cleanly shut down and marked, ready for pg_rewind (before: single-user
    /// crash recovery refused standby mode and the rewind failed).
    #[tokio::test]
    async fn a_standby_that_crashed_is_shut_down_cleanly_for_a_rewind() {
        let standby = crate::test_standby::TestStandby::new("n2").await;
        let inst = &standby.inst;
        standby.start().await;
        standby.pg_ctl(&["-m", "immediate", "stop"]).await;
        assert_eq!(
            inst.controldata().await.unwrap().cluster_state,
            "in archive recovery"
        );

        shut_down_cleanly_for_rewind(inst, Duration::from_secs(120))
            .await
            .expect("crash recovery of a standby's data directory");
        assert_eq!(inst.controldata().await.unwrap().cluster_state, "shut down");
        assert!(inst.rewind_incomplete(), "the directory is not marked");
        assert!(!inst.has_standby_signal());
    }
}
