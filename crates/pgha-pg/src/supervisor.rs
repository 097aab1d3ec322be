//! The member supervisor (`pgha supervise`): a small process of its own that is the parent of
//! one postmaster. The postmaster dies with it (parent-death signal); as the deadline in the
//! member's lease file nears it stops PostgreSQL fast, and once the deadline passes it kills the
//! postmaster and every backend — whether the agent that armed that deadline is alive, dead,
//! paused or restarting without its store.

use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::lease_file::{boot_clock_ms, LeaseFile};
use crate::osuser::RunAs;
use crate::pid_file::PidFileHolder;
use crate::watchdog::{Keeper, Watchdog};

mod args;
mod say;
pub use args::{watchdog_of_supervisor, SuperviseArgs, WatchdogSetting};
use say::Say;

/// How long an exiting supervisor waits for its last lines to be written.
const LAST_LINES: Duration = Duration::from_millis(500);

/// How often the supervisor looks at its postmaster and the lease file at most.
const POLL: Duration = Duration::from_millis(100);

/// How long before its deadline the supervisor asks PostgreSQL for a fast shutdown: the
/// backends end first, then the walsenders send the standbys every record written (so a commit
/// acknowledged as the deadline nears is not lost with the primary), and whatever still runs
/// at the deadline is killed. Half the smallest safety margin the configuration accepts
/// (`pgha_core::config::MIN_SAFETY_MARGIN_MS`): an agent that is alive demotes half a margin
/// before the deadline, so it has either renewed or demoted by then; a supervisor never stops a
/// primary its agent still keeps.
pub const STOP_FAST_BEFORE: Duration = Duration::from_millis(250);

/// What the supervisor does next with its postmaster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Move {
    /// Look again after this long.
    Wait(Duration),
    /// Ask for a fast shutdown (SIGINT): the deadline is [`STOP_FAST_BEFORE`] away or less.
    StopFast,
    /// Kill the postmaster and every backend: the deadline has passed.
    Kill,
}

/// The next move with `remaining` ms before the deadline (`None`: disarmed), `stopping` once
/// a fast shutdown was asked for.
fn next_move(remaining: Option<u64>, stopping: bool) -> Move {
    let lead = STOP_FAST_BEFORE.as_millis() as u64;
    match remaining {
        None => Move::Wait(POLL),
        Some(0) => Move::Kill,
        Some(ms) if !stopping && ms <= lead => Move::StopFast,
        Some(ms) => {
            let until = if stopping { ms } else { ms - lead };
            Move::Wait(POLL.min(Duration::from_millis(until)))
        }
    }
}

/// Exit code of a supervisor that did not start PostgreSQL because its fencing deadline had
/// already passed.
pub const EXIT_DEADLINE_PASSED: i32 = 3;

/// Why a supervisor started to run PostgreSQL exited before PostgreSQL accepted connections
/// (its status 3 is the postmaster's own unless the lease file shows the deadline passed).
pub fn why_it_exited(status: std::process::ExitStatus, lease: &LeaseFile) -> String {
    match status.code() {
        Some(EXIT_DEADLINE_PASSED) if deadline_passed(lease).is_some() => format!(
            "not started: the fencing deadline in {} had passed",
            lease.path().display()
        ),
        _ => format!("postmaster exited ({status})"),
    }
}

/// The deadline `lease` holds when it has passed (a file that cannot be read counts as one).
fn deadline_passed(lease: &LeaseFile) -> Option<u64> {
    lease.read().filter(|d| *d <= boot_clock_ms())
}

/// Runs the supervisor until its postmaster exits; returns the process exit code. Its lines go
/// to stderr, never in the way of a stop or a kill ([`Say`]).
pub fn run(args: &SuperviseArgs) -> i32 {
    run_saying(args, std::io::stderr())
}

/// [`run`], its lines written to `out`.
fn run_saying(args: &SuperviseArgs, out: impl std::io::Write + Send + 'static) -> i32 {
    let mut say = Say::to(out, &args.member);
    let code = supervise(args, &mut say);
    say.finish(LAST_LINES);
    code
}

