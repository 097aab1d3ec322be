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
    let state = instance.controldata().await?.cluster_state;
    if state != "shut down" && state != "shut down in recovery" {
        tracing::info!(
            "{}: data directory is `{state}`; finishing crash recovery before pg_rewind",
            instance.name
        );
        finish_crash_recovery(instance, timeout).await?;
    }
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
    crate::beneath::write(
        &instance.rewind_marker(),
        b"pg_rewind began here and has not finished\n",
        0o600,
        &instance.run_as,
    )?;
    run(cmd, "pg_rewind", timeout).await?;
    Ok(())
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
