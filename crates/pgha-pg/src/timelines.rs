//! Timelines a promotion must not reuse: placeholder history files for those PostgreSQL does
//! not know of, which it counts when it picks the timeline a promotion starts.

use crate::beneath::Found;
use crate::error::Result;
use crate::instance::Instance;

/// The name of timeline `tli`'s history file in `pg_wal`.
fn history_file(tli: u32) -> String {
    format!("{tli:08X}.history")
}

/// Makes PostgreSQL's next promotion start a timeline above `newest`. PostgreSQL takes one
/// above the newest timeline whose history file it finds, counting up without a gap from the
/// one it recovers on; a member cut off while another was promoted never received that
/// timeline's history, and would start a timeline of the same number (two histories that
/// pg_rewind cannot tell apart). For each timeline it does not know of up to `newest`, a
/// history file holding only a comment: its history names no parent, so a recovery under way
/// never follows it ("not a child of database system timeline"). Once the promotion has
/// started a newer timeline the placeholders stay: a standby that streams from here asks for
/// the history of every timeline between its own and the primary's, and is sent them. A
/// promotion that did not happen leaves them above every real timeline, where a standby
/// starting up would take the newest as its target and wait for that timeline's WAL forever;
/// [`release_unused`] removes those before PostgreSQL starts again (not while it runs: a
/// stalled promotion may yet end, and must start above them). Returns the timelines reserved.
pub async fn reserve_through(instance: &Instance, newest: u32) -> Result<Vec<u32>> {
    let wal = instance.data_dir().join("pg_wal");
    let mut known = instance.controldata().await?.checkpoint_timeline.max(1);
    // a history that cannot be looked at fails the promotion before it begins, rather than
    // being taken for none and a placeholder laid where it may be
    while has_history(&wal, known + 1, instance)? {
        known += 1;
    }
    let mut reserved = Vec::new();
    for tli in known + 1..=newest {
        let text = format!(
            "{PLACEHOLDER_MARK} timeline {tli} belongs to a history this member never received (another \
             member's promotion); this file only keeps a promotion here from starting another \
             timeline {tli}\n"
        );
        // never over a history received since it was looked for
        let laid = crate::beneath::write_new(
            &wal.join(history_file(tli)),
            text.as_bytes(),
            0o600,
            &instance.run_as,
        )?;
        if laid {
            reserved.push(tli);
        }
    }
    Ok(reserved)
}

/// Whether `wal` holds a history file of `tli` (a regular file, reached without a symlink).
/// Whether `wal` holds a history file of `tli`, reached without a symlink; an error when that
/// could not be looked at. A `pg_wal` that is itself a symlink (WAL on a disk of its own) is
/// looked through, which a look may do (nothing is written through it).
fn has_history(wal: &std::path::Path, tli: u32, instance: &Instance) -> Result<bool> {
    let path = wal.join(history_file(tli));
    match crate::beneath::found(&path, &instance.run_as) {
        Found::File | Found::NotAFile => Ok(true),
        Found::Absent => Ok(false),
        Found::Unknown(_) if std::fs::symlink_metadata(wal).is_ok_and(|m| m.is_symlink()) => {
            match std::fs::symlink_metadata(&path) {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(crate::PgError::io(format!("look at {}", path.display()), e)),
            }
        }
        Found::Unknown(e) => Err(e),
    }
}

/// Whether the history file of `tli` is one [`reserve_through`] laid.
fn is_placeholder(wal: &std::path::Path, tli: u32, instance: &Instance) -> bool {
    crate::beneath::read_to_string(&wal.join(history_file(tli)), &instance.run_as)
        .is_ok_and(|text| text.starts_with(PLACEHOLDER_MARK))
}

/// Whether any history file in `wal` is a placeholder (most starts: none, and nothing more is
/// read).
fn holds_a_placeholder(wal: &std::path::Path, instance: &Instance) -> bool {
    let Ok(entries) = std::fs::read_dir(wal) else {
        return false;
    };
    entries.flatten().any(|entry| {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        name.strip_suffix(".history")
            .and_then(|tli| u32::from_str_radix(tli, 16).ok())
            .is_some_and(|tli| is_placeholder(wal, tli, instance))
    })
}

/// How every placeholder history file begins.
const PLACEHOLDER_MARK: &str = "# pgha:";

