//! Stalls: a whole host frozen, a process tree stopped, a lease file watched.

use super::*;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use pgha_testkit::{children_of, proc_stat, signal};

const FREEZER_ROOT: &str = "/sys/fs/cgroup/freezer";

/// The pids in network namespace `ns` (`ip netns pids`), this test process excluded.
fn netns_pids(ns: &str) -> Vec<u32> {
    let me = std::process::id();
    Command::new("ip")
        .args(["netns", "pids", ns])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .filter(|p| *p != me)
                .collect()
        })
        .unwrap_or_default()
}

fn cgroup_procs(dir: &Path) -> BTreeSet<u32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Thaws a freezer cgroup, moves what is left in it back to the root cgroup and removes it.
fn dissolve_freezer(dir: &Path) -> Result<(), String> {
    let _ = std::fs::write(dir.join("freezer.state"), "THAWED");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for pid in cgroup_procs(dir) {
            let _ = std::fs::write(
                Path::new(FREEZER_ROOT).join("cgroup.procs"),
                pid.to_string(),
            );
        }
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                return Err(format!("cannot remove {}: {e}", dir.display()))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Freezer cgroups left behind by a run whose test process died.
pub(super) fn remove_stale_freezers() {
    for (name, path) in left_by_dead_runs(Path::new(FREEZER_ROOT)) {
        if name.ends_with("-frozen") {
            let _ = dissolve_freezer(&path);
        }
    }
}

/// A stalled VM: every process of one test host (its agent, its `pgha supervise`, the
/// postmaster and every backend — whatever runs in the host's network namespace) frozen with
/// the cgroup v1 freezer, which stops them without a signal they could see (unlike SIGSTOP,
/// nothing is reported to a parent, and the boot clock keeps running). Thawed and removed on
/// drop (drop it before the [`Cluster`]: a frozen task dies of SIGKILL only once thawed).
pub struct FrozenHost {
    pub host: String,
    dir: PathBuf,
    /// Every process frozen (thread groups: their threads were moved along).
    pub pids: Vec<u32>,
    thawed: bool,
}

impl FrozenHost {
    pub fn freeze(net: &Net, host: &str) -> FrozenHost {
        let root = Path::new(FREEZER_ROOT);
        assert!(
            root.join("cgroup.procs").exists(),
            "no cgroup v1 freezer at {FREEZER_ROOT}: cannot freeze a test host"
        );
        remove_stale_freezers();
        let ns = net.host(host).ns.clone();
        let dir = root.join(format!("{ns}-frozen"));
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        let mut f = FrozenHost {
            host: host.to_string(),
            dir,
            pids: Vec::new(),
            thawed: false,
        };
        // Move every process of the host in until a round finds none left outside: a process
        // forked by one already inside is born inside.
        let mut rounds = 0;
        while f.adopt(&ns) > 0 {
            rounds += 1;
            assert!(rounds < 50, "{host}'s processes keep multiplying");
        }
        assert!(!f.pids.is_empty(), "no process runs on {host}");
        f.set_state("FROZEN");
        // one forked by a process of the root cgroup meanwhile would be outside: none is, but
        // check (a task attached to a frozen cgroup is frozen at once)
        f.adopt(&ns);
        f
    }

    /// Moves the host's processes not yet inside into the cgroup; returns how many.
    fn adopt(&mut self, ns: &str) -> usize {
        let inside = cgroup_procs(&self.dir);
        let mut moved = 0;
        for pid in netns_pids(ns) {
            if inside.contains(&pid) {
                continue;
            }
            // cgroup.procs moves the whole thread group (tasks would move one thread)
            if std::fs::write(self.dir.join("cgroup.procs"), pid.to_string()).is_ok() {
                self.pids.push(pid);
                moved += 1;
            }
        }
        moved
    }

    fn set_state(&self, state: &str) {
        let file = self.dir.join("freezer.state");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // FREEZING retries on each write (a task in an uninterruptible sleep delays it)
            std::fs::write(&file, state)
                .unwrap_or_else(|e| panic!("write {state} to {}: {e}", file.display()));
            let now = std::fs::read_to_string(&file).unwrap_or_default();
            if now.trim() == state {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{}'s freezer stays {} instead of {state}",
                self.host,
                now.trim()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Every process frozen now? (The freezer's own view, per task.)
    pub fn frozen(&self) -> bool {
        std::fs::read_to_string(self.dir.join("freezer.state")).is_ok_and(|s| s.trim() == "FROZEN")
    }

    pub fn thaw(&mut self) {
        if !self.thawed {
            self.set_state("THAWED");
            self.thawed = true;
        }
    }
}

impl Drop for FrozenHost {
    fn drop(&mut self) {
        if let Err(e) = dissolve_freezer(&self.dir) {
            eprintln!("{e}");
        }
    }
}

/// A process tree stopped with SIGSTOP (an I/O stall as PostgreSQL's clients see it: the
/// postmaster accepts no connection, no backend answers). Each process is remembered with its
/// start time, so SIGCONT never reaches a process that reused a pid. Resumed on drop.
pub struct StoppedTree {
    /// (pid, start time)
    pub procs: Vec<(u32, u64)>,
}

impl StoppedTree {
    /// SIGSTOP of `root`, then of its children, until no new child appears (a stopped
    /// postmaster forks no more).
    pub fn stop(root: u32) -> StoppedTree {
        let mut t = StoppedTree { procs: Vec::new() };
        let stop_one = |pid: u32, t: &mut StoppedTree| {
            let Some(start) = proc_stat(pid).map(|p| p.start) else {
                return;
            };
            if signal(pid, Signal::SIGSTOP) {
                t.procs.push((pid, start));
                let deadline = Instant::now() + Duration::from_secs(2);
                while proc_stat(pid).is_some_and(|p| !matches!(p.state, 'T' | 't' | 'Z' | 'X'))
                    && Instant::now() < deadline
                {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        };
        stop_one(root, &mut t);
        assert!(!t.procs.is_empty(), "process {root} is gone");
        loop {
            let known: BTreeSet<u32> = t.procs.iter().map(|p| p.0).collect();
            let new: Vec<u32> = children_of(root)
                .into_iter()
                .filter(|p| !known.contains(p))
                .collect();
            if new.is_empty() {
                break;
            }
            for pid in new {
                stop_one(pid, &mut t);
            }
        }
        t
    }

    /// The processes of the tree that still live (same pid, same start time, no zombie).
    pub fn alive(&self) -> Vec<u32> {
        self.procs
            .iter()
            .filter(|(pid, start)| {
                proc_stat(*pid).is_some_and(|p| p.start == *start && !matches!(p.state, 'Z' | 'X'))
            })
            .map(|p| p.0)
            .collect()
    }

    /// SIGCONT of the processes still alive; returns them.
    pub fn resume(&mut self) -> Vec<u32> {
        let alive = self.alive();
        for pid in &alive {
            signal(*pid, Signal::SIGCONT);
        }
        self.procs.clear();
        alive
    }
}

impl Drop for StoppedTree {
    fn drop(&mut self) {
        self.resume();
    }
}

/// What a lease file holds, as the supervisor reads it: `None` disarmed (empty or absent), a
/// boot-clock deadline (ms), 0 when unparsable (a deadline already passed).
pub fn read_lease(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    Some(text.parse().unwrap_or(0))
}

/// The values a lease file took, each with when it was first seen.
pub type LeaseValues = Vec<(Instant, Option<u64>)>;

/// Every value a lease file takes while this watches it (polled every 5 ms).
pub struct LeaseWatch {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<LeaseValues>>,
}

impl LeaseWatch {
    pub fn start(path: PathBuf) -> LeaseWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let stop = stop.clone();
            move || {
                let mut seen: LeaseValues = Vec::new();
                loop {
                    let v = read_lease(&path);
                    if seen.last().is_none_or(|(_, last)| *last != v) {
                        seen.push((Instant::now(), v));
                    }
                    if stop.load(Ordering::SeqCst) {
                        return seen;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        });
        LeaseWatch {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops watching; the values in order, each with when it was first seen.
    pub fn finish(mut self) -> LeaseValues {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for LeaseWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
