//! The postmaster of a data directory: its pid, an immediate stop for cleanup, and a
//! `postmaster.pid` left by a crash made to name another live process (a pid reused since).

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::process::{alive, children_of, signal};
use crate::wait::poll;

/// The pid in `DATA/postmaster.pid`, if the file exists and that process lives.
pub fn postmaster_pid(data: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(data.join("postmaster.pid")).ok()?;
    let pid: u32 = text.lines().next()?.trim().parse().ok()?;
    alive(pid).then_some(pid)
}

/// The postmaster working in `data`, found among every process by what it is rather than by
/// `postmaster.pid`, whose pid is the one of the pid namespace it runs in (a `pgha` run as
/// pid 1 of a namespace of its own, as a container's): the process whose working directory is
/// `data` and whose command is `postgres` itself (a backend's title starts with `postgres:`).
pub fn postmaster_in(data: &Path) -> Option<u32> {
    let data = data.canonicalize().ok()?;
    let pids = std::fs::read_dir("/proc").ok()?.flatten();
    pids.filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            let cwd = std::fs::read_link(format!("/proc/{pid}/cwd"));
            let command = crate::process::cmdline(*pid);
            let program = command.split(' ').next().unwrap_or_default();
            cwd.is_ok_and(|cwd| cwd == data) && program.rsplit('/').next() == Some("postgres")
        })
}

/// The postmaster `pm` and every process it started killed at once, as when the machine under
/// them stops: the postmaster is stopped first (it forks no more), then each child and it get
/// SIGKILL. A SIGKILL to the postmaster alone leaves its backends and WAL senders running until
/// each notices: one can still acknowledge a commit after the "crash". The pids killed, the
/// postmaster first; a process waiting on a frozen disk dies when the disk thaws.
pub fn crash_postmaster(pm: u32) -> Vec<u32> {
    signal(pm, Signal::SIGSTOP);
    let mut killed = vec![pm];
    killed.extend(children_of(pm));
    for pid in killed.iter().rev() {
        signal(*pid, Signal::SIGKILL);
    }
    signal(pm, Signal::SIGCONT);
    killed
}

/// Stops whatever postmaster runs on `data`: SIGQUIT (immediate shutdown; SIGCONT first, in
/// case a test stopped it), SIGKILL when it still lives 10 s later. For cleanup: never fails.
pub fn stop_postmaster(data: &Path) {
    let Some(pid) = postmaster_pid(data) else {
        return;
    };
    signal(pid, Signal::SIGCONT);
    signal(pid, Signal::SIGQUIT);
    let gone = poll(Duration::from_secs(10), Duration::from_millis(20), || {
        (!alive(pid)).then_some(())
    });
    if gone.is_none() {
        signal(pid, Signal::SIGKILL);
    }
}

/// Processes holding the pids that `postmaster.pid` files left by a crash name
/// ([`squat_postmaster_pid`]); killed when dropped.
#[derive(Default)]
pub struct PidSquatters(Vec<Child>);

impl PidSquatters {
    /// Makes `DATA/postmaster.pid`, as a crash left it, name a live process that is no
    /// postmaster, as after a machine came back and handed the pid to another process: `sleep`
    /// is started as `user` (uid, gid; `None`: as this process) and its pid written over the
    /// file's first line, the rest of the file kept. Taking the very pid by moving the kernel's
    /// pid counter back (`ns_last_pid`) would hand recently freed pids to every process the
    /// machine starts next, those of tests running beside this one included.
    pub fn squat(&mut self, data: &Path, user: Option<(u32, u32)>) -> u32 {
        let pid_file = data.join("postmaster.pid");
        let text = std::fs::read_to_string(&pid_file)
            .unwrap_or_else(|e| panic!("{}: {e}", pid_file.display()));
        let (_, rest) = text
            .split_once('\n')
            .unwrap_or_else(|| panic!("{}: {text:?}", pid_file.display()));
        let mut cmd = Command::new("sleep");
        cmd.arg("600").current_dir("/");
        if let Some((uid, gid)) = user {
            use std::os::unix::process::CommandExt as _;
            cmd.uid(uid).gid(gid);
        }
        let squatter = cmd.spawn().expect("spawn sleep");
        let pid = squatter.id();
        std::fs::write(&pid_file, format!("{pid}\n{rest}"))
            .unwrap_or_else(|e| panic!("{}: {e}", pid_file.display()));
        self.0.push(squatter);
        pid
    }

    /// The squatters no longer running (something signalled one as if it were a postmaster).
    pub fn gone(&mut self) -> Vec<u32> {
        let mut gone = Vec::new();
        for child in &mut self.0 {
            if !matches!(child.try_wait(), Ok(None)) {
                gone.push(child.id());
            }
        }
        gone
    }
}

impl Drop for PidSquatters {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The uid and gid of the `postgres` OS user.
pub fn postgres_user() -> (u32, u32) {
    let user = nix::unistd::User::from_name("postgres")
        .expect("read the user database")
        .expect("the postgres OS user");
    (user.uid.as_raw(), user.gid.as_raw())
}
