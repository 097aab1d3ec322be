//! File writes, reads and removals that pgha (often root) makes inside directories the
//! PostgreSQL OS user owns, done so that no path component that user controls can redirect
//! them: directories below the nearest ancestor the user does not own are opened one by one
//! with `O_NOFOLLOW`, files are written under a fresh name created with `O_EXCL|O_NOFOLLOW`,
//! given their mode and owner through the open handle, then renamed into place.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read as _, Write as _};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::fcntl::{openat, renameat, AtFlags, OFlag};
use nix::sys::stat::{fchmod, fstatat, FileStat, Mode, SFlag};
use nix::unistd::{fchown, linkat, unlinkat, Gid, Uid, UnlinkatFlags};

use crate::error::{PgError, Result};
use crate::osuser::RunAs;

/// An open directory reached without following any symlink the OS user could have planted.
struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

impl Dir {
    /// Opens the parent directory of `path`. Any entry in a directory the PostgreSQL OS user
    /// owns may have been replaced by that user (whoever owns the entry itself), so the walk
    /// starts at the nearest ancestor whose own parent the user does not own (the member
    /// directory inside pgha's cluster directory, say) and opens every directory below it
    /// with `O_NOFOLLOW`.
    fn parent_of(path: &Path, run_as: &RunAs) -> Result<Dir> {
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let owner = run_as.user.as_ref().map(|u| u.uid);
        let mut anchor = parent;
        let mut below: Vec<&OsStr> = Vec::new();
        if let Some(uid) = owner {
            while let (Some(up), Some(Component::Normal(name))) =
                (anchor.parent(), anchor.components().next_back())
            {
                let up_is_users = !up.as_os_str().is_empty()
                    && std::fs::symlink_metadata(up).is_ok_and(|m| m.uid() == uid);
                if !up_is_users {
                    break;
                }
                below.push(name);
                anchor = up;
            }
        }
        below.reverse();
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let fd = nix::fcntl::open(anchor, flags, Mode::empty())
            .map_err(|e| PgError::io(format!("open {}", anchor.display()), e.into()))?;
        // SAFETY: `open` returned a new descriptor that nothing else owns.
        let mut dir = Dir {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            path: anchor.to_path_buf(),
        };
        for name in below {
            let fd = openat(
                Some(dir.fd.as_raw_fd()),
                name,
                flags | OFlag::O_NOFOLLOW,
                Mode::empty(),
            )
            .map_err(|e| dir.refused(name, "open directory", e))?;
            // SAFETY: as above.
            dir = Dir {
                fd: unsafe { OwnedFd::from_raw_fd(fd) },
                path: dir.path.join(name),
            };
        }
        Ok(dir)
    }

    fn refused(&self, name: &OsStr, what: &str, e: nix::Error) -> PgError {
        let path = self.path.join(name);
        let hint = if matches!(e, nix::Error::ELOOP | nix::Error::ENOTDIR) {
            " (a symbolic link where pgha expects a real file or directory: refusing to follow it)"
        } else {
            ""
        };
        PgError::io(
            format!("{what} {}{hint}", path.display()),
            std::io::Error::from(e),
        )
    }

