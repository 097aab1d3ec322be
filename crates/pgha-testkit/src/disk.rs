//! A file system of a test's own: an ext4 image mounted through a loop device, which the test
//! can stall (`fsfreeze`) or crash as a host losing power does (what was not flushed is lost).
//! The image lives in memory (a tmpfs of its own), so that a test filling it to the last byte
//! never fills the machine's disk, which other tests running beside it write to.

use crate::output::must;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// An ext4 image file mounted at a directory of its own (root only: it mounts).
pub struct LoopDisk {
    mount: PathBuf,
    /// The tmpfs the image is in (as `image`), as large as the image.
    backing: PathBuf,
    /// The loop device it is mounted from (`/dev/loopN`).
    device: String,
    frozen: bool,
}

// EXT4_IOC_SHUTDOWN (the number XFS_IOC_GOINGDOWN has too): the file system stops at once.
nix::ioctl_read!(ext4_shutdown, b'X', 125, u32);
/// EXT4_GOING_FLAGS_NOLOGFLUSH: stop without committing the running journal transaction.
const NO_LOG_FLUSH: u32 = 2;

impl LoopDisk {
    /// Creates an ext4 image of `mib` MiB in a tmpfs mounted at `backing` (created if missing)
    /// and mounts it at `mount` (created if missing), traversable by all and written by root
    /// only.
    pub fn mount(backing: &Path, mount: &Path, mib: u64) -> LoopDisk {
        std::fs::create_dir_all(backing).unwrap();
        std::fs::create_dir_all(mount).unwrap();
        // the image's size and a page or two for the tmpfs's own bookkeeping
        let room = format!("size={}k,mode=700", mib * 1024 + 64);
        must(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", &room, "tmpfs"])
                .arg(backing),
        );
        // owned from here: a step failing below still unmounts the tmpfs
        let mut disk = LoopDisk {
            mount: mount.to_path_buf(),
            backing: backing.to_path_buf(),
            device: String::new(),
            frozen: false,
        };
        must(
            Command::new("truncate")
                .args(["-s", &format!("{mib}M")])
                .arg(disk.image()),
        );
        must(
            Command::new("mkfs.ext4")
                .args(["-q", "-F"])
                .arg(disk.image()),
        );
        disk.attach();
        must(Command::new("chmod").arg("755").arg(mount));
        disk
    }

    /// The image file, in its tmpfs.
    fn image(&self) -> PathBuf {
        self.backing.join("image")
    }

    /// Mounts the image through a loop device of its own. Never one it had before: processes
    /// started in a network namespace (`ip netns exec`) hold a copy of every mount there was,
    /// and with it the file system a crash shut down, which `mount -o loop` would find again
    /// on the device it was attached to.
    fn attach(&mut self) {
        let out = must(
            Command::new("losetup")
                .args(["--find", "--show"])
                .arg(self.image()),
        );
        self.device = String::from_utf8_lossy(&out.stdout).trim().to_string();
        must(Command::new("mount").arg(&self.device).arg(&self.mount));
    }

    /// Unmounts it and lets its loop device go (at once, or once no namespace holds it).
    fn detach(&self) {
        unmount(&self.mount);
        let _ = Command::new("losetup").arg("-d").arg(&self.device).output();
    }

    /// Where the file system is mounted.
    pub fn path(&self) -> &Path {
        &self.mount
    }

    /// Every write and fsync to the file system waits until [`LoopDisk::thaw`] (or the drop).
    pub fn freeze(&mut self) {
        must(Command::new("fsfreeze").arg("-f").arg(&self.mount));
        self.frozen = true;
    }

    pub fn thaw(&mut self) {
        if std::mem::take(&mut self.frozen) {
            must(Command::new("fsfreeze").arg("-u").arg(&self.mount));
        }
    }

    /// The disk fails for good, as one whose device stopped answering with errors: the file
    /// system stops at once (`EXT4_IOC_SHUTDOWN`) and every write to it fails with `EIO` from
    /// then on, until [`LoopDisk::lose_power`] mounts it again (or the drop).
    pub fn fail(&mut self) {
        assert!(
            !self.frozen,
            "thaw {} before failing it",
            self.mount.display()
        );
        let dir = std::fs::File::open(&self.mount).unwrap();
        let mut flags = NO_LOG_FLUSH;
        // SAFETY: the ioctl reads one u32 from a valid pointer, on a descriptor we own.
        unsafe { ext4_shutdown(dir.as_raw_fd(), &mut flags) }
            .unwrap_or_else(|e| panic!("shut down {}: {e}", self.mount.display()));
    }

