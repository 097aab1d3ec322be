//! The supervisor's moves, its kill of a postmaster tree, its naps.

use super::*;

#[test]
fn stops_fast_before_the_deadline_and_kills_at_it() {
    let ms = Duration::from_millis;
    assert_eq!(next_move(None, false), Move::Wait(POLL));
    assert_eq!(next_move(Some(5_000), false), Move::Wait(POLL));
    // wakes up at the moment the fast shutdown is due, not up to a poll later
    assert_eq!(next_move(Some(300), false), Move::Wait(ms(50)));
    assert_eq!(next_move(Some(250), false), Move::StopFast);
    assert_eq!(next_move(Some(1), false), Move::StopFast);
    // asked once; then waits for the deadline
    assert_eq!(next_move(Some(250), true), Move::Wait(POLL));
    assert_eq!(next_move(Some(40), true), Move::Wait(ms(40)));
    assert_eq!(next_move(Some(0), true), Move::Kill);
    assert_eq!(next_move(Some(0), false), Move::Kill);
    // a deadline disarmed after the request: the shutdown goes on, nothing is killed
    assert_eq!(next_move(None, true), Move::Wait(POLL));
}

#[test]
fn naps_on_the_boot_clock_for_as_long_as_asked() {
    let started = boot_clock_ms();
    nap_on_the_boot_clock(Duration::from_millis(60));
    let slept = boot_clock_ms() - started;
    assert!((60..1_000).contains(&slept), "slept {slept} ms");
}

#[test]
fn kills_a_process_and_its_children() {
    // A stand-in for a postmaster: a shell with two children that would outlive it.
    let mut parent = Command::new("/bin/sh")
        .arg("-c")
        .arg("sleep 60 & sleep 60 & wait")
        .spawn()
        .unwrap();
    let pid = parent.id() as i32;
    let deadline = Instant::now() + Duration::from_secs(5);
    while children_of(pid).len() < 2 {
        assert!(Instant::now() < deadline, "children did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    let children = children_of(pid);
    // Found by review: a postmaster that does not take the stop at once (blocked in I/O)
    // left its backends running for up to half a second past the deadline, more than
    // half the smallest safety margin. They are killed before the stop is waited for.
    let killing = std::thread::spawn(move || kill_tree(pid, |_| false));
    std::thread::sleep(Duration::from_millis(150));
    let alive: Vec<i32> = (children.iter().copied())
        .filter(|c| stat(*c).is_some_and(|(s, _)| s != 'Z'))
        .collect();
    killing.join().unwrap();
    assert!(
        alive.is_empty(),
        "backends {alive:?} ran on while the stop was awaited"
    );
    let status = parent.wait().unwrap();
    assert!(!status.success());
    for c in children {
        let deadline = Instant::now() + Duration::from_secs(5);
        while stat(c).is_some_and(|(s, _)| s != 'Z') {
            assert!(Instant::now() < deadline, "child {c} survived");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Arguments for a supervisor whose "postgres" is a script that leaves a mark when it runs.
fn marking_supervisor(dir: &Path) -> SuperviseArgs {
    let program = dir.join("postgres");
    std::fs::write(&program, "#!/bin/sh\ntouch \"$(dirname \"$0\")/ran\"\n").unwrap();
    std::fs::set_permissions(
        &program,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("data")).unwrap();
    SuperviseArgs {
        member: "n1".into(),
        lease_file: dir.join("n1.lease"),
        data_dir: dir.join("data"),
        log_file: dir.join("n1.log"),
        postgres: program,
        os_user: None,
        watchdog: WatchdogSetting::default(),
    }
}

/// Found by review: the supervisor spawned the postmaster and read the deadline only then, so
/// a postmaster whose deadline had passed ran until the kill a moment later. It is now never
/// started; one whose deadline is ahead (or disarmed) is.
#[test]
fn never_starts_a_postmaster_whose_deadline_has_passed() {
    let dir = tempfile::tempdir().unwrap();
    let args = marking_supervisor(dir.path());
    let lease = LeaseFile::at(&args.lease_file);
    lease.arm(boot_clock_ms().saturating_sub(1)).unwrap();
    assert_eq!(run(&args), EXIT_DEADLINE_PASSED);
    assert!(!dir.path().join("ran").exists(), "the postmaster ran");
    lease.arm(boot_clock_ms() + 60_000).unwrap();
    assert_eq!(run(&args), 0, "the script exits 0 once it ran");
    assert!(dir.path().join("ran").exists(), "the postmaster never ran");
    std::fs::remove_file(dir.path().join("ran")).unwrap();
    lease.disarm().unwrap();
    assert_eq!(run(&args), 0);
    assert!(
        dir.path().join("ran").exists(),
        "a disarmed start never ran"
    );
}

/// Status 3 says the deadline had passed only when the lease file shows it did: a postmaster
/// that exits 3 on its own is reported as what it is.
#[test]
fn a_refusal_is_told_from_a_postmaster_exiting_with_the_same_status() {
    use std::os::unix::process::ExitStatusExt as _;
    let dir = tempfile::tempdir().unwrap();
    let lease = LeaseFile::at(&dir.path().join("n1.lease"));
    let three = std::process::ExitStatus::from_raw(EXIT_DEADLINE_PASSED << 8);
    lease.arm(boot_clock_ms().saturating_sub(1)).unwrap();
    let said = why_it_exited(three, &lease);
    assert!(said.contains("fencing deadline"), "{said}");
    lease.arm(boot_clock_ms() + 60_000).unwrap();
    let said = why_it_exited(three, &lease);
    assert!(said.starts_with("postmaster exited"), "{said}");
}

/// An output nobody reads: every write waits for good (a full pipe, a stuck journald).
struct NeverRead;

impl std::io::Write for NeverRead {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        loop {
            std::thread::park();
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Found by review: the supervisor wrote each line to its stderr, the agent's, before it
/// acted: with nothing reading that output, it waited in the write of its first line, and the
/// postmaster ran on past its deadline. Its lines now go through a thread of their own, and a
/// postmaster (a stand-in that would sleep a minute and ignores the fast stop) is killed at
/// the deadline.
#[test]
fn fences_at_the_deadline_though_nothing_reads_what_it_says() {
    let dir = tempfile::tempdir().unwrap();
    let args = marking_supervisor(dir.path());
    std::fs::write(&args.postgres, "#!/bin/sh\ntrap '' INT\nexec sleep 60\n").unwrap();
    let lease = LeaseFile::at(&args.lease_file);
    let deadline = boot_clock_ms() + 1_000;
    lease.arm(deadline).unwrap();
    let (done, code) = std::sync::mpsc::channel();
    std::thread::spawn(move || done.send(run_saying(&args, NeverRead)));
    let code = code.recv_timeout(Duration::from_secs(10));
    let fenced_after = boot_clock_ms().saturating_sub(deadline);
    assert_eq!(code, Ok(0), "the supervisor fences (exit 0)");
    // it returns once it waited LAST_LINES for its stuck writer
    let bound = 1_000 + LAST_LINES.as_millis() as u64;
    assert!(
        fenced_after < bound,
        "fenced {fenced_after} ms after the deadline"
    );
}
