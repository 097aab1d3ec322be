//! Processes by pid: signals, liveness (a zombie is dead), /proc facts, and stopping a child.

use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Sends `sig` to `pid`; whether it was delivered.
pub fn signal(pid: u32, sig: Signal) -> bool {
    kill(Pid::from_raw(pid as i32), sig).is_ok()
}

/// What `/proc/PID/stat` says of a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcStat {
    /// The state letter (`R`, `S`, `T` stopped, `Z` zombie, ...).
    pub state: char,
    pub ppid: u32,
    /// Start time in clock ticks after boot: with the pid, it names one process for good.
    pub start: u64,
}

/// The state, parent and start time of `pid`, if it exists.
pub fn proc_stat(pid: u32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`: comm may hold spaces and parentheses, split after the last ')'
    let (_, rest) = text.rsplit_once(')')?;
    // fields 3.. of proc(5): state, ppid, ..., starttime is field 22
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

/// Whether `pid` lives: a zombie still "exists" for kill(0), so its /proc state is read too.
pub fn alive(pid: u32) -> bool {
    kill(Pid::from_raw(pid as i32), None).is_ok()
        && proc_stat(pid).is_some_and(|s| !matches!(s.state, 'Z' | 'X'))
}

/// Whether `pid` is stopped (SIGSTOP: state `T`).
pub fn is_stopped(pid: u32) -> bool {
    proc_stat(pid).is_some_and(|s| s.state == 'T')
}

/// The parent of a living `pid`.
pub fn parent_of(pid: u32) -> Option<u32> {
    proc_stat(pid).map(|s| s.ppid)
}

/// The pids whose parent is `parent`.
pub fn children_of(parent: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| proc_stat(*p).is_some_and(|s| s.ppid == parent))
        .collect()
}

/// The command line of `pid` (its process title, for PostgreSQL's processes), arguments
/// joined by spaces; empty when it is gone.
pub fn cmdline(pid: u32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&raw).replace('\0', " ")
}

/// Sends `sig` to `child` (after SIGCONT, so that a stopped process sees it), waits up to
/// `patience` for it to exit, then SIGKILLs it; reaps it in any case. Its exit status when it
/// exited within `patience`.
pub fn stop_child(child: &mut Child, sig: Signal, patience: Duration) -> Option<ExitStatus> {
    signal(child.id(), Signal::SIGCONT);
    signal(child.id(), sig);
    reap(child, patience)
}

/// Waits up to `patience` for `child` to exit, then SIGKILLs it; reaps it in any case. Its exit
/// status when it exited within `patience`.
pub fn reap(child: &mut Child, patience: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + patience;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() <= deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// Runs `cmd` (its output discarded, its standard error kept) until it exits, at most
/// `patience`: its exit status and standard error, or `None` (it is killed) when it still ran.
pub fn exit_within(
    mut cmd: std::process::Command,
    patience: Duration,
) -> Option<(ExitStatus, String)> {
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn the command");
    let status = reap(&mut child, patience)?;
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().expect("piped"), &mut stderr)
        .expect("read its standard error");
    Some((status, stderr))
}
