//! Killing every process of a PostgreSQL instance, and showing that none of them can run again:
//! each is gone, a zombie, exiting, or has a SIGKILL pending (one blocked on a frozen disk dies
//! as its I/O returns, before it runs another instruction of its own, so it acknowledges no
//! commit and sends no WAL).

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// A file's identity (device, inode): the same whatever path or link names it, and still
/// there for a program replaced on disk while it runs.
type FileId = (u64, u64);

/// One process, told apart from a later one under the same pid by when it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Proc {
    pid: i32,
    started: u64,
}

fn identity(path: &Path) -> Option<FileId> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// The `/proc/PID/stat` fields after the command: field 3 on (the state) as a list.
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = text.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// The processes that run the program `program` in the directory `data_dir`: every process
/// a postmaster started there forked (they keep both), never a shell someone opened in the
/// data directory nor another server's.
fn instance_processes(data_dir: FileId, program: FileId) -> BTreeSet<Proc> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return BTreeSet::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let proc_dir = Path::new("/proc").join(pid.to_string());
            identity(&proc_dir.join("cwd")) == Some(data_dir)
                && identity(&proc_dir.join("exe")) == Some(program)
        })
        .filter_map(proc_of)
        .collect()
}

fn proc_of(pid: i32) -> Option<Proc> {
    // field 22 of stat: the start time, in clock ticks after boot
    let started = stat_fields(pid)?.get(19)?.parse().ok()?;
    Some(Proc { pid, started })
}

/// The instance's processes, and the postmaster's children besides (one that left the data
/// directory, or runs another program now, is still the postmaster's).
fn with_children(data_dir: FileId, program: FileId, postmaster: i32) -> BTreeSet<Proc> {
    let mut procs = instance_processes(data_dir, program);
    procs.extend(
        crate::supervisor::children_of(postmaster)
            .into_iter()
            .filter_map(proc_of),
    );
    procs
}

/// The kernel's flag of a process that has begun to exit (`PF_EXITING`).
const PF_EXITING: u64 = 0x4;

/// Whether a process whose `/proc/PID/status` reads `status` and whose `/proc/PID/stat` flags
/// are `flags` can never run code of its own again: a zombie or dead, exiting, or with SIGKILL
/// pending (for the process or its thread).
fn doomed_by(status: &str, flags: u64) -> bool {
    const SIGKILL_BIT: u64 = 1 << (libc::SIGKILL - 1);
    if flags & PF_EXITING != 0 {
        return true;
    }
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.split_whitespace().next())
    };
    if matches!(field("State:"), Some("Z" | "X" | "x")) {
        return true;
    }
    ["SigPnd:", "ShdPnd:"].iter().any(|name| {
        field(name)
            .and_then(|mask| u64::from_str_radix(mask, 16).ok())
            .is_some_and(|mask| mask & SIGKILL_BIT != 0)
    })
}

/// Whether `pid` can never run code of its own again (gone counts).
fn doomed(pid: i32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return true;
    };
    let flags = stat_fields(pid)
        .and_then(|f| f.get(6)?.parse().ok())
        .unwrap_or(0);
    doomed_by(&status, flags)
}

/// The identities of the instance's data directory and of its postmaster's program, read
/// while the postmaster lives.
fn instance_of(data_dir: &Path, postmaster: i32) -> Option<(FileId, FileId)> {
    let exe = Path::new("/proc").join(postmaster.to_string()).join("exe");
    Some((identity(data_dir)?, identity(&exe)?))
}

/// Whether no process of the instance whose postmaster `postmaster` runs in `data_dir` can
/// run again: the postmaster, its children, and every process of its program in the data
/// directory. Read twice: every process found the first time can
/// run no more, and the second time finds none but those (a process forked while the first
/// look went on shows in the second, which a doomed parent can fork no more). Anything not
/// shown (the postmaster gone or unreadable) answers `false`.
pub fn all_killed(data_dir: &Path, postmaster: i32) -> bool {
    let Some((dir, program)) = instance_of(data_dir, postmaster) else {
        return false;
    };
    let first = with_children(dir, program, postmaster);
    if !first.iter().any(|p| p.pid == postmaster) || !first.iter().all(|p| doomed(p.pid)) {
        return false;
    }
    let second = with_children(dir, program, postmaster);
    second.is_subset(&first) && second.iter().all(|p| doomed(p.pid))
}

/// [`all_killed`] on a blocking thread, `false` unless it answers within `limit` (a read of
/// `/proc` that hangs shows nothing).
pub async fn all_killed_within(data_dir: &Path, postmaster: i32, limit: Duration) -> bool {
    let data_dir = data_dir.to_path_buf();
    let check = tokio::task::spawn_blocking(move || all_killed(&data_dir, postmaster));
    matches!(tokio::time::timeout(limit, check).await, Ok(Ok(true)))
}

/// Kills every process of the instance whose postmaster `postmaster` runs in `data_dir`: its
/// tree first, as the supervisor's fencing does (no backend forked meanwhile), then any other
/// process of the postmaster's program in the data directory (one it left behind). Blocks up
/// to about half a second. How many of its processes could still run when it began.
pub fn kill_instance(data_dir: &Path, postmaster: i32) -> usize {
    let instance = instance_of(data_dir, postmaster);
    let could_run = |(dir, program): (FileId, FileId)| -> Vec<Proc> {
        with_children(dir, program, postmaster)
            .into_iter()
            .filter(|p| !doomed(p.pid))
            .collect()
    };
    let before = instance.map_or(1, |i| could_run(i).len());
    crate::supervisor::kill_postmaster_tree(postmaster);
    if let Some(instance) = instance {
        for _ in 0..3 {
            let alive = could_run(instance);
            if alive.is_empty() {
                break;
            }
            for p in &alive {
                let _ = kill(Pid::from_raw(p.pid), Signal::SIGKILL);
            }
        }
    }
    before
}

#[cfg(test)]
#[path = "killed_tests.rs"]
mod tests;
