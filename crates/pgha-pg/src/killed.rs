//! Killing every server process of a PostgreSQL instance, and showing that none of them can
//! run again: each is gone, a zombie, exiting, or has a SIGKILL pending in every thread (one
//! blocked on a frozen disk dies as its I/O returns, before it runs another instruction of its
//! own, so it acknowledges no commit and sends no WAL). Only `/proc` is read: nothing here
//! touches a file system that may hang.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// What every server process of one instance shares with its postmaster: the OS user it runs
/// as, its working directory (the data directory) and its program, as `/proc` names them
/// (a program replaced on disk since is named "... (deleted)" alike for all of them). Taken
/// from the living postmaster; kept, it still finds the processes a dead one left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceId {
    uid: u32,
    cwd: OsString,
    exe: OsString,
}

/// One process, told apart from a later one under the same pid by when it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Proc {
    pid: i32,
    started: u64,
}

fn proc_path(pid: i32) -> std::path::PathBuf {
    Path::new("/proc").join(pid.to_string())
}

/// The `/proc/.../stat` fields after the command: field 3 on (the state) as a list.
pub(crate) fn stat_fields(stat_file: &Path) -> std::io::Result<Vec<String>> {
    let text = std::fs::read_to_string(stat_file)?;
    let rest = text.rsplit_once(')').map_or("", |(_, rest)| rest);
    Ok(rest.split_whitespace().map(str::to_string).collect())
}

