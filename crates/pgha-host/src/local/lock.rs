//! An exclusive lock on a cluster directory, so two `pgha up` never drive the same members.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

use crate::error::CliError;

pub const LOCK_FILE: &str = ".pgha.lock";

/// Held for as long as the value lives; the kernel releases it if the process dies.
pub struct DirLock {
    _lock: Flock<File>,
}

impl DirLock {
    pub fn acquire(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join(LOCK_FILE);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut lock) => {
                lock.set_len(0)?;
                lock.seek(SeekFrom::Start(0))?;
                writeln!(lock, "{}", std::process::id())?;
                Ok(DirLock { _lock: lock })
            }
            Err((mut file, _)) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                Err(CliError::Locked {
                    dir: dir.to_path_buf(),
                    pid: text.trim().parse().ok(),
                }
                .into())
            }
        }
    }
}
