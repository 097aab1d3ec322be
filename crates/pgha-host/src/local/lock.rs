//! An exclusive lock on a cluster directory, so two `pgha up` never drive the same members.

use std::fs::File;
use std::path::Path;

use nix::fcntl::Flock;
use pgha_pg::agent_lock::take_pid_lock;

use crate::error::CliError;

pub const LOCK_FILE: &str = ".pgha.lock";

/// Held for as long as the value lives; the kernel releases it if the process dies.
pub struct DirLock {
    _lock: Flock<File>,
}

/// Who holds a directory's lock: the pid it wrote, if readable.
pub struct HeldBy(pub Option<u32>);

impl DirLock {
    /// Locks `dir` for a `pgha up`; refused while another process holds it.
    pub fn acquire(dir: &Path) -> anyhow::Result<Self> {
        Self::try_acquire(dir)?.map_err(|HeldBy(pid)| {
            CliError::Locked {
                dir: dir.to_path_buf(),
                pid,
            }
            .into()
        })
    }

    /// Locks `dir`, or says who holds it (a running `pgha up`).
    pub fn try_acquire(dir: &Path) -> std::io::Result<Result<Self, HeldBy>> {
        Ok(match take_pid_lock(&dir.join(LOCK_FILE))? {
            Ok(lock) => Ok(DirLock { _lock: lock }),
            Err(pid) => Err(HeldBy(pid)),
        })
    }
}

/// The lock of a local cluster whose API did not answer (`unanswered`), taken so that no
/// `pgha up` starts while a command writes its files; refused while a `pgha up` holds it (it
/// runs but is stalled, and would write its own store over the change when it goes on).
pub(crate) fn lock_unanswered(
    dir: &Path,
    unanswered: &crate::client::ClientError,
) -> anyhow::Result<DirLock> {
    DirLock::try_acquire(dir)?.map_err(|HeldBy(pid)| {
        let api = match unanswered {
            crate::client::ClientError::Unreachable { tried } => tried.join(", "),
            other => other.to_string(),
        };
        CliError::NotAnswering {
            dir: dir.to_path_buf(),
            pid,
            api,
        }
        .into()
    })
}