/// The process `pid` as `/proc` shows it: `Ok(None)` once it is gone, an error when it could
/// not be read.
fn proc_of(pid: i32) -> std::io::Result<Option<Proc>> {
    // field 22 of stat: the start time, in clock ticks after boot
    let fields = match stat_fields(&proc_path(pid).join("stat")) {
        Ok(fields) => fields,
        Err(e) if gone(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let started = fields.get(19).and_then(|f| f.parse().ok());
    let started = started.ok_or_else(|| std::io::Error::other("no start time in its stat"))?;
    Ok(Some(Proc { pid, started }))
}

/// The process `read` found, if any; `missed` set when it could not be read.
fn seen(read: std::io::Result<Option<Proc>>, missed: &mut bool) -> Option<Proc> {
    read.unwrap_or_else(|_| {
        *missed = true;
        None
    })
}

impl InstanceId {
    /// The instance of the living postmaster `postmaster`, if `/proc` shows it.
    pub fn of(postmaster: i32) -> Option<Self> {
        let dir = proc_path(postmaster);
        Some(InstanceId {
            uid: std::fs::metadata(&dir).ok()?.uid(),
            cwd: std::fs::read_link(dir.join("cwd")).ok()?.into_os_string(),
            exe: std::fs::read_link(dir.join("exe")).ok()?.into_os_string(),
        })
    }

    /// Whether `pid` is a process of this instance (the owner of its `/proc` entry is looked
    /// at first, so that other users' processes are never read further); an error when that
    /// could not be read (no descriptor left, an I/O error). A process gone meanwhile is not
    /// one, nor is one of the same owner whose links this process may not read (another user
    /// namespace's, or one that made itself undumpable): the postmaster's own were read, so
    /// its server processes' can be.
    fn owns(&self, pid: i32) -> std::io::Result<bool> {
        let dir = proc_path(pid);
        let read = || -> std::io::Result<bool> {
            Ok(std::fs::metadata(&dir)?.uid() == self.uid
                && std::fs::read_link(dir.join("cwd"))?.into_os_string() == self.cwd
                && std::fs::read_link(dir.join("exe"))?.into_os_string() == self.exe)
        };
        match read() {
            Err(e) if gone(&e) || e.kind() == std::io::ErrorKind::PermissionDenied => Ok(false),
            answer => answer,
        }
    }

    /// The instance's processes, and the postmaster's children besides (one that left the
    /// data directory, or runs another program now, is still the postmaster's). `None` when
    /// `/proc` could not be read in full (no descriptor left): some may be missing.
    fn processes(&self, postmaster: Option<i32>) -> Option<BTreeSet<Proc>> {
        let mut missed = false;
        let procs = self.processes_seen(postmaster, &mut missed);
        (!missed).then_some(procs)
    }

    /// [`Self::processes`] as far as `/proc` could be read; `missed` set when some could not.
    fn processes_seen(&self, postmaster: Option<i32>, missed: &mut bool) -> BTreeSet<Proc> {
        let children: Vec<i32> = match postmaster.map(crate::supervisor::list_children) {
            Some(Ok(children)) => children,
            Some(Err(_)) => {
                *missed = true;
                Vec::new()
            }
            None => Vec::new(),
        };
        let mut procs = BTreeSet::new();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            *missed = true;
            return procs;
        };
        for entry in entries {
            let Ok(entry) = entry else {
                *missed = true;
                continue;
            };
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            match self.owns(pid) {
                Ok(true) if !children.contains(&pid) => procs.extend(seen(proc_of(pid), missed)),
                Ok(_) => {}
                Err(_) => *missed = true,
            }
        }
        for pid in children {
            procs.extend(seen(proc_of(pid), missed));
        }
        procs
    }

    /// Whether no server process of this instance can run again. `postmaster`: its
    /// postmaster while that lives (it must be among them, with its children), `None` once
    /// it is gone (what it left behind, if anything). Read twice: every process found the
    /// first time can run no more, and the second time finds none but those (a process forked
    /// while the first look went on shows in the second; a doomed parent forks no more).
    /// Anything `/proc` does not show answers `false`.
    pub fn all_killed(&self, postmaster: Option<i32>) -> bool {
        let Some(first) = self.processes(postmaster) else {
            return false;
        };
        let pm_seen = postmaster.is_none_or(|pm| first.iter().any(|p| p.pid == pm));
        if !pm_seen || !first.iter().all(|p| doomed(p.pid)) {
            return false;
        }
        let Some(second) = self.processes(postmaster) else {
            return false;
        };
        second.is_subset(&first) && second.iter().all(|p| doomed(p.pid))
    }

    /// Kills every server process of this instance: the tree of `postmaster` (while it
    /// lives) first, as the supervisor's fencing does (no backend forked meanwhile), then any
    /// other process of the instance (one a dead postmaster left behind). Blocks up to about
    /// half a second. How many of its processes could still run when it began.
    pub fn kill(&self, postmaster: Option<i32>) -> usize {
        let could_run = || -> Vec<Proc> {
            // as far as `/proc` could be read: what it shows is killed
            (self.processes_seen(postmaster, &mut false).into_iter())
                .filter(|p| !doomed(p.pid))
                .collect()
        };
        let before = could_run().len();
        if let Some(pm) = postmaster {
            crate::supervisor::kill_postmaster_tree(pm);
        }
        for _ in 0..3 {
            let alive = could_run();
            if alive.is_empty() {
                break;
            }
            for p in &alive {
                let _ = kill(Pid::from_raw(p.pid), Signal::SIGKILL);
            }
        }
        before
    }
}

/// [`InstanceId::all_killed`] on a blocking thread, `false` unless it answers within `limit`.
pub async fn all_killed_within(
    instance: &InstanceId,
    postmaster: Option<i32>,
    limit: Duration,
) -> bool {
    let instance = instance.clone();
    let check = tokio::task::spawn_blocking(move || instance.all_killed(postmaster));
    matches!(tokio::time::timeout(limit, check).await, Ok(Ok(true)))
}

/// The kernel's flag of a task that has begun to exit (`PF_EXITING`).
const PF_EXITING: u64 = 0x4;

/// Whether a thread whose `status` file reads `status` and whose `stat` flags are `flags` can
/// never run code of its own again: a zombie or dead, exiting, or with SIGKILL pending.
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

/// Whether every thread of `pid` can never run code of its own again: gone counts, a thread
/// that ends while being read too; a `/proc` that cannot be read shows nothing.
fn doomed(pid: i32) -> bool {
    let tasks = match std::fs::read_dir(proc_path(pid).join("task")) {
        Ok(tasks) => tasks,
        Err(e) => return gone(&e),
    };
    tasks.into_iter().all(|task| {
        let Ok(task) = task else {
            return false;
        };
        let dir = task.path();
        let status = std::fs::read_to_string(dir.join("status"));
        let flags = stat_fields(&dir.join("stat"));
        match (status, flags) {
            (Ok(status), Ok(fields)) => {
                let flags = fields.get(6).and_then(|f| f.parse().ok()).unwrap_or(0);
                doomed_by(&status, flags)
            }
            (Err(e), _) | (_, Err(e)) => gone(&e),
        }
    })
}

/// An error reading `/proc` that says the process or thread has ended (no such entry, or it
/// ended between the open and the read).
pub(crate) fn gone(e: &std::io::Error) -> bool {
    e.kind() == ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH)
}

#[cfg(test)]
#[path = "killed_tests.rs"]
mod tests;
