//! Room on a file system: the bytes left there, and the bytes a directory tree takes.

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use crate::error::{PgError, Result};

/// Bytes a process that is not root can still write on the file system holding `path`
/// (root's reserved blocks left out: PostgreSQL and pg_basebackup run as their OS user).
pub fn available_bytes(path: &Path) -> Result<u64> {
    let stat = nix::sys::statvfs::statvfs(path).map_err(|e| {
        PgError::io(
            format!("read the free space of {}", path.display()),
            std::io::Error::from(e),
        )
    })?;
    Ok(stat.blocks_available() as u64 * stat.fragment_size() as u64)
}

/// Bytes the files under `dir` take on disk (allocated blocks, hard links counted once per
/// name, symbolic links not followed, other file systems mounted below not entered).
pub fn tree_bytes(dir: &Path) -> Result<u64> {
    let top = std::fs::symlink_metadata(dir)
        .map_err(|e| PgError::io(format!("read {}", dir.display()), e))?;
    let mut total = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        let entries = std::fs::read_dir(&next)
            .map_err(|e| PgError::io(format!("list {}", next.display()), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| PgError::io(format!("list {}", next.display()), e))?;
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                // removed meanwhile (a temporary file of a running server)
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(PgError::io(format!("read {}", entry.path().display()), e)),
            };
            total += meta.blocks() * 512;
            if meta.is_dir() && meta.dev() == top.dev() {
                pending.push(entry.path());
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_takes_what_its_files_take_and_the_disk_has_room() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("base")).unwrap();
        std::fs::write(tmp.path().join("base/1"), vec![7u8; 100_000]).unwrap();
        std::fs::write(tmp.path().join("PG_VERSION"), "15\n").unwrap();
        let taken = tree_bytes(tmp.path()).unwrap();
        assert!((100_000..200_000).contains(&taken), "{taken}");
        assert!(available_bytes(tmp.path()).unwrap() > 0);
        assert!(tree_bytes(&tmp.path().join("absent")).is_err());
    }
}