    fn stat(&self, name: &OsStr) -> nix::Result<FileStat> {
        fstatat(
            Some(self.fd.as_raw_fd()),
            name,
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
    }
}

fn file_name(path: &Path) -> Result<&OsStr> {
    path.file_name().ok_or_else(|| {
        PgError::io(
            format!("write {}", path.display()),
            std::io::Error::from(std::io::ErrorKind::InvalidInput),
        )
    })
}

/// Writes `contents` to `path` atomically with `mode`, owned by the PostgreSQL OS user when
/// pgha runs as root. Nothing the OS user planted (a symlink at the file, at a temporary
/// name, or at a directory on the way) can make this write land anywhere else.
pub fn write(path: &Path, contents: &[u8], mode: u32, run_as: &RunAs) -> Result<()> {
    put(path, contents, mode, run_as, true).map(|_| ())
}

/// [`write`], but never over a file already at `path`, however recently it came: `false`
/// when one was there (and is left as it was).
pub fn write_new(path: &Path, contents: &[u8], mode: u32, run_as: &RunAs) -> Result<bool> {
    put(path, contents, mode, run_as, false)
}

/// [`write`] (`replace`) or [`write_new`]; whether the file was put in place.
fn put(path: &Path, contents: &[u8], mode: u32, run_as: &RunAs, replace: bool) -> Result<bool> {
    static UNIQUE: AtomicU64 = AtomicU64::new(0);
    let dir = Dir::parent_of(path, run_as)?;
    let name = file_name(path)?;
    let tmp = format!(
        ".{}.{}.{}.pgha-tmp",
        name.to_string_lossy(),
        std::process::id(),
        UNIQUE.fetch_add(1, Ordering::Relaxed)
    );
    let perms = Mode::from_bits_truncate(mode);
    let flags =
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = openat(Some(dir.fd.as_raw_fd()), tmp.as_str(), flags, perms)
        .map_err(|e| dir.refused(OsStr::new(&tmp), "create", e))?;
    // SAFETY: `openat` returned a new descriptor that nothing else owns.
    let mut file = unsafe { File::from_raw_fd(fd) };
    let ctx = |what: &str| format!("{what} {}", path.display());
    let written = (|| -> Result<bool> {
        file.write_all(contents)
            .map_err(|e| PgError::io(ctx("write"), e))?;
        fchmod(file.as_raw_fd(), perms).map_err(|e| PgError::io(ctx("chmod"), e.into()))?;
        if let Some(user) = &run_as.user {
            fchown(
                file.as_raw_fd(),
                Some(Uid::from_raw(user.uid)),
                Some(Gid::from_raw(user.gid)),
            )
            .map_err(|e| PgError::io(format!("{} to {}", ctx("chown"), user.name), e.into()))?;
        }
        file.sync_all().map_err(|e| PgError::io(ctx("sync"), e))?;
        let fd = Some(dir.fd.as_raw_fd());
        if replace {
            renameat(fd, tmp.as_str(), fd, name)
                .map_err(|e| dir.refused(name, "rename into", e))?;
        } else {
            // a link fails where a file is already (a rename would replace it); the temporary
            // name goes below
            let (from, to) = (Path::new(tmp.as_str()), Path::new(name));
            match linkat(fd, from, fd, to, AtFlags::empty()) {
                Ok(()) => {}
                Err(nix::Error::EEXIST) => return Ok(false),
                Err(e) => return Err(dir.refused(name, "link into", e)),
            }
        }
        // the new name survives a crash of the host too
        nix::unistd::fsync(dir.fd.as_raw_fd())
            .map_err(|e| PgError::io(ctx("sync the directory of"), e.into()))?;
        Ok(true)
    })();
    if !replace || written.is_err() {
        let _ = unlinkat(
            Some(dir.fd.as_raw_fd()),
            tmp.as_str(),
            UnlinkatFlags::NoRemoveDir,
        );
    }
    written
}

/// Reads `path` as text, refusing a symlink at the file or on the way to it.
pub fn read_to_string(path: &Path, run_as: &RunAs) -> Result<String> {
    let dir = Dir::parent_of(path, run_as)?;
    let name = file_name(path)?;
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = openat(Some(dir.fd.as_raw_fd()), name, flags, Mode::empty())
        .map_err(|e| dir.refused(name, "read", e))?;
    // SAFETY: `openat` returned a new descriptor that nothing else owns.
    let mut file = unsafe { File::from_raw_fd(fd) };
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| PgError::io(format!("read {}", path.display()), e))?;
    Ok(text)
}

/// Removes the file `path` if it exists (a symlink there is removed, never followed).
pub fn remove(path: &Path, run_as: &RunAs) -> Result<()> {
    let dir = Dir::parent_of(path, run_as)?;
    let name = file_name(path)?;
    match unlinkat(Some(dir.fd.as_raw_fd()), name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(nix::Error::ENOENT) => Ok(()),
        Err(e) => Err(dir.refused(name, "remove", e)),
    }
}

