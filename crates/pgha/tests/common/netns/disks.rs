//! A member's own disk (fsfreeze, full file systems), and etcd's.

use super::*;

use std::path::{Path, PathBuf};

use pgha_testkit::disk::unmount;
use pgha_testkit::LoopDisk;

/// A member's directory on an ext4 image of its own, mounted through a loop device: `fsfreeze`
/// stalls every write to it (and every fsync) until thawed, as a disk that stops answering.
pub(super) struct MemberDisk {
    member: String,
    pub(super) disk: LoopDisk,
}

impl MemberDisk {
    pub(super) fn mount(root: &Path, mount: &Path) -> MemberDisk {
        let member = mount.file_name().unwrap().to_str().unwrap().to_string();
        let backing = root.join(format!("{member}.disk"));
        MemberDisk {
            disk: LoopDisk::mount(&backing, mount, 1024),
            member,
        }
    }

    fn freeze(&mut self) {
        self.disk.freeze();
    }

    pub(super) fn thaw(&mut self) {
        self.disk.thaw();
    }

    fn filler(&self) -> PathBuf {
        self.disk.path().join("disk-filler")
    }

    pub(super) fn unmount(self) {
        drop(self.disk);
    }
}

/// Writes `file` until its file system has no byte left (root's reserved blocks included).
fn fill_file_system(file: &Path) {
    let out = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", file.display()))
        .args(["bs=1M", "status=none"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("No space left on device"),
        "dd did not fill the file system of {}: {said}",
        file.display()
    );
}

/// Where member `name`'s directory is: `root/nN`, or `root/nN-host/nN` with
/// [`Opts::host_disks`].
pub(super) fn member_dir(root: &Path, name: &str, opts: &Opts) -> PathBuf {
    if opts.host_disks {
        root.join(format!("{name}-host")).join(name)
    } else {
        root.join(name)
    }
}

/// The small file system a member's directory sits on ([`Opts::host_disks`]): a tmpfs that
/// a test fills to the last byte, for root as well (tmpfs reserves nothing).
pub(super) struct HostDisk {
    member: String,
    mount: PathBuf,
}

impl HostDisk {
    pub(super) fn mount(root: &Path, member: &str) -> HostDisk {
        let mount = root.join(format!("{member}-host"));
        std::fs::create_dir_all(&mount).unwrap();
        must(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=16m,mode=755", "tmpfs"])
                .arg(&mount),
        );
        HostDisk {
            member: member.to_string(),
            mount,
        }
    }

    fn filler(&self) -> PathBuf {
        self.mount.join("filler")
    }

    fn fill(&self) {
        fill_file_system(&self.filler());
    }

    fn free(&self) {
        std::fs::remove_file(self.filler()).unwrap();
    }

    pub(super) fn unmount(self) {
        unmount(&self.mount);
    }
}

impl Cluster {
    /// Fills the file system `member`'s directory sits on ([`Opts::host_disks`]): its lease
    /// file can no longer be written; its data directory, on a disk of its own, can.
    pub fn fill_host_disk(&mut self, member: &str) {
        self.host_disk(member).fill();
    }

    pub fn free_host_disk(&mut self, member: &str) {
        self.host_disk(member).free();
    }

    fn host_disk(&self, member: &str) -> &HostDisk {
        self.host_disks
            .iter()
            .find(|d| d.member == member)
            .unwrap_or_else(|| panic!("{member} has no host disk (Opts::host_disks)"))
    }
}

impl Cluster {
    /// Stalls `member`'s disk ([`Opts::member_disks`]): every write and fsync to its
    /// directory waits until [`Cluster::thaw_disk`].
    /// Stalls etcd member `i`'s disk ([`Opts::etcd_disks`]): its WAL writes and fsyncs wait.
    pub fn freeze_etcd_disk(&mut self, i: usize) {
        self.etcd_disks[i].freeze();
    }

    pub fn thaw_etcd_disk(&mut self, i: usize) {
        self.etcd_disks[i].thaw();
    }

    pub fn freeze_disk(&mut self, member: &str) {
        self.disk(member).freeze();
    }

    pub fn thaw_disk(&mut self, member: &str) {
        self.disk(member).thaw();
    }

    /// Fills `member`'s own disk ([`Opts::member_disks`]) to the last byte: its PostgreSQL can
    /// no longer write WAL or data.
    pub fn fill_disk(&mut self, member: &str) {
        fill_file_system(&self.disk(member).filler());
    }

    pub fn free_disk(&mut self, member: &str) {
        std::fs::remove_file(self.disk(member).filler()).unwrap();
    }

    fn disk(&mut self, member: &str) -> &mut MemberDisk {
        self.disks
            .iter_mut()
            .find(|d| d.member == member)
            .unwrap_or_else(|| panic!("{member} has no disk of its own (Opts::member_disks)"))
    }
}
