//! The fencing deadline an agent hands to its member's supervisor: one small root-owned file
//! holding an instant on the boot clock (`CLOCK_BOOTTIME`, which keeps counting while the
//! machine is suspended), or nothing when no deadline is armed.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{PgError, Result};

/// Milliseconds since boot, suspend included.
pub fn boot_clock_ms() -> u64 {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .expect("CLOCK_BOOTTIME is available on Linux");
    ts.tv_sec() as u64 * 1000 + ts.tv_nsec() as u64 / 1_000_000
}

/// A member's fencing deadline file (next to its member directory, outside the directories the
/// PostgreSQL OS user owns, so that user cannot disarm its own fencing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseFile {
    path: PathBuf,
}

/// `<member_dir><suffix>`: a file of the member's kept beside its directory, in the directory
/// that holds it (root's when pgha runs as root), outside the PostgreSQL OS user's reach.
pub fn beside_member_dir(member_dir: &Path, suffix: &str) -> PathBuf {
    let mut name = member_dir
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(suffix);
    member_dir.with_file_name(name)
}

impl LeaseFile {
    /// The deadline file of the member whose directory is `member_dir`: `<member_dir>.lease`.
    pub fn for_member_dir(member_dir: &Path) -> Self {
        LeaseFile {
            path: beside_member_dir(member_dir, ".lease"),
        }
    }

    pub fn at(path: &Path) -> Self {
        LeaseFile {
            path: path.to_path_buf(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// PostgreSQL must not be writable after `deadline_ms` on the boot clock.
    pub fn arm(&self, deadline_ms: u64) -> Result<()> {
        self.write(&format!("{deadline_ms}\n"))
    }

    /// No deadline: nothing to fence (a standby, or a stopped member).
    pub fn disarm(&self) -> Result<()> {
        self.write("")
    }

    /// The armed deadline; `None` when disarmed or absent. A file that cannot be read (other
    /// than absent) or parsed counts as a deadline already passed: fencing errs on the side
    /// of one writer.
    pub fn read(&self) -> Option<u64> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(_) => return Some(0),
        };
        let text = text.trim();
        if text.is_empty() {
            return None;
        }
        Some(text.parse().unwrap_or(0))
    }

    /// Time left until the armed deadline (zero once passed), `None` when disarmed.
    pub fn remaining(&self) -> Option<Duration> {
        let deadline = self.read()?;
        Some(Duration::from_millis(
            deadline.saturating_sub(boot_clock_ms()),
        ))
    }

    /// Atomic replace: a unique temporary name created exclusively, then renamed. Not synced,
    /// on purpose: the supervisor reads it through the same page cache, a deadline on the boot
    /// clock means nothing after a power loss, and an fsync would tie fencing to the disk.
    fn write(&self, contents: &str) -> Result<()> {
        let ctx = |what: &str| format!("{what} {}", self.path.display());
        let mut tmp_name = self
            .path
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_default();
        tmp_name.push(format!(".{}.tmp", std::process::id()));
        let tmp = self.path.with_file_name(tmp_name);
        let _ = std::fs::remove_file(&tmp);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .map_err(|e| PgError::io(ctx("write"), e))?;
        file.write_all(contents.as_bytes())
            .map_err(|e| PgError::io(ctx("write"), e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| PgError::io(ctx("rename"), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arm_read_disarm() {
        let tmp = tempfile::tempdir().unwrap();
        let lease = LeaseFile::for_member_dir(&tmp.path().join("n1"));
        assert_eq!(lease.path(), tmp.path().join("n1.lease"));
        assert_eq!(lease.read(), None, "absent file: disarmed");
        lease.arm(1234).unwrap();
        assert_eq!(lease.read(), Some(1234));
        assert_eq!(lease.remaining(), Some(Duration::ZERO));
        lease.arm(boot_clock_ms() + 60_000).unwrap();
        assert!(lease.remaining().unwrap() > Duration::from_secs(50));
        lease.disarm().unwrap();
        assert_eq!(lease.read(), None);
        // Found by review: a file that cannot be read was taken for a disarmed one, and the
        // supervisor failed open. It counts as a deadline passed, as one that cannot be parsed.
        std::fs::remove_file(lease.path()).unwrap();
        std::fs::create_dir(lease.path()).unwrap();
        assert_eq!(lease.read(), Some(0), "unreadable: fenced");
        std::fs::remove_dir(lease.path()).unwrap();
        std::fs::write(lease.path(), "garbage").unwrap();
        assert_eq!(lease.read(), Some(0), "unreadable deadline: already passed");
    }

    #[test]
    fn boot_clock_advances() {
        let a = boot_clock_ms();
        std::thread::sleep(Duration::from_millis(20));
        assert!(boot_clock_ms() >= a + 20);
    }
}
