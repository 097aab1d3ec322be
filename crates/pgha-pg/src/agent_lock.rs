//! The one agent of a member (its `pgha agent`, or the `pgha up` that runs it): an exclusive
//! lock on a small file beside its member directory (`<member_dir>.agent`), holding that
//! process's pid, released by the kernel when the process ends however it ends; and the pid
//! lock it is made of (`pgha up` locks its directory with it too).

use std::fs::File;
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// Why this process cannot be the member's agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentLockError {
    #[error(
        "another pgha process{} runs the member of {member_dir} (it holds {lock}): a member has \
         one agent, a `pgha agent` or the `pgha up` of its cluster, and two would both act on \
         one PostgreSQL. Stop that one first (`systemctl stop pgha-agent`, or Ctrl-C that \
         `pgha up`), or give this configuration a `member.dir` of its own",
        .pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    Held {
        member_dir: PathBuf,
        lock: PathBuf,
        pid: Option<u32>,
    },
    #[error("{lock}: {source}")]
    Io {
        lock: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Held for as long as the value lives.
#[derive(Debug)]
pub struct AgentLock {
    _lock: Flock<File>,
}

impl AgentLock {
    /// The lock file of the member whose directory is `member_dir`: `<member_dir>.agent`, in
    /// the directory that holds it (root's, like the lease file: never the PostgreSQL OS
    /// user's, who could otherwise point it elsewhere).
    pub fn path_for(member_dir: &Path) -> PathBuf {
        crate::lease_file::beside_member_dir(member_dir, ".agent")
    }

    /// Takes the member's lock and writes this process's pid into it; refused while another
    /// process holds it (never waits). A link in the lock's place is not followed.
    pub fn acquire(member_dir: &Path) -> Result<Self, AgentLockError> {
        let lock = Self::path_for(member_dir);
        let io = |source| AgentLockError::Io {
            lock: lock.clone(),
            source,
        };
        if let Some(parent) = lock.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        match take_pid_lock(&lock).map_err(io)? {
            Ok(held) => Ok(AgentLock { _lock: held }),
            Err(pid) => Err(AgentLockError::Held {
                member_dir: member_dir.to_path_buf(),
                lock,
                pid,
            }),
        }
    }
}

/// Locks `path` (`flock`, exclusive, never waiting) and writes this process's pid into it;
/// when another process holds it, the pid that one wrote, if readable. Created 0644 if
/// missing; a link in its place is not followed.
pub fn take_pid_lock(path: &Path) -> std::io::Result<Result<Flock<File>, Option<u32>>> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(mut held) => {
            held.set_len(0)?;
            held.seek(SeekFrom::Start(0))?;
            writeln!(held, "{}", std::process::id())?;
            Ok(Ok(held))
        }
        Err((mut file, _)) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            Ok(Err(text.trim().parse().ok()))
        }
    }
}

/// The pid the member's agent wrote into its lock, if there is one: the process may have
/// ended since (the file stays), so a caller checks what runs under that pid.
pub fn written_pid(member_dir: &Path) -> Option<i32> {
    let mut text = String::new();
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(AgentLock::path_for(member_dir))
        .ok()?
        .read_to_string(&mut text)
        .ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_agent_of_the_member_is_refused_and_told_whose_it_is() {
        let root = tempfile::tempdir().unwrap();
        let member = root.path().join("n1");
        let first = AgentLock::acquire(&member).expect("the first agent locks");
        assert_eq!(written_pid(&member), Some(std::process::id() as i32));
        // flock conflicts between two opens of the file, in one process as in two.
        let err = AgentLock::acquire(&member).expect_err("the second is refused");
        let text = err.to_string();
        assert!(
            matches!(err, AgentLockError::Held { pid: Some(p), .. } if p == std::process::id()),
            "{err:?}"
        );
        assert!(
            text.contains("n1.agent") && text.contains("member.dir"),
            "{text}"
        );
        drop(first);
        let again = AgentLock::acquire(&member).expect("free once the first is gone");
        drop(again);
        // Another member beside it is another lock.
        let _n1 = AgentLock::acquire(&member).unwrap();
        let _n2 = AgentLock::acquire(&root.path().join("n2")).unwrap();
        // The directory that holds the member's is made if missing (a first start).
        let _n3 = AgentLock::acquire(&root.path().join("new/n3")).unwrap();
        assert!(root.path().join("new/n3.agent").is_file());
    }

    #[test]
    fn a_link_in_the_locks_place_is_not_followed() {
        let root = tempfile::tempdir().unwrap();
        let elsewhere = root.path().join("elsewhere");
        std::fs::write(&elsewhere, "precious\n").unwrap();
        let member = root.path().join("n1");
        std::os::unix::fs::symlink(&elsewhere, AgentLock::path_for(&member)).unwrap();
        let err = AgentLock::acquire(&member).expect_err("a link is refused");
        assert!(matches!(err, AgentLockError::Io { .. }), "{err:?}");
        assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "precious\n");
        assert_eq!(written_pid(&member), None);
    }
}
