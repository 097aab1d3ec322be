use std::process::{Child, Command};

use super::*;

#[test]
fn a_process_is_doomed_only_dead_exiting_or_with_sigkill_pending() {
    let status = |state: &str, sig: &str, shd: &str| {
        format!("Name:\tpostgres\nState:\t{state}\nSigPnd:\t{sig}\nShdPnd:\t{shd}\n")
    };
    let none = "0000000000000000";
    // blocked on a frozen disk, killed: SIGKILL pending, for the thread or the process
    assert!(doomed_by(
        &status("D (disk sleep)", "0000000000000100", none),
        0
    ));
    assert!(doomed_by(
        &status("D (disk sleep)", none, "0000000000000100"),
        0
    ));
    // SIGKILL among other signals pending
    assert!(doomed_by(
        &status("D (disk sleep)", "0000000000004102", none),
        0
    ));
    assert!(doomed_by(&status("Z (zombie)", none, none), 0));
    assert!(doomed_by(&status("X (dead)", none, none), 0));
    assert!(doomed_by(&status("D (disk sleep)", none, none), PF_EXITING));
    // blocked or stopped with no kill pending, or only a SIGTERM (bit 15) or SIGQUIT (bit 3)
    assert!(!doomed_by(&status("D (disk sleep)", none, none), 0));
    assert!(!doomed_by(&status("T (stopped)", none, none), 0));
    assert!(!doomed_by(
        &status("S (sleeping)", "0000000000004000", "0000000000000004"),
        0
    ));
    assert!(!doomed_by(&status("R (running)", none, none), 0x40));
}

fn sleeper(dir: &Path, program: &str) -> Child {
    let mut cmd = Command::new(program);
    if program.ends_with("sh") {
        // a builtin waiting on a pipe kept open: no child of another program
        cmd.args(["-c", "read line"])
            .stdin(std::process::Stdio::piped());
    } else {
        cmd.arg("60");
    }
    cmd.current_dir(dir).spawn().unwrap()
}

fn alive(child: &mut Child) -> bool {
    child.try_wait().unwrap().is_none()
}

/// The processes of an instance are those of its postmaster's program in its data directory:
/// a kill takes them all, and neither another server's (another directory) nor a shell someone
/// opened in the data directory. What runs, or stands stopped, is not killed.
#[test]
fn an_instance_is_its_programs_processes_in_its_data_directory_and_they_are_killed() {
    let root = tempfile::tempdir().unwrap();
    let (data, other) = (root.path().join("data"), root.path().join("other"));
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&other).unwrap();
    let mut postmaster = sleeper(&data, "sleep");
    let mut backend = sleeper(&data, "sleep");
    let mut elsewhere = sleeper(&other, "sleep");
    let mut shell = sleeper(&data, "/bin/sh");
    let pm = postmaster.id() as i32;
    // (a process that has not reached its working directory yet is not one of them)
    let found = |expected: usize| {
        for _ in 0..200 {
            let (dir, program) = instance_of(&data, pm).unwrap();
            let procs = instance_processes(dir, program);
            if procs.len() == expected {
                return procs;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("the instance never had {expected} processes");
    };
    let procs = found(2);
    let pids: BTreeSet<i32> = procs.iter().map(|p| p.pid).collect();
    assert_eq!(pids, BTreeSet::from([pm, backend.id() as i32]));
    assert!(!all_killed(&data, pm), "running processes are not killed");
    kill(Pid::from_raw(pm), Signal::SIGSTOP).unwrap();
    assert!(!all_killed(&data, pm), "a stopped postmaster is not killed");
    kill(Pid::from_raw(pm), Signal::SIGCONT).unwrap();

    assert_eq!(kill_instance(&data, pm), 2, "two could run");
    let ended = |child: &mut Child| {
        for _ in 0..200 {
            if !alive(child) {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        false
    };
    assert!(ended(&mut postmaster), "the postmaster was not killed");
    assert!(
        ended(&mut backend),
        "the other process of the instance was not killed"
    );
    assert!(
        alive(&mut elsewhere),
        "a process in another directory was killed"
    );
    assert!(
        alive(&mut shell),
        "a shell in the data directory was killed"
    );
    // Reaped, the postmaster is gone: nothing left to show, and nothing is claimed.
    assert!(!all_killed(&data, pm));
    for mut child in [elsewhere, shell] {
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

#[test]
fn a_killed_process_not_reaped_yet_is_doomed() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = sleeper(dir.path(), "sleep");
    let pid = child.id() as i32;
    assert!(!doomed(pid));
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    let zombie = (0..200).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(10));
        stat_fields(pid).is_some_and(|f| f[0] == "Z")
    });
    assert!(zombie);
    assert!(doomed(pid));
    child.wait().unwrap();
    assert!(doomed(pid), "gone");
}

/// A child of the postmaster that left the data directory (an extension's `chdir`) is still
/// one of its processes: killed with it, and looked at before the instance counts as killed.
#[test]
fn a_child_of_the_postmaster_elsewhere_is_one_of_its_processes() {
    let data = tempfile::tempdir().unwrap();
    let mut postmaster = Command::new("/bin/sh")
        .args(["-c", "cd / && sleep 60 & wait"])
        .current_dir(data.path())
        .spawn()
        .unwrap();
    let pm = postmaster.id() as i32;
    let child = (0..200)
        .find_map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(10));
            let children = crate::supervisor::children_of(pm);
            let moved = |c: &i32| {
                std::fs::read_link(format!("/proc/{c}/cwd")).is_ok_and(|d| d == Path::new("/"))
            };
            children.into_iter().find(moved)
        })
        .expect("the shell's child never ran in /");
    let (dir, program) = instance_of(data.path(), pm).unwrap();
    let pids: BTreeSet<i32> = with_children(dir, program, pm)
        .iter()
        .map(|p| p.pid)
        .collect();
    assert_eq!(pids, BTreeSet::from([pm, child]));
    assert!(!all_killed(data.path(), pm));
    assert_eq!(kill_instance(data.path(), pm), 2);
    postmaster.wait().unwrap();
    let gone = (0..200).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(10));
        doomed(child)
    });
    assert!(gone, "the child elsewhere was not killed");
}