    /// The host loses power, for this file system: it stops at once and keeps only what its
    /// journal had committed (what an fsync made durable), as xfstests' `godown` does; then it
    /// is mounted again, its journal replayed. The processes that used it must be ending (as
    /// the host's would be): this waits up to 10 s for the last of them.
    pub fn lose_power(&mut self) {
        assert!(
            !self.frozen,
            "thaw {} before crashing it",
            self.mount.display()
        );
        let gone = crate::wait::poll(Duration::from_secs(10), Duration::from_millis(20), || {
            self.users().is_empty().then_some(())
        });
        assert!(
            gone.is_some(),
            "processes still use {}: {:?}",
            self.mount.display(),
            self.users()
        );
        let dir = std::fs::File::open(&self.mount).unwrap();
        let mut flags = NO_LOG_FLUSH;
        // SAFETY: the ioctl reads one u32 from a valid pointer, on a descriptor we own.
        unsafe { ext4_shutdown(dir.as_raw_fd(), &mut flags) }
            .unwrap_or_else(|e| panic!("shut down {}: {e}", self.mount.display()));
        drop(dir);
        must(Command::new("umount").arg(&self.mount));
        let _ = Command::new("losetup").arg("-d").arg(&self.device).output();
        self.attach();
    }

    /// The processes (pid, command line) whose working directory or an open file is on it.
    pub fn users(&self) -> Vec<(u32, String)> {
        let on_disk =
            |link: PathBuf| std::fs::read_link(link).is_ok_and(|t| t.starts_with(&self.mount));
        let pids = std::fs::read_dir("/proc").into_iter().flatten().flatten();
        pids.filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                let proc = PathBuf::from(format!("/proc/{pid}"));
                on_disk(proc.join("cwd"))
                    || std::fs::read_dir(proc.join("fd"))
                        .into_iter()
                        .flatten()
                        .flatten()
                        .any(|fd| on_disk(fd.path()))
            })
            .map(|pid| (pid, crate::process::cmdline(pid)))
            .collect()
    }
}

impl Drop for LoopDisk {
    /// Thaws, unmounts and removes the image and its tmpfs (a test that panics leaves no
    /// mount behind).
    fn drop(&mut self) {
        if self.frozen {
            let _ = Command::new("fsfreeze").arg("-u").arg(&self.mount).output();
        }
        self.detach();
        let _ = std::fs::remove_file(self.image());
        unmount(&self.backing);
    }
}

/// Unmounts `mount`; one a process still holds is detached now, and the kernel frees it once
/// they are gone.
pub fn unmount(mount: &Path) {
    let out = Command::new("umount").arg(mount).output();
    if !out.as_ref().is_ok_and(|o| o.status.success()) {
        let _ = Command::new("umount").arg("-l").arg(mount).output();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The crash keeps what was made durable and loses what was not: the simulation is only
    /// worth the tests that lean on it if both halves hold.
    #[test]
    fn a_power_loss_keeps_what_was_synced_and_loses_a_rename_that_was_not() {
        let tmp = tempfile::tempdir().unwrap();
        let mut disk = LoopDisk::mount(&tmp.path().join("img"), &tmp.path().join("m"), 32);
        let synced = disk.path().join("synced");
        std::fs::write(&synced, "kept").unwrap();
        must(&mut Command::new("sync"));
        let staged = disk.path().join("staged");
        let file = std::fs::File::create(&staged).unwrap();
        std::io::Write::write_all(&mut &file, b"lost").unwrap();
        file.sync_all().unwrap();
        drop(file);
        std::fs::rename(&staged, disk.path().join("renamed")).unwrap();
        disk.lose_power();
        assert_eq!(std::fs::read_to_string(&synced).unwrap(), "kept");
        assert!(
            !disk.path().join("renamed").exists(),
            "a rename no fsync of its directory committed survived the crash"
        );
    }
}
