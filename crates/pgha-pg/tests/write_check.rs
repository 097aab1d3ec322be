//! Whether a data directory's file system takes a write (`beneath::takes_a_write`), on an ext4
//! file system of the test's own (root only: it mounts): answered at once while healthy,
//! waited for while frozen (fsfreeze), failed once the disk fails, and nothing left behind.

use std::sync::mpsc;
use std::time::Duration;

use pgha_pg::beneath::{takes_a_write, WriteCheck};
use pgha_pg::osuser::RunAs;
use pgha_testkit::LoopDisk;

#[test]
fn a_write_check_waits_for_a_frozen_disk_and_fails_on_a_failed_one() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "this test mounts a file system of its own: run it as root (CI does)"
    );
    let run_as = RunAs::detect("postgres").expect("the postgres OS user");
    let tmp = tempfile::tempdir().unwrap();
    let mut disk = LoopDisk::mount(&tmp.path().join("backing"), &tmp.path().join("disk"), 64);
    let data = disk.path().join("data");
    std::fs::create_dir(&data).unwrap();
    run_as.chown(&data).unwrap();

    assert_eq!(takes_a_write(&data, &run_as).unwrap(), WriteCheck::Taken);
    let left: Vec<_> = std::fs::read_dir(&data).unwrap().collect();
    assert!(
        left.is_empty(),
        "the check left {left:?} in {}",
        data.display()
    );
    assert_eq!(
        takes_a_write(&disk.path().join("absent"), &run_as).unwrap(),
        WriteCheck::NoDirectory
    );

    disk.freeze();
    let (tx, rx) = mpsc::channel();
    let (dir, user) = (data.clone(), run_as.clone());
    std::thread::spawn(move || tx.send(takes_a_write(&dir, &user).map_err(|e| e.to_string())));
    assert!(
        rx.recv_timeout(Duration::from_secs(1)).is_err(),
        "the check answered while the disk was frozen"
    );
    disk.thaw();
    let answer = rx.recv_timeout(Duration::from_secs(10));
    assert_eq!(answer, Ok(Ok(WriteCheck::Taken)), "once the disk thawed");

    disk.fail();
    let failed = takes_a_write(&data, &run_as).expect_err("a check on a failed disk");
    assert!(
        failed.to_string().contains(&data.display().to_string()),
        "{failed}"
    );
}
