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
    let control = instance.controldata().await?;
    if let Some(refused) = crash_recovery_refusal(&instance.name, &control) {
        return Err(refused);
    }
    let state = control.cluster_state;
    if is_shut_down_cleanly(&state) {
        return mark_rewind_under_way(instance);
    }
    tracing::info!(
        "{}: data directory is `{state}`; finishing crash recovery before pg_rewind",
        instance.name
    );
    let signals: Vec<std::path::PathBuf> = ["standby.signal", "recovery.signal"]
        .into_iter()
        .map(|signal| instance.data_dir().join(signal))
        .filter(|path| crate::beneath::is_file(path, &instance.run_as))
        .collect();
    if signals.is_empty() {
        finish_crash_recovery(instance, timeout).await?;
        return mark_rewind_under_way(instance);
    }
    // Without its signals the directory would start as a primary: marked for as long as
    // they are gone.
    mark_rewind_under_way(instance)?;
    for path in &signals {
        crate::beneath::remove(path, &instance.run_as)?;
    }
    let recovered = finish_crash_recovery(instance, timeout).await;
    if recovered.is_err() {
        // Nothing of pg_rewind ran (a full disk, say: no divergence shown): the signals go
        // back, and with them the mark; the rewind is tried again later. Where they cannot
        // be put back, the mark stays and the member is re-cloned.
        let restored = signals
            .iter()
            .all(|path| crate::beneath::write(path, b"", 0o600, &instance.run_as).is_ok());
        if restored {
            instance.clear_rewind_marker()?;
        }
    }
    recovered
}

/// Writes the mark (synced) that says pg_rewind may have changed part of the directory.
fn mark_rewind_under_way(instance: &Instance) -> Result<()> {
    crate::beneath::write(
        &instance.rewind_marker(),
        b"pg_rewind began here and has not finished\n",
        0o600,
        &instance.run_as,
    )
}

fn is_shut_down_cleanly(state: &str) -> bool {
    state == "shut down" || state == "shut down in recovery"
}

/// Why crash recovery (in single-user mode, so without standby mode) must not run on a data
/// directory that was not shut down cleanly: a standby that replayed past a timeline switch
/// after its last restartpoint owes WAL of the newer timeline, which crash recovery (on the
/// restartpoint's timeline) never reads; it would end at the switch, forget the minimum
/// recovery point, and leave pages changed after it that pg_rewind, reading the WAL of the
/// older timeline only, would not copy back. Such a directory is re-cloned instead.
fn crash_recovery_refusal(
    member: &str,
    control: &crate::controldata::ControlData,
) -> Option<PgError> {
    let owes_newer_timeline = control.min_recovery_timeline > control.checkpoint_timeline;
    (!is_shut_down_cleanly(&control.cluster_state) && owes_newer_timeline).then(|| {
        PgError::CrashRecoveryWouldStopShort {
            member: member.to_string(),
            checkpoint_timeline: control.checkpoint_timeline,
            min_recovery_timeline: control.min_recovery_timeline,
        }
    })
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

    fn control(state: &str, checkpoint_timeline: u32, min_recovery_timeline: u32) -> String {
        format!(
            "Database cluster state:               {state}\n\
             Latest checkpoint's TimeLineID:       {checkpoint_timeline}\n\
             Min recovery ending loc's timeline:   {min_recovery_timeline}\n"
        )
    }

    /// Found by review: a standby that crashed after it replayed past a timeline switch (its
    /// last restartpoint on timeline 1, its minimum recovery point on timeline 2) went through
    /// crash recovery on timeline 1, which ends at the switch with pages of timeline 2 on disk;
    /// pg_rewind would then not copy them back. Refused, before anything is changed.
    #[test]
    fn crash_recovery_is_refused_to_a_standby_owing_wal_of_a_newer_timeline() {
        let parse = crate::controldata::ControlData::parse;
        let refused = crash_recovery_refusal("n2", &parse(&control("in archive recovery", 1, 2)));
        assert!(
            matches!(
                refused,
                Some(PgError::CrashRecoveryWouldStopShort {
                    checkpoint_timeline: 1,
                    min_recovery_timeline: 2,
                    ..
                })
            ),
            "{refused:?}"
        );
        for (state, checkpoint, min) in [
            ("in archive recovery", 2, 2),
            ("in archive recovery", 1, 0),
            ("in production", 3, 0),
            ("shut down in recovery", 1, 2),
        ] {
            let control = parse(&control(state, checkpoint, min));
            assert!(
                crash_recovery_refusal("n2", &control).is_none(),
                "{state} {checkpoint} {min}"
            );
        }
    }

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

    /// Found by the fault test `disk_full::leader_data_disk_full`: crash recovery that could
    /// not run (there, a full disk: "could not write lock file") left the directory marked as
    /// being rewound, so the member was re-cloned, its data moved aside, instead of rewound
    /// once there was room. Nothing of pg_rewind ran: neither the mark nor a missing
    /// `standby.signal` stays. (A directory named `postmaster.pid` stands in for the full disk.)
    #[tokio::test]
    async fn crash_recovery_that_fails_leaves_no_mark_and_the_signals_in_place() {
        let standby = crate::test_standby::TestStandby::new("n2").await;
        let inst = &standby.inst;
        standby.start().await;
        standby.pg_ctl(&["-m", "immediate", "stop"]).await;
        let lock = inst.data_dir().join("postmaster.pid");
        let _ = std::fs::remove_file(&lock); // an immediate stop may leave it
        std::fs::create_dir(&lock).unwrap();

        let failed = shut_down_cleanly_for_rewind(inst, Duration::from_secs(120)).await;
        assert!(failed.is_err(), "crash recovery ran without its lock file");
        assert!(!inst.rewind_incomplete(), "marked, though no rewind ran");
        assert!(inst.has_standby_signal(), "its standby.signal is gone");

        std::fs::remove_dir(&lock).unwrap();
        shut_down_cleanly_for_rewind(inst, Duration::from_secs(120))
            .await
            .expect("crash recovery once the way is clear");
        assert_eq!(inst.controldata().await.unwrap().cluster_state, "shut down");
        assert!(inst.rewind_incomplete());
    }
}
