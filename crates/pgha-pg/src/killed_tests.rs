use std::process::{Child, Command};

use super::*;

#[test]
fn a_thread_is_doomed_only_dead_exiting_or_with_sigkill_pending() {
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

/// The pids of `instance`'s processes, its postmaster `pm` living.
fn pids_of(instance: &InstanceId, pm: i32) -> BTreeSet<i32> {
    let procs = instance.processes(Some(pm)).expect("/proc read in full");
    procs.iter().map(|p| p.pid).collect()
}

fn alive(child: &mut Child) -> bool {
    child.try_wait().unwrap().is_none()
}

fn within(mut check: impl FnMut() -> bool) -> bool {
    (0..300).any(|_| {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
        false
    })
}

/// The processes of an instance are those of its postmaster's program in its data directory,
/// under its user: a kill takes them all, and neither another server's (another directory)
/// nor a shell someone opened in the data directory. What runs, or stands stopped, is not
/// killed; what a dead postmaster left is still found by the instance kept.
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
    let mut instance = None;
    assert!(within(|| {
        instance = InstanceId::of(pm).filter(|i| i.processes(Some(pm)).unwrap().len() == 2);
        instance.is_some()
    }));
    let instance = instance.unwrap();
    let pids = pids_of(&instance, pm);
    assert_eq!(pids, BTreeSet::from([pm, backend.id() as i32]));
    assert!(
        !instance.all_killed(Some(pm)),
        "running processes are not killed"
    );
    kill(Pid::from_raw(pm), Signal::SIGSTOP).unwrap();
    assert!(
        !instance.all_killed(Some(pm)),
        "a stopped postmaster is not killed"
    );
    kill(Pid::from_raw(pm), Signal::SIGCONT).unwrap();
    // The postmaster gone (here: only it), what it left still counts.
    kill(Pid::from_raw(pm), Signal::SIGKILL).unwrap();
    postmaster.wait().unwrap();
    assert!(!instance.all_killed(None), "a process it left runs");
    assert_eq!(instance.kill(None), 1);
    assert!(
        within(|| !alive(&mut backend)),
        "what it left was not killed"
    );
    assert!(instance.all_killed(None), "nothing of it is left");
    assert!(
        alive(&mut elsewhere),
        "a process in another directory was killed"
    );
    assert!(
        alive(&mut shell),
        "a shell in the data directory was killed"
    );
    for mut child in [elsewhere, shell] {
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

/// A living postmaster and its tree: killed, the postmaster first stopped so it forks nothing.
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
    let mut child = None;
    assert!(within(|| {
        let moved = |c: &i32| {
            std::fs::read_link(format!("/proc/{c}/cwd")).is_ok_and(|d| d == Path::new("/"))
        };
        child = crate::supervisor::children_of(pm).into_iter().find(moved);
        child.is_some()
    }));
    let child = child.unwrap();
    let instance = InstanceId::of(pm).unwrap();
    let pids = pids_of(&instance, pm);
    assert_eq!(pids, BTreeSet::from([pm, child]));
    assert!(!instance.all_killed(Some(pm)));
    assert_eq!(instance.kill(Some(pm)), 2);
    postmaster.wait().unwrap();
    assert!(
        within(|| doomed(child)),
        "the child elsewhere was not killed"
    );
}

#[test]
fn a_killed_process_not_reaped_yet_is_doomed() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = sleeper(dir.path(), "sleep");
    let pid = child.id() as i32;
    assert!(!doomed(pid));
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    assert!(within(
        || stat_fields(&proc_path(pid).join("stat")).is_ok_and(|f| f[0] == "Z")
    ));
    assert!(doomed(pid));
    child.wait().unwrap();
    assert!(doomed(pid), "gone");
}

/// Set in the child of [`nothing_is_shown_killed_by_a_proc_that_cannot_be_read`].
const NO_DESCRIPTORS_LEFT: &str = "PGHA_TEST_NO_DESCRIPTORS_LEFT";

/// Found by review: a `/proc` that could not be listed (no descriptor left) showed no process,
/// and "every process of the instance killed" held of nothing, so a demoted leader could
/// release its lease while one still ran. An instance whose one process (a `sleep`) is gone
/// is shown killed; in a process with every descriptor used up (this test binary run again,
/// its open-file limit lowered under the descriptors it holds), nothing is.
#[test]
fn nothing_is_shown_killed_by_a_proc_that_cannot_be_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut sleep = sleeper(dir.path(), "sleep");
    let instance = InstanceId::of(sleep.id() as i32).expect("the sleep's instance");
    sleep.kill().unwrap();
    sleep.wait().unwrap();
    assert!(instance.all_killed(None), "its one process is gone");
    if std::env::var_os(NO_DESCRIPTORS_LEFT).is_some() {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit read or fill the struct they are given, nothing else.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
            0
        );
        limit.rlim_cur = 3;
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
        let shown = instance.all_killed(None);
        std::process::exit(if shown { 1 } else { 0 });
    }
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "killed::tests::nothing_is_shown_killed_by_a_proc_that_cannot_be_read",
            "--test-threads=1",
        ])
        .env(NO_DESCRIPTORS_LEFT, "1")
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "shown killed without a look at /proc"
    );
}