fn supervise(args: &SuperviseArgs, say: &mut Say) -> i32 {
    let lease = LeaseFile::at(&args.lease_file);
    // Read before the spawn, not only after it: a postmaster whose deadline has passed is
    // never started, not started and killed a moment later.
    if let Some(deadline) = deadline_passed(&lease) {
        say.say(format_args!(
            "lease deadline {deadline} ms (boot clock) passed before PostgreSQL started and \
             nobody renewed it: not starting it (fencing)"
        ));
        return EXIT_DEADLINE_PASSED;
    }
    let run_as = match args.os_user.as_deref().map(RunAs::detect) {
        Some(Ok(r)) => r,
        Some(Err(e)) => {
            say.say(format_args!("cannot run PostgreSQL: {e}"));
            return 2;
        }
        None => RunAs { user: None },
    };
    let mut child = match spawn_postmaster(args, &run_as, say) {
        Ok(c) => c,
        Err(e) => {
            say.say(format_args!(
                "cannot start {}: {e}",
                args.postgres.display()
            ));
            return 2;
        }
    };
    let postmaster = child.id() as i32;
    let wd = &args.watchdog;
    let mut keeper: Keeper<Watchdog> = Keeper::new(wd.mode, &wd.device, wd.timeout_s);
    let mut stopping = false;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                keeper.release();
                if stopping {
                    say.say(format_args!(
                        "PostgreSQL stopped before its fencing deadline ({status})"
                    ));
                }
                return status.code().unwrap_or(1);
            }
            Ok(None) => {}
            Err(e) => {
                say.say(format_args!("cannot wait for the postmaster: {e}"));
                return 1;
            }
        }
        let remaining = lease.read().map(|d| d.saturating_sub(boot_clock_ms()));
        let remaining = keeper.round(remaining);
        for message in keeper.said.drain(..) {
            say.say(message);
        }
        // Each move is made before it is said.
        match next_move(remaining, stopping) {
            Move::Wait(nap) => nap_on_the_boot_clock(nap),
            Move::StopFast => {
                let _ = kill(Pid::from_raw(postmaster), Signal::SIGINT);
                stopping = true;
                say.say(format_args!(
                    "lease deadline {} ms away and nobody renewed it: fast shutdown of \
                     postmaster {postmaster}, so that the standbys receive what it wrote \
                     (fencing; killed at the deadline if still running)",
                    remaining.unwrap_or(0)
                ));
            }
            Move::Kill => {
                kill_postmaster_tree(postmaster);
                say.say(format_args!(
                    "lease deadline passed and nobody renewed it: killed postmaster \
                     {postmaster} and its backends (fencing)"
                ));
                let _ = child.wait();
                keeper.release();
                say.say("PostgreSQL fenced");
                return 0;
            }
        }
    }
}