/// Whether `path` is a regular file reached without following any symlink (`false` too when
/// that cannot be told: see [`found`] where that matters).
pub fn is_file(path: &Path, run_as: &RunAs) -> bool {
    matches!(found(path, run_as), Found::File)
}

/// What stands at a path, looked at without following any symlink.
#[derive(Debug)]
pub enum Found {
    File,
    /// Something other than a regular file (a directory, a symlink, ...).
    NotAFile,
    /// Nothing: the path or a directory on the way does not exist.
    Absent,
    /// It could not be looked at (no descriptor left, an I/O error, a symlink on the way).
    Unknown(PgError),
}

/// What stands at `path`, reached without following any symlink.
pub fn found(path: &Path, run_as: &RunAs) -> Found {
    let dir = match Dir::parent_of(path, run_as) {
        Ok(dir) => dir,
        Err(PgError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Found::Absent;
        }
        Err(e) => return Found::Unknown(e),
    };
    let name = match file_name(path) {
        Ok(name) => name,
        Err(e) => return Found::Unknown(e),
    };
    match dir.stat(name) {
        Ok(st)
            if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFREG =>
        {
            Found::File
        }
        Ok(_) => Found::NotAFile,
        Err(nix::Error::ENOENT) => Found::Absent,
        Err(e) => Found::Unknown(dir.refused(name, "look at", e)),
    }
}

/// What [`takes_a_write`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteCheck {
    /// A page was written and synced in the directory's file system.
    Taken,
    /// There is no such directory (yet): nothing to check.
    NoDirectory,
    /// Its file system has no unnamed files (`O_TMPFILE`): it cannot be checked this way.
    Unsupported,
}

/// Whether the file system of directory `dir` takes a write: one page written to an unnamed
/// file there (`O_TMPFILE`: no name that anyone could see, replace or redirect, and nothing
/// left behind) and synced. Blocks for as long as the disk does.
pub fn takes_a_write(dir: &Path, run_as: &RunAs) -> Result<WriteCheck> {
    let dir = match Dir::parent_of(&dir.join(".pgha-write-check"), run_as) {
        Ok(dir) => dir,
        Err(PgError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Ok(WriteCheck::NoDirectory)
        }
        Err(e) => return Err(e),
    };
    let flags = OFlag::O_TMPFILE | OFlag::O_WRONLY | OFlag::O_CLOEXEC;
    let here = OsStr::new(".");
    let fd = match openat(
        Some(dir.fd.as_raw_fd()),
        here,
        flags,
        Mode::S_IRUSR | Mode::S_IWUSR,
    ) {
        Ok(fd) => fd,
        // EISDIR: a kernel older than O_TMPFILE
        Err(nix::Error::EOPNOTSUPP | nix::Error::EISDIR) => return Ok(WriteCheck::Unsupported),
        Err(e) => return Err(dir.refused(here, "create an unnamed file in", e)),
    };
    // SAFETY: `openat` returned a new descriptor that nothing else owns.
    let mut file = unsafe { File::from_raw_fd(fd) };
    let ctx = |what: &str| format!("{what} an unnamed file in {}", dir.path.display());
    file.write_all(&[0u8; 4096])
        .map_err(|e| PgError::io(ctx("write"), e))?;
    file.sync_all().map_err(|e| PgError::io(ctx("sync"), e))?;
    Ok(WriteCheck::Taken)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by review: a placeholder history was written by rename, which replaces: a real
    /// history received between the look and the write (or one the look could not see) was
    /// lost. `write_new` lays a file only where none is, and leaves one that is there.
    #[test]
    fn a_new_file_is_never_written_over_one_already_there() {
        let dir = tempfile::tempdir().unwrap();
        let run_as = RunAs { user: None };
        let path = dir.path().join("00000002.history");
        assert!(write_new(&path, b"placeholder", 0o600, &run_as).unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "placeholder");
        std::fs::write(&path, "1\t0/3000000\tno recovery target specified\n").unwrap();
        assert!(!write_new(&path, b"placeholder", 0o600, &run_as).unwrap());
        assert!(std::fs::read_to_string(&path).unwrap().starts_with("1\t"));
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "a temporary file left behind");
    }
}
