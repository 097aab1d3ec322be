//! pgha as a container's pid 1: a small init that reaps every orphan and passes signals on.

use nix::errno::Errno;
use nix::sys::signal::{kill, sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

/// The signals a container runtime or an operator sends that the command itself must see.
const PASSED_ON: [Signal; 6] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// When this process is pid 1 (a container whose command is `pgha ...`, started without an
/// init such as `docker run --init`), forks. The child returns and runs the command; this
/// process stays pid 1 and never returns: the kernel hands it every process whose parent
/// died (a killed supervisor's postmaster, that postmaster's backends, whatever a callback
/// left behind), and it reaps each one, which nothing else would, so none stays a zombie. It
/// passes the signals of [`PASSED_ON`] on to the child, and exits with the child's status
/// once the child has ended (128 + the signal's number when a signal ended it). Anywhere but
/// pid 1 it returns at once. Call it before any thread starts.
pub fn become_init_if_pid_1() {
    if std::process::id() != 1 {
        return;
    }
    let mut waited = SigSet::empty();
    for signal in PASSED_ON {
        waited.add(signal);
    }
    waited.add(Signal::SIGCHLD);
    let mut before = SigSet::empty();
    if let Err(e) = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&waited), Some(&mut before)) {
        eprintln!("pgha: as pid 1, cannot block signals to wait for them ({e}): orphans will not be reaped");
        return;
    }
    // SAFETY: no other thread exists yet (see above), so the child may run anything.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => restore(&before),
        Ok(ForkResult::Parent { child }) => std::process::exit(reap_and_pass_on(child, &waited)),
        Err(e) => {
            eprintln!("pgha: as pid 1, cannot fork the process that reaps orphans ({e}): they will stay zombies");
            restore(&before);
        }
    }
}

fn restore(mask: &SigSet) {
    if let Err(e) = sigprocmask(SigmaskHow::SIG_SETMASK, Some(mask), None) {
        eprintln!("pgha: cannot unblock signals after forking ({e})");
    }
}

/// The init's loop: reaps whatever has exited, waits for the next signal (`waited` blocked, so
/// none is lost between the two), passes it on unless it says a child exited. Returns the
/// exit code of `child` once it has ended.
fn reap_and_pass_on(child: Pid, waited: &SigSet) -> i32 {
    loop {
        if let Some(code) = reap_all(child) {
            return code;
        }
        match waited.wait() {
            Ok(Signal::SIGCHLD) | Err(_) => {}
            Ok(signal) => {
                // The child gone meanwhile (ESRCH) is seen at the next reaping.
                let _ = kill(child, signal);
            }
        }
    }
}

/// Reaps every process that has exited; the exit code of `child` if it was one of them.
fn reap_all(child: Pid) -> Option<i32> {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == child => return Some(code),
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid == child => {
                return Some(128 + signal as i32)
            }
            Ok(WaitStatus::StillAlive) => return None,
            Ok(_) | Err(Errno::EINTR) => {}
            // No child at all: the command's process cannot have been missed (it is reaped
            // only here), so this is not expected; end rather than wait forever.
            Err(Errno::ECHILD) => return Some(1),
            Err(_) => return None,
        }
    }
}