/// Removes the placeholder history files above the newest real timeline this member knows
/// of: left by a promotion that was refused, stalled or cut short, they would make a standby
/// starting up take a timeline without WAL or parent as its recovery target: it waits for that
/// timeline's WAL forever and never accepts a connection. Placeholders below a
/// real timeline stay (see [`reserve_through`]). Returns the timelines released.
pub async fn release_unused(instance: &Instance) -> Result<Vec<u32>> {
    let wal = instance.data_dir().join("pg_wal");
    if !holds_a_placeholder(&wal, instance) {
        return Ok(Vec::new());
    }
    let control = instance.controldata().await?;
    // PostgreSQL recovers towards the newer of the two (a standby that replayed past a switch
    // before its next restartpoint), counts up from there and stops at the first gap.
    let mut newest = control
        .checkpoint_timeline
        .max(control.min_recovery_timeline)
        .max(1);
    // a real history that cannot be looked at fails the release: a placeholder below it stays
    while has_history(&wal, newest + 1, instance)? {
        newest += 1;
    }
    let mut released = Vec::new();
    while newest > 1 && is_placeholder(&wal, newest, instance) {
        crate::beneath::remove(&wal.join(history_file(newest)), &instance.run_as)?;
        released.push(newest);
        newest -= 1;
    }
    Ok(released)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `pg_wal` that is a symlink (WAL on a disk of its own, `initdb --waldir`) is looked
    /// through for history files: the look that lays placeholders before a promotion must not
    /// fail on it (found by review: every promotion did, the walk beneath the OS user's
    /// directories refusing symlinks), while writes through it stay refused.
    #[test]
    fn histories_are_looked_for_through_a_symlinked_pg_wal() {
        let dir = tempfile::tempdir().unwrap();
        let bins = crate::PgBinaries::discover(None).expect("PostgreSQL's programs");
        let run_as = crate::RunAs::detect("postgres").expect("the postgres OS user");
        let inst = Instance::new("n1", &dir.path().join("n1"), bins, run_as.clone());
        let wal_disk = dir.path().join("wal-disk");
        std::fs::create_dir_all(&wal_disk).unwrap();
        std::fs::write(wal_disk.join(history_file(2)), "1\t0/3000000\treason\n").unwrap();
        std::fs::create_dir_all(inst.data_dir()).unwrap();
        let wal = inst.data_dir().join("pg_wal");
        std::os::unix::fs::symlink(&wal_disk, &wal).unwrap();
        if let Some(user) = &run_as.user {
            let (uid, gid) = (Some(user.uid), Some(user.gid));
            for owned in [inst.member_dir.clone(), inst.data_dir()] {
                std::os::unix::fs::chown(&owned, uid, gid).unwrap();
            }
            std::os::unix::fs::lchown(&wal, uid, gid).unwrap();
        }
        assert!(has_history(&wal, 2, &inst).unwrap());
        assert!(!has_history(&wal, 3, &inst).unwrap());
    }

    /// A standby on timeline 1 that never received timeline 2's history (another member's
    /// promotion) is promoted with timeline 2 reserved: PostgreSQL starts timeline 3, forked
    /// from timeline 1, and recovery never followed the placeholder.
    #[tokio::test]
    async fn a_promotion_starts_a_timeline_above_those_reserved() {
        let standby = crate::test_standby::TestStandby::new("n3").await;
        let inst = &standby.inst;
        standby.start().await;
        let reserved = reserve_through(inst, 2).await.unwrap();
        assert_eq!(reserved, vec![2]);
        assert!(
            reserve_through(inst, 2).await.unwrap().is_empty(),
            "reserved twice"
        );
        // Until it is promoted, the member is on timeline 1, as its probe says (before: the
        // placeholder counted as a timeline it had received WAL on).
        let client = crate::test_standby::client(inst).await;
        let probed = crate::probe::probe(&client, "n3").await.unwrap();
        assert_eq!(probed.timeline, Some(1), "{probed:?}");
        drop(client);
        standby.pg_ctl(&["-w", "promote"]).await;
        let history = std::fs::read_to_string(inst.data_dir().join("pg_wal").join(history_file(3)));
        standby.pg_ctl(&["-m", "fast", "-w", "stop"]).await;
        let history = history.unwrap_or_else(|e| {
            panic!(
                "no history of timeline 3 ({e}):\n{}",
                std::fs::read_to_string(&standby.log).unwrap_or_default()
            )
        });
        assert!(
            history.starts_with("1\t"),
            "timeline 3 does not fork from timeline 1: {history}"
        );
        assert_eq!(inst.controldata().await.unwrap().checkpoint_timeline, 3);
        // Below the timeline the promotion started, the placeholder stays: a standby on
        // timeline 1 streaming from here is sent it when it asks for timeline 2's history.
        assert!(release_unused(inst).await.unwrap().is_empty());
        assert!(is_placeholder(&inst.data_dir().join("pg_wal"), 2, inst));
    }

    /// Found by review: a promotion that did not happen (its lease lapsed, it stalled) left
    /// its placeholder above the member's only timeline; the member, restarted as a standby,
    /// took the placeholder's timeline as its recovery target, waited for WAL of timeline 2
    /// that never comes, and never accepted a connection. The placeholder goes first.
    #[tokio::test]
    async fn a_standby_whose_promotion_did_not_happen_starts_again() {
        let standby = crate::test_standby::TestStandby::new("n2").await;
        let inst = &standby.inst;
        standby.start().await;
        assert_eq!(reserve_through(inst, 2).await.unwrap(), vec![2]);
        standby.pg_ctl(&["-m", "fast", "-w", "stop"]).await;
        let log = standby.log.display().to_string();
        assert!(
            !standby
                .try_pg_ctl(&["-w", "-t", "10", "-l", &log, "start"])
                .await,
            "PostgreSQL started with a placeholder above its timeline: the release is not needed"
        );
        standby.pg_ctl(&["-m", "immediate", "-w", "stop"]).await;
        assert_eq!(release_unused(inst).await.unwrap(), vec![2]);
        assert!(
            release_unused(inst).await.unwrap().is_empty(),
            "released twice"
        );
        standby.start().await;
        standby.pg_ctl(&["-m", "fast", "-w", "stop"]).await;
        assert_eq!(inst.controldata().await.unwrap().checkpoint_timeline, 1);
    }
}