/// Starts `postgres -D DATA` as the OS user, output appended to the member's log by a shell
/// running as that user (so no file is opened as root in a directory the user owns), dying
/// with this process.
fn spawn_postmaster(
    args: &SuperviseArgs,
    run_as: &RunAs,
    say: &mut Say,
) -> std::io::Result<std::process::Child> {
    let parent = std::process::id() as i32;
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(r#"exec "$0" -D "$1" >>"$2" 2>&1"#)
        .arg(&args.postgres)
        .arg(&args.data_dir)
        .arg(&args.log_file)
        .current_dir(args.data_dir.parent().unwrap_or(Path::new("/")))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    run_as.run_as_postgres(&mut cmd);
    if let Some((pid, why)) = stale_lock_pid(&args.data_dir) {
        say.say(format_args!(
            "{}/postmaster.pid names pid {pid}, {why}: PostgreSQL is told to disregard it",
            args.data_dir.display()
        ));
        // Removing the file instead would also remove what PostgreSQL checks for backends a
        // killed postmaster left running (the shared memory key in it); this variable, which
        // pg_ctl sets for its own pid, makes it disregard only that one pid.
        cmd.env("PG_GRANDPARENT_PID", pid.to_string());
    }
    // SAFETY: only async-signal-safe calls (prctl, getppid, _exit) between fork and exec; the
    // parent-death signal is set after the credentials change, which would clear it.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                libc::_exit(1); // the supervisor died before the signal was set
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// The pid in the data directory's `postmaster.pid`, and what holds it, when that is not a
/// running postmaster of the directory but a process PostgreSQL would take for one (alive, or
/// exited and unreaped) and refuse to start.
fn stale_lock_pid(data_dir: &Path) -> Option<(i32, &'static str)> {
    match crate::pid_file::holder(data_dir) {
        PidFileHolder::Stranger(pid) => Some((
            pid,
            "which is not a postmaster of this data directory (a file left by a crash, the \
             pid taken since)",
        )),
        PidFileHolder::Zombie(pid) => Some((
            pid,
            "a process that has exited and that its parent has not reaped",
        )),
        PidFileHolder::Nobody | PidFileHolder::Postmaster(_) | PidFileHolder::Unknown => None,
    }
}

/// Sleeps `nap` as the boot clock counts: a host suspended meanwhile wakes this process as
/// it resumes if the nap ended during the suspend, where a monotonic sleep would go on for
/// what was left of it while the backends, resumed too, commit past the deadline.
fn nap_on_the_boot_clock(nap: Duration) {
    use nix::time::{clock_gettime, clock_nanosleep, ClockId, ClockNanosleepFlags};
    let clock = ClockId::CLOCK_BOOTTIME;
    let Ok(now) = clock_gettime(clock) else {
        return std::thread::sleep(nap);
    };
    let until = now + nix::sys::time::TimeSpec::from_duration(nap);
    // Absolute: a signal that interrupts it changes nothing of when it ends.
    loop {
        match clock_nanosleep(clock, ClockNanosleepFlags::TIMER_ABSTIME, &until) {
            Err(nix::errno::Errno::EINTR) => continue,
            // Refused (a sandbox without that clock for sleeping): never a busy loop.
            Err(_) => return std::thread::sleep(nap),
            Ok(_) => return,
        }
    }
}

/// Kills a postmaster so that no backend can acknowledge another commit: stop it (no new
/// backends), kill every child at once, kill those it forked before the stop took, then kill
/// it.
pub fn kill_postmaster_tree(postmaster: i32) {
    kill_tree(postmaster, process_stopped);
}

/// [`kill_postmaster_tree`], `stopped` telling whether the stop has taken: a postmaster in
/// uninterruptible I/O takes it only once that ends (up to half a second is waited for),
/// and its backends are not left to commit meanwhile.
fn kill_tree(postmaster: i32, stopped: impl Fn(i32) -> bool) {
    let pid = Pid::from_raw(postmaster);
    let kill_children = || {
        for child in children_of(postmaster) {
            let _ = kill(Pid::from_raw(child), Signal::SIGKILL);
        }
    };
    let _ = kill(pid, Signal::SIGSTOP);
    kill_children();
    let stopped_by = Instant::now() + Duration::from_millis(500);
    while !stopped(postmaster) && Instant::now() < stopped_by {
        std::thread::sleep(Duration::from_millis(2));
    }
    kill_children();
    let _ = kill(pid, Signal::SIGKILL);
    let _ = kill(pid, Signal::SIGCONT);
}

/// The state letter and parent pid of `pid` from `/proc/PID/stat`.
pub(crate) fn stat(pid: i32) -> Option<(char, i32)> {
    let fields = crate::killed::stat_fields(Path::new(&format!("/proc/{pid}/stat"))).ok()?;
    let state = fields.first()?.chars().next()?;
    let ppid = fields.get(1)?.parse().ok()?;
    Some((state, ppid))
}

fn process_stopped(pid: i32) -> bool {
    matches!(stat(pid), Some(('T' | 't', _)) | None)
}

/// The pids whose parent is `parent`, as far as `/proc` could be read (a fencing kill takes
/// every child it can see, whatever it could not).
pub fn children_of(parent: i32) -> Vec<i32> {
    children_seen(parent, &mut false)
}

/// The pids whose parent is `parent`; an error when `/proc` could not be read in full.
pub(crate) fn list_children(parent: i32) -> std::io::Result<Vec<i32>> {
    let mut missed = false;
    let children = children_seen(parent, &mut missed);
    match missed {
        false => Ok(children),
        true => Err(std::io::Error::other("/proc could not be read in full")),
    }
}

/// [`children_of`]; `missed` set when a process that may be a child could not be read. One
/// this user may not read is another user's (`hidepid`), never a child of its postmaster.
fn children_seen(parent: i32, missed: &mut bool) -> Vec<i32> {
    let mut children = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        *missed = true;
        return children;
    };
    for entry in entries {
        let Ok(entry) = entry else {
            *missed = true;
            continue;
        };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let fields = match crate::killed::stat_fields(Path::new(&format!("/proc/{pid}/stat"))) {
            Ok(fields) => fields,
            Err(e) if crate::killed::gone(&e) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => continue,
            Err(_) => {
                *missed = true;
                continue;
            }
        };
        if fields.get(1).and_then(|f| f.parse::<i32>().ok()) == Some(parent) {
            children.push(pid);
        }
    }
    children
}

/// The parent pid of `pid`, if it lives.
pub fn parent_of(pid: i32) -> Option<i32> {
    stat(pid).map(|(_, ppid)| ppid)
}

#[cfg(test)]
#[path = "supervisor_tests.rs"]
mod tests;
