//! Re-cloning with pg_basebackup, the old data directory moved aside (kept, never deleted).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pgha_core::MemberName;
use pgha_pg::basebackup::clone;
use pgha_pg::conf::slot_name;
use pgha_pg::StopMode;

use super::{io, JobContext, JobError, JobResult};

const CLONE_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

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

pub(super) async fn reclone(ctx: &JobContext, from: &MemberName, move_aside: bool) -> JobResult {
    let spec = &ctx.spec;
    let inst = &spec.instance;
    let up = ctx.peer(from)?;
    if inst.is_running() {
        ctx.stop_any(StopMode::Fast).await?;
    }
    inst.create_member_dir()?;
    // The clone lands beside the data directory, which stays in place, untouched, until the
    // clone is whole: a clone that fails (the source unreachable, out of WAL senders, a full
    // disk) leaves the member its data, where a later rewind or start finds it. What a clone
    // cut short left there goes first: it is no data of the member's, and it would count
    // against the room a new copy needs.
    let staging = inst.member_dir.join("data.partial");
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(io("remove an incomplete clone"))?;
    }
    if inst.is_initialized() {
        if !move_aside {
            return Err(JobError::Refused(format!(
                "{} holds a data directory; refusing to overwrite it without moving it aside",
                inst.data_dir().display()
            )));
        }
        // Refused now, not after hours of cloning, when too many copies are kept already.
        aside_path(&inst.member_dir)?;
        room_for_a_copy(inst).await?;
    } else if holds_files(&inst.data_dir()) {
        // Moved aside too once the clone is whole: the same refusal, before the clone (after
        // it, every attempt would make a whole base backup only to be refused).
        aside_path(&inst.member_dir)?;
    }
    let data = inst.data_dir();
    // A slot holds WAL for this member on the primary, whose leader drops it once the member
    // is gone. On a standby (a `clonefrom` source) nobody would: clone without one there.
    let slot = slot_name(spec.name.as_str());
    let slot = match source_is_primary(ctx, &up).await {
        true => {
            ctx.ensure_own_slot_on(&up).await;
            Some(slot.as_str())
        }
        false => None,
    };
    tracing::info!(
        "{}: cloning {from} with pg_basebackup{}",
        spec.name,
        if slot.is_some() {
            ""
        } else {
            " (a standby: no slot)"
        }
    );
    let source = ctx.source(&up, &spec.replication_user);
    let mut last_quarter = 0;
    let name = spec.name.clone();
    clone(inst, &source, slot, &staging, CLONE_TIMEOUT, |p| {
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
    ctx.write_config(&staging, true, Some(up)).await?;
    clear_the_way(inst, spec.name.as_str(), move_aside)?;
    // the directory an incomplete rewind left is aside (or was never there): forget it
    inst.clear_rewind_marker()?;
    std::fs::rename(&staging, &data).map_err(io("move the clone into place"))?;
    ctx.start_or_wait().await
}

/// The clone lands beside the data directory it moves aside, on the same file system: a
/// full disk is no divergence, and moving the data aside there would only leave a clone that
/// cannot finish and the data out of place (a rewind needs it where it is).
async fn room_for_a_copy(inst: &pgha_pg::Instance) -> JobResult {
    let (data, dir) = (inst.data_dir(), inst.member_dir.clone());
    let measured = tokio::task::spawn_blocking(move || {
        let needed = pgha_pg::room::tree_bytes(&data)?;
        let available = pgha_pg::room::available_bytes(&dir)?;
        Ok::<_, pgha_pg::PgError>((dir, needed, available))
    })
    .await
    .map_err(|e| JobError::Refused(format!("measuring the room for a re-clone: {e}")))?;
    let (dir, needed, available) = measured?;
    if available < needed {
        return Err(JobError::NoRoom {
            dir,
            available,
            needed,
        });
    }
    Ok(())
}

/// Makes room for a clone at `data`: an initialised data directory is moved aside (only when
/// `move_aside`: otherwise the clone is refused), an empty one removed; one that is not
/// initialised but holds files (a lost `PG_VERSION`, a restore under way, an unreadable
/// directory) is moved aside too, never deleted: it may be the only copy of something.
fn clear_the_way(inst: &pgha_pg::Instance, name: &str, move_aside: bool) -> Result<(), JobError> {
    let data = inst.data_dir();
    if !data.exists() {
        return Ok(());
    }
    if inst.is_initialized() && !move_aside {
        return Err(JobError::Refused(format!(
            "{} holds a data directory; refusing to overwrite it without moving it aside",
            data.display()
        )));
    }
    if !holds_files(&data) {
        return std::fs::remove_dir(&data).map_err(io("remove an empty data directory"));
    }
    let aside = aside_path(&inst.member_dir)?;
    tracing::warn!(
        "{name}: moving the old data directory aside to {} before re-cloning (kept, not deleted)",
        aside.display()
    );
    std::fs::rename(&data, &aside).map_err(io("move the old data directory aside"))
}

/// Whether directory `data` exists and is not empty (one that cannot be listed counts as
/// holding files: it is moved aside, never removed).
fn holds_files(data: &std::path::Path) -> bool {
    data.exists() && !std::fs::read_dir(data).is_ok_and(|mut entries| entries.next().is_none())
}

/// Whether the clone source runs as a primary (`false` too when it cannot be asked: then no
/// slot is left anywhere; pg_basebackup streams the WAL it needs as it goes).
async fn source_is_primary(ctx: &JobContext, up: &pgha_pg::conf::Upstream) -> bool {
    let Ok(client) = ctx.spec.connect(up, super::SQL_TIMEOUT).await else {
        return false;
    };
    // bounded too: a source that stops answering once connected must not hold the clone
    let asked = client.query_one("SELECT pg_is_in_recovery()", &[]);
    match tokio::time::timeout(super::SQL_TIMEOUT, asked).await {
        Ok(Ok(row)) => !row.get::<_, bool>(0),
        Ok(Err(_)) | Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::{aside_path, clear_the_way, reclone, MAX_KEPT_ASIDE};

    /// A job context for `spec` whose clone source, n2, does not answer (nothing listens).
    fn cloning_from_nobody(
        spec: &std::sync::Arc<crate::spec::NodeSpec>,
    ) -> (crate::jobs::JobContext, pgha_core::MemberName) {
        let source = pgha_core::MemberName::new("n2");
        let unreachable = pgha_pg::conf::Upstream {
            name: "n2".into(),
            host: "127.0.0.1".into(),
            port: 1,
        };
        let ctx = crate::jobs::JobContext {
            spec: spec.clone(),
            peers: [(source.clone(), unreachable)].into(),
            dynamic: Default::default(),
            cancelled: Default::default(),
        };
        (ctx, source)
    }

    /// Found by review: a re-clone moved the data directory aside before it knew a clone was
    /// possible; when the clone failed (here the source does not answer; in the review's
    /// case every WAL sender of the leader was taken), the member was left without data in
    /// place, and no candidate for a failover. The data stays where it is until a clone is
    /// whole.
    #[tokio::test]
    async fn a_clone_that_fails_leaves_the_data_directory_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let spec = std::sync::Arc::new(crate::test_spec::spec(dir.path()));
        let inst = &spec.instance;
        inst.create_member_dir().unwrap();
        let data = inst.data_dir();
        std::fs::create_dir_all(data.join("base/1")).unwrap();
        std::fs::write(data.join("PG_VERSION"), "15\n").unwrap();
        std::fs::write(data.join("base/1/16384"), "rows").unwrap();
        assert!(inst.is_initialized());
        let (ctx, source) = cloning_from_nobody(&spec);
        let failed = reclone(&ctx, &source, true).await;
        assert!(
            failed.is_err(),
            "a clone from a source that does not answer"
        );
        assert_eq!(
            std::fs::read_to_string(data.join("base/1/16384")).unwrap(),
            "rows",
            "the data directory was not left in place"
        );
        let aside: Vec<_> = std::fs::read_dir(&inst.member_dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("data.old-"))
            .collect();
        assert!(aside.is_empty(), "moved aside for a clone that failed");
    }

    /// Found by review: the room for a copy was measured before what an earlier clone cut
    /// short (`data.partial`) was removed, so that leftover alone could make every later
    /// re-clone refuse for want of room, and the member wait for good. It goes first now.
    #[tokio::test]
    async fn a_clone_cut_short_does_not_count_against_the_room_for_the_next() {
        let tmp = tempfile::tempdir().unwrap();
        let disk =
            pgha_testkit::LoopDisk::mount(&tmp.path().join("img"), &tmp.path().join("m"), 32);
        let spec = std::sync::Arc::new(crate::test_spec::spec(disk.path()));
        let inst = &spec.instance;
        inst.create_member_dir().unwrap();
        let mib = |n: usize| vec![7u8; n << 20];
        let data = inst.data_dir();
        std::fs::create_dir_all(data.join("base/1")).unwrap();
        std::fs::write(data.join("PG_VERSION"), "15\n").unwrap();
        std::fs::write(data.join("base/1/16384"), mib(10)).unwrap();
        let partial = inst.member_dir.join("data.partial");
        std::fs::create_dir_all(&partial).unwrap();
        std::fs::write(partial.join("base.tar"), mib(12)).unwrap();
        let (ctx, source) = cloning_from_nobody(&spec);
        let failed = reclone(&ctx, &source, true).await.unwrap_err();
        assert!(
            !matches!(failed, crate::jobs::JobError::NoRoom { .. }),
            "refused for want of room the leftover took: {failed}"
        );
        assert!(!partial.exists(), "the leftover clone stayed");
        assert!(
            data.join("base/1/16384").exists(),
            "the data left its place"
        );
    }

    /// Found by review: a data directory that is not initialised but holds files is moved
    /// aside once a clone is whole, and the limit on directories kept aside was checked only
    /// then: every attempt made a whole base backup to be refused at the end. It is refused
    /// before the clone now (here the source does not even answer: the refusal comes first).
    #[tokio::test]
    async fn a_clone_that_could_not_move_the_old_files_aside_is_refused_before_it_copies() {
        let dir = tempfile::tempdir().unwrap();
        let spec = std::sync::Arc::new(crate::test_spec::spec(dir.path()));
        let inst = &spec.instance;
        inst.create_member_dir().unwrap();
        for _ in 0..MAX_KEPT_ASIDE {
            std::fs::create_dir(aside_path(&inst.member_dir).unwrap()).unwrap();
        }
        let table = inst.data_dir().join("base/1/16384");
        std::fs::create_dir_all(table.parent().unwrap()).unwrap();
        std::fs::write(&table, "rows").unwrap();
        assert!(!inst.is_initialized());
        let (ctx, source) = cloning_from_nobody(&spec);
        let refused = reclone(&ctx, &source, true).await.unwrap_err().to_string();
        let kept = format!("{MAX_KEPT_ASIDE} old data directories");
        assert!(refused.contains(&kept), "not refused first: {refused}");
        assert_eq!(std::fs::read_to_string(&table).unwrap(), "rows");
    }

    /// A data directory without `PG_VERSION` that still holds files (reported as missing: a
    /// lost file, a restore under way) is moved aside before a clone, not deleted (before:
    /// removed as "an empty, uninitialised data directory"); an empty one is removed.
    #[test]
    fn a_data_directory_that_is_not_initialised_but_holds_files_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let spec = crate::test_spec::spec(dir.path());
        let inst = &spec.instance;
        let table = inst.data_dir().join("base/1/16384");
        std::fs::create_dir_all(table.parent().unwrap()).unwrap();
        std::fs::write(&table, "rows").unwrap();
        assert!(!inst.is_initialized());
        clear_the_way(inst, "n1", false).unwrap();
        assert!(!inst.data_dir().exists());
        let aside: Vec<_> = std::fs::read_dir(&inst.member_dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().contains("data.old-"))
            .collect();
        assert_eq!(aside.len(), 1, "{aside:?}");
        assert_eq!(
            std::fs::read_to_string(aside[0].join("base/1/16384")).unwrap(),
            "rows"
        );
        std::fs::create_dir(inst.data_dir()).unwrap();
        clear_the_way(inst, "n1", false).unwrap();
        assert!(!inst.data_dir().exists(), "an empty one is removed");
        std::fs::create_dir(inst.data_dir()).unwrap();
        std::fs::write(inst.data_dir().join("PG_VERSION"), "15\n").unwrap();
        assert!(
            clear_the_way(inst, "n1", false).is_err(),
            "initialised: refused without move_aside"
        );
    }

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
}
