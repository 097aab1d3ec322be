//! Test hosts (issue 9): etcd, three `pgha agent` members and a client host running
//! `pgha proxy`, each in its own Linux network namespace, joined by veth pairs to a bridge that
//! lives in a namespace of its own (the root namespace is never touched). Faults are iptables
//! DROP rules inside a host's namespace (a blackhole, never a reset), SIGKILL/SIGSTOP/SIGCONT of
//! one process by pid or of a process tree, a whole host isolated, a whole host frozen
//! (cgroup v1 freezer: a stalled VM), and steps of the agents' wall clock (libfaketime: see
//! [`FakeWallClock`]). A checker writes through the proxy, through a
//! libpq-style multi-host URI (`target_session_attrs=read-write`) and on each member's own host
//! (optionally also with writers that wait long for an answer), and counts acknowledged writes
//! missing from the final primary and acknowledgements by a member of writes sent, or executed
//! by its PostgreSQL, after another member had already acknowledged one (two writers; late
//! answers to earlier writes are reported apart: see [`judge_writers`]).
//!
//! Needs root, `ip` (iproute2), `iptables` (Debian package `iptables`), to freeze a host the
//! cgroup v1 freezer at /sys/fs/cgroup/freezer, and to step wall clocks the Debian package
//! `libfaketime` (and python3, to check it); fails loudly, naming
//! the package, when one is missing. Everything is removed on drop, also while a test panics
//! (the agents' log tails are printed then). The including test file must also declare
//! `#[path = "common/dist.rs"] mod dist;` (this module reuses its REST waits and secrets).
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use pgha_testkit::disk::unmount;
pub use pgha_testkit::strip_ansi;
pub use pgha_testkit::Latency;
use pgha_testkit::{
    alive, children_of, connect_within, etcd_binary, etcd_healthy, http, parent_of,
};
use pgha_testkit::{must, serial, traversable_tempdir, wait_until, EtcdNode, LoopDisk};
use pgha_testkit::{poll, postmaster_pid, proc_stat, run_sql, signal, simple_rows};
use pgha_testkit::{small_runtime, spawn_logged, stop_child, stop_postmaster, tail, TcpLink};

use crate::dist::write_secrets;
pub use crate::dist::{conninfo, AgentApi, AgentSet};

/// PostgreSQL port on every member host (each host has its own network stack).
pub const PG_PORT: u16 = 5432;
/// REST API port of every agent.
pub const API_PORT: u16 = 8008;
pub const ETCD_PORT: u16 = 2379;
/// Where the members reach etcd through a [`TcpLink`] ([`Opts::etcd_latency`]).
pub const ETCD_DELAYED_PORT: u16 = 2479;
pub const PROXY_RW_PORT: u16 = 6432;
pub const PROXY_RO_PORT: u16 = 6433;

/// The `pgha` binary under test; `PGHA_FAULTS_BIN` runs the scenarios against another build
/// (e.g. an older commit, to see a scenario fail for the reason it was written for).
pub fn pgha_bin() -> String {
    std::env::var("PGHA_FAULTS_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_pgha").to_string())
}

// ---------------------------------------------------------------------------------------------
// Small process helpers

/// Whether `pid` lives (not a zombie).
pub fn process_alive(pid: u32) -> bool {
    alive(pid)
}

/// Milliseconds since boot on `CLOCK_BOOTTIME`, the clock of the supervisors' deadlines.
pub fn boot_clock_ms() -> u64 {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).expect("CLOCK_BOOTTIME");
    ts.tv_sec() as u64 * 1000 + ts.tv_nsec() as u64 / 1_000_000
}

/// Microseconds since the Unix epoch on the wall clock (`CLOCK_REALTIME`, the clock
/// PostgreSQL's `clock_timestamp()` reads: every test host shares this machine's kernel).
fn wall_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

fn ip(args: &[&str]) -> Output {
    must(Command::new("ip").args(args))
}

// ---------------------------------------------------------------------------------------------
// Network namespaces

/// Moves the calling thread into network namespace `ns` (only this thread: the network
/// namespace is per thread; threads it spawns afterwards inherit it).
pub fn enter_netns(ns: &str) -> std::io::Result<()> {
    let f = File::open(format!("/run/netns/{ns}"))?;
    setns(&f)
}

fn setns(f: &File) -> std::io::Result<()> {
    // SAFETY: setns on a valid, open namespace descriptor; affects the calling thread only.
    let rc = unsafe { nix::libc::setns(f.as_raw_fd(), nix::libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Puts the current thread back into the network namespace it was in when created.
pub struct NetnsGuard(File);

impl NetnsGuard {
    pub fn enter(ns: &str) -> NetnsGuard {
        let original = File::open("/proc/thread-self/ns/net").expect("open own network namespace");
        enter_netns(ns).unwrap_or_else(|e| panic!("setns into {ns}: {e}"));
        NetnsGuard(original)
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        let _ = setns(&self.0);
    }
}

const NS_PREFIX: &str = "pgf";

/// The entries of `dir` named `<NS_PREFIX><pid>x...` by a test process `pid` that is gone
/// (names and paths).
fn left_by_dead_runs(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let pid = name.strip_prefix(NS_PREFIX)?.split('x').next()?;
            let dead = pid.parse::<u32>().is_ok_and(|pid| !alive(pid));
            dead.then(|| (name, e.path()))
        })
        .collect()
}

/// Namespaces left behind by an earlier run whose test process died (SIGKILL, OOM): their
/// processes are killed by pid and the namespaces deleted.
fn remove_stale_namespaces() {
    // first thaw what a dead run left frozen: a frozen task dies of SIGKILL only once thawed
    remove_stale_freezers();
    for (name, _) in left_by_dead_runs(Path::new("/run/netns")) {
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &name]).output() {
            for p in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(p) = p.parse::<u32>() {
                    signal(p, Signal::SIGKILL);
                }
            }
        }
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
    }
}

/// One test host: a network namespace with `eth0` on the bridge.
#[derive(Clone, Debug)]
pub struct Host {
    /// Short name: "etcd", "n1", "client", ...
    pub name: String,
    /// The namespace's name under /run/netns.
    pub ns: String,
    pub ip: String,
}

/// Which way a link is cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Way {
    /// Packets from the first host to the second are dropped (the reverse flows).
    OneWay,
    Both,
}

/// The bridge, the hosts and the iptables rules in force.
pub struct Net {
    pub prefix: String,
    /// The third octet of 10.201.N.0/24.
    pub subnet: u8,
    bridge_ns: String,
    pub hosts: Vec<Host>,
    iptables: String,
    /// (namespace, rule arguments after -A/-D)
    rules: Vec<(String, Vec<String>)>,
}

impl Net {
    /// Creates the bridge namespace and one namespace per host name (addresses
    /// 10.201.N.<10 + index>).
    pub fn new(host_names: &[&str]) -> Net {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        assert!(
            nix::unistd::geteuid().is_root(),
            "the fault tests need root (network namespaces, iptables)"
        );
        let ipv = Command::new("ip").arg("-V").output();
        assert!(
            ipv.map(|o| o.status.success()).unwrap_or(false),
            "`ip` is missing: apt-get install -y iproute2"
        );
        remove_stale_namespaces();
        let pid = std::process::id();
        let k = COUNTER.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("{NS_PREFIX}{pid}x{k}");
        let subnet = ((pid as usize * 7 + k) % 200 + 20) as u8;
        let bridge_ns = format!("{prefix}-br");
        let mut net = Net {
            prefix: prefix.clone(),
            subnet,
            bridge_ns: bridge_ns.clone(),
            hosts: Vec::new(),
            iptables: String::new(),
            rules: Vec::new(),
        };
        ip(&["netns", "add", &bridge_ns]);
        ip(&["-n", &bridge_ns, "link", "set", "lo", "up"]);
        ip(&["-n", &bridge_ns, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &bridge_ns, "link", "set", "br0", "up"]);
        for (i, name) in host_names.iter().enumerate() {
            let ns = format!("{prefix}-{name}");
            let addr = format!("10.201.{subnet}.{}", 10 + i);
            let veth = format!("v{i}");
            ip(&["netns", "add", &ns]);
            // pushed before configuring so that a failure below still removes it
            net.hosts.push(Host {
                name: name.to_string(),
                ns: ns.clone(),
                ip: addr.clone(),
            });
            ip(&[
                "-n", &bridge_ns, "link", "add", &veth, "type", "veth", "peer", "name", "eth0",
                "netns", &ns,
            ]);
            ip(&[
                "-n", &bridge_ns, "link", "set", &veth, "master", "br0", "up",
            ]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        net.iptables = net.pick_iptables();
        net
    }

    /// `iptables` (nf_tables on Debian 12) or `iptables-legacy`, whichever can add and delete
    /// a rule inside a test namespace; panics naming the package when neither works.
    fn pick_iptables(&self) -> String {
        let ns = &self.hosts[0].ns;
        let mut errors = Vec::new();
        for candidate in ["iptables", "iptables-nft", "iptables-legacy"] {
            let rule = ["OUTPUT", "-d", "192.0.2.1", "-j", "DROP"];
            let run = |op: &str| {
                Command::new("ip")
                    .args(["netns", "exec", ns, candidate, "-w", op])
                    .args(rule)
                    .output()
            };
            match run("-A") {
                Ok(o) if o.status.success() => {
                    let del = run("-D");
                    if matches!(del, Ok(ref o) if o.status.success()) {
                        return candidate.to_string();
                    }
                    errors.push(format!("{candidate}: could add but not delete a rule"));
                }
                Ok(o) => errors.push(format!(
                    "{candidate}: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                )),
                Err(e) => errors.push(format!("{candidate}: {e}")),
            }
        }
        panic!(
            "no working iptables inside a network namespace (install it: apt-get install -y iptables): {}",
            errors.join("; ")
        );
    }

    /// The iptables binary in use.
    pub fn iptables(&self) -> &str {
        &self.iptables
    }

    pub fn host(&self, name: &str) -> &Host {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no test host {name}"))
    }

    fn add_rule(&mut self, ns: &str, rule: &[&str]) {
        must(
            Command::new("ip")
                .args(["netns", "exec", ns, &self.iptables, "-w", "-A"])
                .args(rule),
        );
        self.rules
            .push((ns.to_string(), rule.iter().map(|s| s.to_string()).collect()));
    }

    /// Blackholes the link between hosts `a` and `b` (rules in `a`'s namespace): `OneWay`
    /// drops what `a` sends to `b`; `Both` also what `a` receives from `b`.
    pub fn cut(&mut self, a: &str, b: &str, way: Way) {
        let (ns, peer) = (self.host(a).ns.clone(), self.host(b).ip.clone());
        self.add_rule(&ns, &["OUTPUT", "-d", &peer, "-j", "DROP"]);
        if way == Way::Both {
            self.add_rule(&ns, &["INPUT", "-s", &peer, "-j", "DROP"]);
        }
    }

    /// Drops every packet in and out of `a`'s eth0 (its loopback still works).
    pub fn isolate(&mut self, a: &str) {
        let ns = self.host(a).ns.clone();
        self.add_rule(&ns, &["INPUT", "-i", "eth0", "-j", "DROP"]);
        self.add_rule(&ns, &["OUTPUT", "-o", "eth0", "-j", "DROP"]);
    }

    /// Drops a random `fraction` (0..1) of the packets in and out of `a`'s eth0, each way on
    /// its own (iptables `statistic --mode random`): a lossy link, not a cut. TCP still gets
    /// through, late, after retransmissions with growing back-off.
    pub fn lossy(&mut self, a: &str, fraction: f64) {
        assert!((0.0..1.0).contains(&fraction), "a loss fraction in 0..1");
        let ns = self.host(a).ns.clone();
        let p = format!("{fraction}");
        for (chain, dir) in [("INPUT", "-i"), ("OUTPUT", "-o")] {
            self.add_rule(
                &ns,
                &[
                    chain,
                    dir,
                    "eth0",
                    "-m",
                    "statistic",
                    "--mode",
                    "random",
                    "--probability",
                    &p,
                    "-j",
                    "DROP",
                ],
            );
        }
    }

    /// Removes every rule added so far.
    pub fn heal_all(&mut self) {
        for (ns, rule) in std::mem::take(&mut self.rules).into_iter().rev() {
            must(
                Command::new("ip")
                    .args(["netns", "exec", &ns, &self.iptables, "-w", "-D"])
                    .args(&rule),
            );
        }
    }

    /// `ip netns exec NS program args...`, not started yet.
    pub fn command(&self, host: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.host(host).ns]).arg(program);
        c
    }

    fn destroy(&mut self) {
        for h in &self.hosts {
            // whatever still runs in the namespace was started by this test
            if let Ok(out) = Command::new("ip").args(["netns", "pids", &h.ns]).output() {
                for p in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    if let Ok(p) = p.parse::<u32>() {
                        signal(p, Signal::SIGCONT);
                        signal(p, Signal::SIGKILL);
                    }
                }
            }
        }
        for h in self.hosts.drain(..) {
            let _ = Command::new("ip").args(["netns", "del", &h.ns]).output();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.bridge_ns])
            .output();
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.destroy();
    }
}

// ---------------------------------------------------------------------------------------------
// Stalls: a whole host frozen, a process tree stopped, a lease file watched

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
fn remove_stale_freezers() {
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

// ---------------------------------------------------------------------------------------------
// Wall-clock steps (libfaketime)

/// The Debian package, and its library under `/usr/lib/<triplet>/`.
const FAKETIME_PACKAGE: &str = "libfaketime";
const FAKETIME_LIB: &str = "faketime/libfaketimeMT.so.1";

/// A wall clock a test can step, for the processes started with [`FakeWallClock::env`]:
/// libfaketime (`LD_PRELOAD`) adds to what `CLOCK_REALTIME` reads (`clock_gettime`,
/// `gettimeofday`, `time`) the offset written in a timestamp file that it reads again on every
/// call (`FAKETIME_NO_CACHE`), and leaves `CLOCK_MONOTONIC` and `CLOCK_BOOTTIME` alone
/// (`FAKETIME_DONT_FAKE_MONOTONIC`; without it libfaketime fakes them too): what a clock step
/// (`date -s`, an NTP step, a VM resynchronised after a pause) does, and no more.
/// [`FakeWallClock::check`] proves both on this machine before a test relies on them.
///
/// Only programs named `pgha` see the fake (`FAKETIME_ONLY_CMDS`): the agent and its
/// `pgha supervise` (started through `/proc/self/exe` with argv[0] `pgha`). PostgreSQL, the
/// shell that starts it and the PostgreSQL tools inherit the preload but keep the true clock:
/// the checker orders writes by the server's `clock_timestamp()` (see [`judge_writers`], which
/// also stops trusting a server clock that strays from the checker's), and what PostgreSQL
/// itself does on a step (e.g. `wal_sender_timeout` is measured on its wall clock) is not what
/// these tests look at.
///
/// It also shifts the file times `stat` reports to those processes (pgha reads none: no file's
/// age decides anything).
///
/// The multi-threaded build: with `libfaketime.so.1`, threads that read the clock while the
/// file changes get invalid timespecs (Rust's std panics on them) — not what a real step does.
#[derive(Clone, Debug)]
pub struct FakeWallClock {
    pub lib: PathBuf,
    /// When it was found (see [`FakeWallClock::remove_leftovers`]).
    since: std::time::SystemTime,
}

impl FakeWallClock {
    /// Finds libfaketime; panics naming the Debian package when it is missing.
    pub fn find() -> FakeWallClock {
        let lib = std::fs::read_dir("/usr/lib")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join(FAKETIME_LIB))
            .chain(std::iter::once(Path::new("/usr/lib").join(FAKETIME_LIB)))
            .find(|p| p.exists())
            .unwrap_or_else(|| {
                panic!(
                    "no /usr/lib/*/{FAKETIME_LIB}: the wall-clock tests need it \
                     (apt-get install -y {FAKETIME_PACKAGE})"
                )
            });
        FakeWallClock {
            lib,
            since: std::time::SystemTime::now(),
        }
    }

    /// Removes what libfaketime left in /dev/shm since [`FakeWallClock::find`] for processes
    /// that no longer live: every preloaded program creates `faketime_shm_<pid>` and
    /// `sem.faketime_sem_<pid>` and only a clean exit removes them, so the agents and
    /// postmasters a test kills leave theirs behind (and a later process given that pid could
    /// trip over them).
    pub fn remove_leftovers(&self) {
        let Ok(entries) = std::fs::read_dir("/dev/shm") else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let Some(pid) = name
                .strip_prefix("faketime_shm_")
                .or_else(|| name.strip_prefix("sem.faketime_sem_"))
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            let recent = e
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t >= self.since);
            if recent && !alive(pid) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    /// The environment of a process whose wall clock follows `file` (if its program is named
    /// `pgha`, or like the binary under test).
    pub fn env(&self, file: &Path) -> Vec<(String, String)> {
        let mut only = vec!["pgha".to_string()];
        if let Some(name) = Path::new(&pgha_bin()).file_name() {
            let name = name.to_string_lossy().to_string();
            if !only.contains(&name) {
                only.push(name);
            }
        }
        vec![
            ("LD_PRELOAD".into(), self.lib.display().to_string()),
            ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
            ("FAKETIME_NO_CACHE".into(), "1".into()),
            ("FAKETIME_TIMESTAMP_FILE".into(), file.display().to_string()),
            ("FAKETIME_ONLY_CMDS".into(), only.join(",")),
        ]
    }

    /// Proves, with a python3 probe under [`FakeWallClock::env`] in `dir`, that in one running
    /// process named `pgha` the steps +3600 s, -3600 s and +0 move `CLOCK_REALTIME` (and
    /// `time.time()`) by exactly that and leave `CLOCK_MONOTONIC` and `CLOCK_BOOTTIME` true, and
    /// that a process named `postgres` keeps the true wall clock. Panics, with the figures,
    /// otherwise.
    pub fn check(self, dir: &Path) -> FakeWallClock {
        use std::io::{BufRead, BufReader, Write};
        use std::os::unix::process::CommandExt;
        // the interpreter itself (not a wrapper script): argv[0] must reach it
        let python = must(Command::new("python3").args([
            "-c",
            "import os, sys; print(os.path.realpath(sys.executable))",
        ]));
        let python = String::from_utf8_lossy(&python.stdout).trim().to_string();
        let file = dir.join("probe.faketime");
        let probe = "import sys, time\n\
                     for _ in sys.stdin:\n    \
                         print(time.clock_gettime_ns(time.CLOCK_REALTIME), time.time_ns(), \
                         time.clock_gettime_ns(time.CLOCK_MONOTONIC), \
                         time.clock_gettime_ns(time.CLOCK_BOOTTIME), flush=True)\n";
        let clock = |id| {
            let ts = nix::time::clock_gettime(id).expect("clock_gettime");
            ts.tv_sec() as i64 * 1_000_000_000 + ts.tv_nsec() as i64
        };
        let truth = || {
            [
                clock(nix::time::ClockId::CLOCK_REALTIME),
                clock(nix::time::ClockId::CLOCK_MONOTONIC),
                clock(nix::time::ClockId::CLOCK_BOOTTIME),
            ]
        };
        let run = |name: &str, steps: &[i64]| {
            write_clock_offset(&file, steps[0]);
            let mut child = Command::new(&python)
                .arg0(name)
                .args(["-c", probe])
                .envs(self.env(&file))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("run {python}: {e}"));
            let mut input = child.stdin.take().unwrap();
            let mut output = BufReader::new(child.stdout.take().unwrap());
            let mut seen = Vec::new();
            for &step in steps {
                write_clock_offset(&file, step);
                let before = truth();
                writeln!(input, "now").expect("write to the probe");
                let mut line = String::new();
                output.read_line(&mut line).expect("read from the probe");
                let after = truth();
                let v: Vec<i64> = line
                    .split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect();
                assert_eq!(v.len(), 4, "the clock probe said {line:?}");
                seen.push((step, before, v, after));
            }
            drop(input);
            let _ = child.wait();
            seen
        };
        // within [before, after] of the true clock, shifted by `shift` seconds (1 ms of slack)
        let within = |v: i64, before: i64, after: i64, shift: i64| {
            let s = shift * 1_000_000_000;
            v >= before + s - 1_000_000 && v <= after + s + 1_000_000
        };
        let mut wrong = Vec::new();
        for (step, before, v, after) in run("pgha", &[3600, -3600, 0]) {
            let ok = within(v[0], before[0], after[0], step)
                && within(v[1], before[0], after[0], step)
                && within(v[2], before[1], after[1], 0)
                && within(v[3], before[2], after[2], 0);
            if !ok {
                wrong.push(format!(
                    "as pgha at {step:+} s: realtime, time(), monotonic, boottime {v:?}, true \
                     realtime, monotonic, boottime from {before:?} to {after:?}"
                ));
            }
        }
        for (step, before, v, after) in run("postgres", &[3600]) {
            if !within(v[0], before[0], after[0], 0) || !within(v[3], before[2], after[2], 0) {
                wrong.push(format!(
                    "as postgres at {step:+} s (should be true): {v:?}, true from {before:?} to \
                     {after:?}"
                ));
            }
        }
        assert!(
            wrong.is_empty(),
            "{} does not step the wall clock alone as these tests assume:\n{}",
            self.lib.display(),
            wrong.join("\n")
        );
        self
    }
}

/// Writes `secs` (the offset from the true time: `+3600`, `-3600`, `+0`) into a libfaketime
/// timestamp file, atomically: the processes read it on every clock call.
pub fn write_clock_offset(file: &Path, secs: i64) {
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, format!("{secs:+}\n"))
        .unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
    std::fs::rename(&tmp, file).unwrap_or_else(|e| panic!("rename to {}: {e}", file.display()));
}

/// The wall-clock time (µs since the epoch) that stamps an agent log line (`tracing`'s UTC
/// RFC 3339 timestamp, e.g. `2026-12-01T10:11:12.123456Z`, colours stripped or not).
pub fn log_line_wall_us(line: &str) -> Option<i64> {
    let line = strip_ansi(line);
    let stamp = line.split_whitespace().next()?.strip_suffix('Z')?;
    let (date, time) = stamp.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.splitn(3, ':').map(|x| x.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    let micros: i64 = format!("{:0<6}", &frac[..frac.len().min(6)]).parse().ok()?;
    // days from the civil date (Howard Hinnant's algorithm)
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + hh) * 60 + mm) * 60_000_000 + ss * 1_000_000 + micros)
}

// ---------------------------------------------------------------------------------------------
// Processes on test hosts

/// A process started with `ip netns exec` (which execs the program itself: the child's pid is
/// the program's pid).
pub struct NsProcess {
    pub what: String,
    child: Option<Child>,
    pub log: PathBuf,
    log_start: u64,
}

impl NsProcess {
    fn spawn(what: &str, mut cmd: Command, log: &Path) -> NsProcess {
        let (child, log_start) =
            spawn_logged(&mut cmd, log).unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        NsProcess {
            what: what.to_string(),
            child: Some(child),
            log: log.to_path_buf(),
            log_start,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().ok().flatten().is_none(),
            None => false,
        }
    }

    pub fn signal(&self, sig: Signal) {
        if let Some(pid) = self.pid() {
            signal(pid, sig);
        }
    }

    /// Sends `sig` (after SIGCONT, so a stopped process sees it), waits up to `patience`,
    /// then SIGKILL; reaps.
    pub fn stop(&mut self, sig: Signal, patience: Duration) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, sig, patience);
        }
    }

    /// This run's output.
    pub fn output(&self) -> String {
        let all = std::fs::read(&self.log).unwrap_or_default();
        String::from_utf8_lossy(&all[(self.log_start as usize).min(all.len())..]).to_string()
    }
}

impl Drop for NsProcess {
    fn drop(&mut self) {
        self.stop(Signal::SIGKILL, Duration::from_secs(5));
    }
}

/// One member: its host, config and (when started) its `pgha agent` process.
pub struct Member {
    pub name: String,
    pub host: Host,
    pub config: PathBuf,
    pub dir: PathBuf,
    pub log: PathBuf,
    agent: Option<NsProcess>,
    /// Every run's start offset in the log (the first is 0).
    pub runs: Vec<u64>,
    /// The libfaketime timestamp file of this member's agent (with [`Opts::fake_wall_clock`]).
    pub wall_clock: Option<PathBuf>,
}

impl Member {
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn api(&self) -> String {
        format!("{}:{API_PORT}", self.host.ip)
    }

    pub fn agent_pid(&self) -> Option<u32> {
        self.agent.as_ref().and_then(|a| a.pid())
    }

    pub fn agent_running(&mut self) -> bool {
        self.agent.as_mut().is_some_and(|a| a.running())
    }

    /// The postmaster's pid from `postmaster.pid`, if the file exists and the process lives.
    pub fn postmaster_pid(&self) -> Option<u32> {
        postmaster_pid(&self.data_dir())
    }

    /// `<member dir>.lease`: the deadline the agent hands to its supervisor.
    pub fn lease_file(&self) -> PathBuf {
        self.dir.with_file_name(format!("{}.lease", self.name))
    }

    /// The armed deadline (boot clock, ms), `None` when disarmed.
    pub fn lease_deadline(&self) -> Option<u64> {
        read_lease(&self.lease_file())
    }

    /// The `pgha supervise` process whose child is the running postmaster.
    pub fn supervisor_pid(&self) -> Option<u32> {
        self.postmaster_pid().and_then(parent_of)
    }

    /// Sends `sig` to the agent process only.
    pub fn signal_agent(&self, sig: Signal) {
        let pid = self.agent_pid().expect("agent not running");
        assert!(
            signal(pid, sig),
            "{sig} to {}'s agent (pid {pid})",
            self.name
        );
    }

    /// SIGKILL of the agent only (PostgreSQL keeps running).
    pub fn kill_agent(&mut self) {
        if let Some(mut a) = self.agent.take() {
            a.stop(Signal::SIGKILL, Duration::from_secs(5));
        }
    }

    /// SIGTERM of the agent (it stops PostgreSQL and leaves the cluster), SIGKILL after 20 s.
    pub fn terminate_agent(&mut self) {
        if let Some(mut a) = self.agent.take() {
            a.stop(Signal::SIGTERM, Duration::from_secs(20));
        }
    }

    /// A node crash: SIGKILL of the agent and of its postmaster.
    pub fn crash(&mut self) {
        let pm = self.postmaster_pid();
        if let Some(pid) = self.agent_pid() {
            signal(pid, Signal::SIGKILL);
        }
        if let Some(pm) = pm {
            signal(pm, Signal::SIGKILL);
        }
        self.kill_agent();
    }

    fn stop_postmaster(&self) {
        stop_postmaster(&self.data_dir());
    }

    /// The whole log (every run).
    pub fn whole_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Superuser key/value conninfo for this member.
    pub fn conninfo(&self) -> String {
        conninfo(&self.host.ip, PG_PORT)
    }

    /// Directories a re-clone moved aside (`data.old-*`).
    pub fn moved_aside(&self) -> Vec<String> {
        std::fs::read_dir(&self.dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .filter(|n| n.starts_with("data.old"))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl AgentApi for Member {
    fn name(&self) -> &str {
        &self.name
    }

    fn api_addr(&self) -> String {
        self.api()
    }
}

// ---------------------------------------------------------------------------------------------
// The cluster on test hosts

/// How a test cluster is configured.
#[derive(Clone, Debug)]
pub struct Opts {
    pub members: usize,
    /// Extra `[dynamic]` settings (TOML values), e.g. ("synchronous_mode", "\"on\"").
    pub dynamic: Vec<(String, String)>,
    /// Extra `[postgresql.parameters]` (TOML values).
    pub parameters: Vec<(String, String)>,
    /// Every agent (and its supervisor) runs with a wall clock the test can step
    /// ([`Cluster::set_wall_clock`]; see [`FakeWallClock`]), and logs each loop's reason (debug)
    /// so that its log's wall-clock timestamps show the step.
    pub fake_wall_clock: bool,
    /// Each member's directory (data directory and all) on a file system of its own, an ext4
    /// image mounted through a loop device, so that a test can stall its disk
    /// ([`Cluster::freeze_disk`]). The lease file and the agent's log stay outside it.
    pub member_disks: bool,
    /// Each member's directory sits on a small file system of the member's host (a 16 MiB
    /// tmpfs, `nN-host/`) that holds its lease file and failsafe promise beside it, as `/`
    /// holds `/var/lib/pgha/nN.lease` when the data volume is mounted at the member
    /// directory, so that a test can fill it ([`Cluster::fill_host_disk`]). Needs
    /// [`Opts::member_disks`] (the data directory's own disk, mounted inside it).
    pub host_disks: bool,
    /// The members reach etcd through a [`TcpLink`] on etcd's host, so that a test can
    /// make etcd answer late ([`Cluster::set_etcd_latency`]); the proxy and the CLI reach it
    /// directly.
    pub etcd_latency: bool,
    /// How many etcd members run, each on a host of its own (`etcd`, `etcd1`, `etcd2`, ...:
    /// [`etcd_host`]; ports 2379/2380, 2381/2382, ...), so that a link between two of them
    /// can be cut; every config lists all of them, the first one first. One by default.
    pub etcd_members: usize,
    /// Each etcd member's data directory on a file system of its own (an ext4 image through a
    /// loop device, as [`Opts::member_disks`]), so that a test can stall etcd's disk
    /// ([`Cluster::freeze_etcd_disk`]).
    pub etcd_disks: bool,
    /// etcd's space quota (`--quota-backend-bytes`): past it etcd raises its NOSPACE alarm
    /// and refuses every write ([`Cluster::fill_etcd`]). etcd's default (2 GiB) otherwise.
    pub etcd_quota_bytes: Option<u64>,
}

/// The test host etcd member `i` runs on: `etcd` for the first, `etcd1`, `etcd2`, ...
pub fn etcd_host(i: usize) -> String {
    match i {
        0 => "etcd".to_string(),
        i => format!("etcd{i}"),
    }
}

/// The client ports of `members` etcd members: 2379, 2381, ...
fn etcd_client_ports(members: usize) -> Vec<u16> {
    (0..members).map(|i| ETCD_PORT + 2 * i as u16).collect()
}

/// The client addresses (`ip:port`) of `members` etcd members, each on its own host.
fn etcd_addrs(net: &Net, members: usize) -> Vec<String> {
    etcd_client_ports(members)
        .into_iter()
        .enumerate()
        .map(|(i, port)| format!("{}:{port}", net.host(&etcd_host(i)).ip))
        .collect()
}

/// ttl, safety margin and loop wait of the test clusters.
pub use crate::dist::{LOOP_WAIT, SAFETY_MARGIN, TTL};
/// `wal_receiver_timeout` / `wal_sender_timeout` of the test clusters: what pgha renders
/// for their ttl (`ClusterConfig::replication_timeout`: a ttl, 5 s at least); the harness does
/// not set them, so the faults tests check pgha's own values.
pub const WAL_TIMEOUT: Duration = Duration::from_secs(5);

impl Default for Opts {
    fn default() -> Self {
        Opts {
            members: 3,
            dynamic: Vec::new(),
            parameters: Vec::new(),
            fake_wall_clock: false,
            member_disks: false,
            host_disks: false,
            etcd_latency: false,
            etcd_members: 1,
            etcd_disks: false,
            etcd_quota_bytes: None,
        }
    }
}

/// etcd, the members and `pgha proxy` on their own test hosts. The test thread itself runs in
/// the client host's namespace while this lives (so REST and SQL checks go over the bridge).
/// One at a time in a test binary: it holds the binary's `serial()` lock while it lives.
pub struct Cluster {
    pub members: Vec<Member>,
    pub net: Net,
    pub root: PathBuf,
    pub client_config: PathBuf,
    /// The etcd members ([`Opts::etcd_members`]), in the order the configs list them.
    etcd: Vec<NsProcess>,
    proxy: Option<NsProcess>,
    /// libfaketime, when the agents run with a fake wall clock.
    pub fake_clock: Option<FakeWallClock>,
    /// The members' own file systems ([`Opts::member_disks`]); unmounted on drop.
    disks: Vec<MemberDisk>,
    /// The file systems their directories sit on ([`Opts::host_disks`]); unmounted on drop,
    /// after `disks`.
    host_disks: Vec<HostDisk>,
    /// The members' way to etcd, when it can be slowed ([`Opts::etcd_latency`]).
    etcd_link: Option<TcpLink>,
    /// [`Opts::etcd_quota_bytes`], for every start of etcd.
    etcd_quota_bytes: Option<u64>,
    /// etcd member `i`'s own file system ([`Opts::etcd_disks`]); unmounted on drop, once etcd
    /// has stopped.
    etcd_disks: Vec<MemberDisk>,
    _tmp: tempfile::TempDir,
    // last: restored after the namespaces are gone
    thread_ns: Option<NetnsGuard>,
    _serial: MutexGuard<'static, ()>,
}

impl Cluster {
    /// Builds the hosts, starts etcd, every agent and the proxy; waits until one primary runs,
    /// the others stream and the bootstrap is recorded.
    pub fn start(opts: &Opts) -> Cluster {
        let serial = serial();
        let mut names: Vec<String> = (0..opts.etcd_members).map(etcd_host).collect();
        names.extend((1..=opts.members).map(|i| format!("n{i}")));
        names.push("client".into());
        let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let net = Net::new(&name_refs);
        let tmp = traversable_tempdir("pgha-faults-");
        let root = tmp.path().to_path_buf();
        let secrets = write_secrets(&root);
        let etcd_ip = net.host("etcd").ip.clone();
        let client_ip = net.host("client").ip.clone();
        let subnet = format!("10.201.{}.0/24", net.subnet);
        let config_text = |name: &str, host: &str, etcd: &[String]| {
            let mut params = vec![
                ("fsync".to_string(), "\"off\"".to_string()),
                ("shared_buffers".into(), "\"16MB\"".into()),
                ("max_connections".into(), "30".into()),
            ];
            params.retain(|(k, _)| !opts.parameters.iter().any(|(key, _)| key == k));
            params.extend(opts.parameters.iter().cloned());
            let mut dynamic = vec![
                ("ttl_ms".to_string(), TTL.as_millis().to_string()),
                (
                    "safety_margin_ms".into(),
                    SAFETY_MARGIN.as_millis().to_string(),
                ),
                ("loop_wait_ms".into(), LOOP_WAIT.as_millis().to_string()),
            ];
            dynamic.extend(opts.dynamic.iter().cloned());
            let lines = |kv: &[(String, String)]| {
                kv.iter()
                    .map(|(k, v)| format!("{k} = {v}\n"))
                    .collect::<String>()
            };
            format!(
                "insecure_no_tls = true\nreplication_from = [\"{subnet}\"]\n\
                 [cluster]\nname = \"faults\"\n\
                 [etcd]\nendpoints = [{endpoints}]\n\
                 [member]\nname = \"{name}\"\ndir = \"{dir}\"\nhost = \"{host}\"\nport = {PG_PORT}\napi = \"{host}:{API_PORT}\"\n\
                 [secrets]\nfile = \"{secrets}\"\n\
                 [postgresql.parameters]\n{params}\
                 [proxy]\nrw_listen = \"{client_ip}:{PROXY_RW_PORT}\"\nro_listen = \"{client_ip}:{PROXY_RO_PORT}\"\n\
                 [dynamic]\n{dynamic}",
                endpoints = etcd
                    .iter()
                    .map(|addr| format!("\"http://{addr}\""))
                    .collect::<Vec<_>>()
                    .join(", "),
                dir = if name == "client" {
                    root.join(name)
                } else {
                    member_dir(&root, name, opts)
                }
                .display(),
                secrets = secrets.display(),
                params = lines(&params),
                dynamic = lines(&dynamic),
            )
        };
        let mut members = Vec::new();
        let mut disks = Vec::new();
        let mut host_disks = Vec::new();
        assert!(
            !opts.host_disks || opts.member_disks,
            "Opts::host_disks needs Opts::member_disks"
        );
        for i in 1..=opts.members {
            let name = format!("n{i}");
            if opts.host_disks {
                host_disks.push(HostDisk::mount(&root, &name));
            }
            if opts.member_disks {
                disks.push(MemberDisk::mount(&root, &member_dir(&root, &name, opts)));
            }
            let host = net.host(&name).clone();
            let config = root.join(format!("{name}.toml"));
            let etcd = if opts.etcd_latency {
                vec![format!("{etcd_ip}:{ETCD_DELAYED_PORT}")]
            } else {
                etcd_addrs(&net, opts.etcd_members)
            };
            std::fs::write(&config, config_text(&name, &host.ip, &etcd)).unwrap();
            let wall_clock = opts.fake_wall_clock.then(|| {
                let file = root.join(format!("{name}.faketime"));
                write_clock_offset(&file, 0);
                file
            });
            members.push(Member {
                log: root.join(format!("{name}.agent.log")),
                dir: member_dir(&root, &name, opts),
                name,
                host,
                config,
                agent: None,
                runs: Vec::new(),
                wall_clock,
            });
        }
        let client_config = root.join("client.toml");
        let etcd = etcd_addrs(&net, opts.etcd_members);
        std::fs::write(&client_config, config_text("client", &client_ip, &etcd)).unwrap();
        // checked on this machine before any agent runs with it (see FakeWallClock::check)
        let fake_clock = opts
            .fake_wall_clock
            .then(|| FakeWallClock::find().check(&root));
        let thread_ns = NetnsGuard::enter(&net.host("client").ns);
        let mut c = Cluster {
            members,
            net,
            root,
            client_config,
            etcd: Vec::new(),
            proxy: None,
            fake_clock,
            disks,
            host_disks,
            etcd_link: None,
            etcd_quota_bytes: opts.etcd_quota_bytes,
            etcd_disks: Vec::new(),
            _tmp: tmp,
            thread_ns: Some(thread_ns),
            _serial: serial,
        };
        if opts.etcd_disks {
            for i in 0..opts.etcd_members {
                let mount = c.root.join("etcd-disks").join(format!("m{i}"));
                c.etcd_disks.push(MemberDisk::mount(&c.root, &mount));
            }
        }
        c.start_etcd(opts.etcd_members);
        if opts.etcd_latency {
            c.start_etcd_link();
        }
        for i in 0..c.members.len() {
            let name = c.members[i].name.clone();
            c.start_agent(&name);
        }
        c.start_proxy();
        c.wait_converged(Duration::from_secs(120));
        c.wait_bootstrapped(Duration::from_secs(60));
        c
    }

    /// Starts `members` etcd members on etcd's host, one cluster, and waits until each is
    /// healthy (which needs a leader).
    fn start_etcd(&mut self, members: usize) {
        let ip = |i: usize| self.net.host(&etcd_host(i)).ip.clone();
        let name = |i: usize| {
            if members == 1 {
                "pgha-faults".to_string()
            } else {
                format!("m{i}")
            }
        };
        let peer = |i: usize| format!("{}:{}", ip(i), ETCD_PORT + 1 + 2 * i as u16);
        let initial_cluster = (0..members)
            .map(|i| format!("{}=http://{}", name(i), peer(i)))
            .collect::<Vec<_>>()
            .join(",");
        let mut started = Vec::new();
        for (i, port) in etcd_client_ports(members).into_iter().enumerate() {
            let node = EtcdNode {
                initial_cluster: initial_cluster.clone(),
                token: format!("pgha-faults-{}", std::process::id()),
                ..EtcdNode::single(&name(i), format!("{}:{port}", ip(i)), peer(i))
            };
            let (data, log) = if let Some(disk) = self.etcd_disks.get(i) {
                let log = self.root.join(format!("etcd-{}.log", name(i)));
                (disk.disk.path().join("data"), log)
            } else if members == 1 {
                (
                    self.root.join("etcd").join("data"),
                    self.root.join("etcd.log"),
                )
            } else {
                let member = name(i);
                let log = self.root.join(format!("etcd-{member}.log"));
                (self.root.join("etcd").join(member), log)
            };
            let mut cmd = self.net.command(&etcd_host(i), etcd_binary());
            let mut args = node.args(&data);
            if !self.etcd_disks.is_empty() {
                // a disk of its own is there to be stalled or crashed: etcd must sync to it
                args.retain(|a| a != "--unsafe-no-fsync");
            }
            cmd.args(args);
            if let Some(quota) = self.etcd_quota_bytes {
                cmd.arg(format!("--quota-backend-bytes={quota}"));
            }
            started.push((node, NsProcess::spawn("etcd", cmd, &log), log));
        }
        for (node, p, log) in &mut started {
            let healthy = poll(Duration::from_secs(30), Duration::from_millis(50), || {
                assert!(p.running(), "etcd exited:\n{}", tail(log, 20));
                etcd_healthy(&node.client).then_some(())
            });
            assert!(
                healthy.is_some(),
                "etcd not healthy within 30 s:\n{}",
                tail(log, 20)
            );
        }
        self.etcd = started.into_iter().map(|(_, p, _)| p).collect();
    }

    /// Every pgha host and etcd's lose power at once (the client's host, with the proxy and
    /// the writers, keeps it): every agent, supervisor, postmaster and backend and every etcd
    /// member is stopped, then killed, and each disk of its own ([`Opts::member_disks`],
    /// [`Opts::etcd_disks`]) keeps only what was synced to it ([`LoopDisk::lose_power`]).
    pub fn lose_power(&mut self) {
        assert!(
            self.disks.len() == self.members.len() && self.etcd_disks.len() == self.etcd.len(),
            "a power loss needs Opts::member_disks and Opts::etcd_disks"
        );
        let mut pids: Vec<u32> = self.etcd.iter().filter_map(NsProcess::pid).collect();
        for m in &self.members {
            if let Some(pm) = m.postmaster_pid() {
                pids.extend(m.supervisor_pid());
                pids.push(pm);
                pids.extend(children_of(pm));
            }
            pids.extend(m.agent_pid());
        }
        // stopped first, so that none of them sees another one die
        for pid in &pids {
            signal(*pid, Signal::SIGSTOP);
        }
        for pid in &pids {
            signal(*pid, Signal::SIGKILL);
        }
        for m in &mut self.members {
            m.kill_agent();
        }
        for mut e in self.etcd.drain(..) {
            e.stop(Signal::SIGKILL, Duration::from_secs(5));
        }
        for d in self.disks.iter_mut().chain(&mut self.etcd_disks) {
            d.disk.lose_power();
        }
    }

    /// The power is back after [`Cluster::lose_power`]: etcd's members start on what their
    /// disks kept, then every agent.
    pub fn power_back(&mut self) {
        self.start_etcd(self.etcd_disks.len());
        for i in 0..self.members.len() {
            let name = self.members[i].name.clone();
            self.start_agent(&name);
        }
    }

    /// etcd loses every key: its members are killed (kill -9), their data directories
    /// removed, and new, empty members started at the same addresses, as after a disk lost
    /// without a backup or a restore from the wrong one.
    pub fn wipe_etcd(&mut self) {
        let members = self.etcd.len();
        for mut e in self.etcd.drain(..) {
            e.stop(Signal::SIGKILL, Duration::from_secs(5));
        }
        std::fs::remove_dir_all(self.root.join("etcd")).expect("remove etcd's data");
        self.start_etcd(members);
    }

    /// Makes etcd member `i` ([`Opts::etcd_members`]) etcd's leader (`leads`) or a follower:
    /// etcd's leader hands its leadership over (`transfer-leadership`, through etcd's HTTP
    /// gateway) when it has to, and this waits until it has.
    pub fn etcd_leadership(&self, i: usize, leads: bool) {
        let addrs = etcd_addrs(&self.net, self.etcd.len());
        let ports = &addrs;
        let addr = |k: usize| addrs[k].clone();
        // (this member's id, the leader's id), as member k sees them
        let status = |k: usize| -> Option<(String, String)> {
            let (_, body) = http("POST", &addr(k), "/v3/maintenance/status", None, Some("{}"))?;
            let v: serde_json::Value = serde_json::from_str(&body).ok()?;
            let id = v["header"]["member_id"].as_str()?.to_string();
            Some((id, v["leader"].as_str()?.to_string()))
        };
        let seen: Vec<(String, String)> = (0..ports.len())
            .map(|k| status(k).expect("etcd's status"))
            .collect();
        let leader = seen[i].1.clone();
        let id = |k: usize| seen[k].0.clone();
        let target = match (leads, id(i) == leader) {
            (true, false) => i,
            (false, true) => (i + 1) % ports.len(),
            _ => return,
        };
        let from = (0..ports.len())
            .find(|k| id(*k) == leader)
            .expect("a leader");
        let body = format!("{{\"targetID\":\"{}\"}}", id(target));
        let path = "/v3/maintenance/transfer-leadership";
        let moved = http("POST", &addr(from), path, None, Some(&body));
        assert!(
            moved.as_ref().is_some_and(|(code, _)| *code == 200),
            "etcd's transfer-leadership: {moved:?}"
        );
        wait_until("etcd's leadership moved", Duration::from_secs(10), || {
            status(target)
                .filter(|(me, leader)| me == leader)
                .map(|_| ())
        });
    }

    /// A [`TcpLink`] on etcd's host, from [`ETCD_DELAYED_PORT`] to etcd (no delay yet).
    fn start_etcd_link(&mut self) {
        let ip = self.net.host("etcd").ip.clone();
        let _in_etcd_host = NetnsGuard::enter(&self.net.host("etcd").ns);
        let listen = format!("{ip}:{ETCD_DELAYED_PORT}").parse().unwrap();
        let target = format!("{ip}:{ETCD_PORT}").parse().unwrap();
        let link = TcpLink::start(listen, target).expect("a link to etcd");
        self.etcd_link = Some(link);
    }

    /// How late etcd's answers reach the members, and their requests reach etcd, from now
    /// on (each way). Needs [`Opts::etcd_latency`].
    pub fn set_etcd_latency(&self, latency: Latency) {
        let link = self.etcd_link.as_ref();
        link.expect("Opts::etcd_latency").set(latency);
    }

    fn start_proxy(&mut self) {
        let mut cmd = self.net.command("client", pgha_bin());
        cmd.args(["proxy", "--config"])
            .arg(&self.client_config)
            .env("PGHA_LOG", "info")
            .env_remove("RUST_LOG");
        self.proxy = Some(NsProcess::spawn(
            "pgha proxy",
            cmd,
            &self.root.join("proxy.log"),
        ));
    }

    /// Sends `sig` to `pgha proxy` (e.g. SIGSTOP, SIGCONT: a stalled process or VM).
    pub fn signal_proxy(&self, sig: Signal) {
        self.proxy.as_ref().expect("pgha proxy runs").signal(sig);
    }

    /// Starts (again) `name`'s agent on its host.
    pub fn start_agent(&mut self, name: &str) {
        let i = self.index(name);
        let m = &self.members[i];
        assert!(m.agent.is_none(), "{name}'s agent already runs");
        let mut cmd = self.net.command(name, pgha_bin());
        cmd.args(["agent", "--config"])
            .arg(&m.config)
            .env("PGHA_LOG", "info")
            .env_remove("RUST_LOG");
        if let (Some(fake), Some(file)) = (&self.fake_clock, &m.wall_clock) {
            cmd.envs(fake.env(file))
                .env("RUST_LOG", "info,pgha_agent::agent=debug");
        }
        let p = NsProcess::spawn(&format!("{name}'s agent"), cmd, &m.log);
        let m = &mut self.members[i];
        m.runs.push(p.log_start);
        m.agent = Some(p);
    }

    pub fn index(&self, name: &str) -> usize {
        self.members
            .iter()
            .position(|m| m.name == name)
            .unwrap_or_else(|| panic!("no member {name}"))
    }

    pub fn member(&self, name: &str) -> &Member {
        &self.members[self.index(name)]
    }

    pub fn member_mut(&mut self, name: &str) -> &mut Member {
        let i = self.index(name);
        &mut self.members[i]
    }

    /// Member name of a member's IP address.
    pub fn name_of_ip(&self, ip: &str) -> String {
        self.members
            .iter()
            .find(|m| m.host.ip == ip)
            .map(|m| m.name.clone())
            .unwrap_or_else(|| ip.to_string())
    }

    /// Waits until a member other than `not` answers `/primary` 200; returns it and when.
    pub fn wait_new_primary(&self, not: &str, timeout: Duration) -> Option<(String, Instant)> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(m) = self
                .members
                .iter()
                .find(|m| m.name != not && m.is_primary())
            {
                return Some((m.name.clone(), Instant::now()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    /// Runs `pgha ARGS --config client.toml` on the client host.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.net
            .command("client", pgha_bin())
            .args(args)
            .arg("--config")
            .arg(&self.client_config)
            .env("PGHA_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .expect("run pgha")
    }

    /// Rows of `query` (simple protocol, text) on `member`'s PostgreSQL, from the client host.
    pub fn sql(&self, member: &str, query: &str) -> Result<Vec<Vec<Option<String>>>, String> {
        run_sql(&self.member(member).conninfo(), query)
    }

    /// The first column of the first row.
    pub fn sql_one(&self, member: &str, query: &str) -> Option<String> {
        self.sql(member, query).ok()?.first()?.first()?.clone()
    }

    /// The read-write entry point of the proxy (on the client host).
    pub fn proxy_conninfo(&self) -> String {
        conninfo(&self.net.host("client").ip, PROXY_RW_PORT)
    }

    /// A libpq multi-host conninfo over every member, `target_session_attrs=read-write`.
    pub fn multi_host_conninfo(&self) -> String {
        let hosts: Vec<&str> = self.members.iter().map(|m| m.host.ip.as_str()).collect();
        format!(
            "{} target_session_attrs=read-write",
            conninfo(&hosts.join(","), PG_PORT)
        )
    }

    /// Steps `name`'s agent's wall clock (and its supervisor's) to `secs` from the true time
    /// (needs [`Opts::fake_wall_clock`]).
    pub fn set_wall_clock(&self, name: &str, secs: i64) {
        let file = self.member(name).wall_clock.as_ref().unwrap_or_else(|| {
            panic!("{name}'s agent runs on the true wall clock (Opts::fake_wall_clock)")
        });
        write_clock_offset(file, secs);
    }

    /// Waits up to `timeout` for `name`'s agent to log a line stamped `secs` from the true
    /// time (± 30 s; it logs every loop): the proof that a step reached the running process.
    /// That line, or `None`.
    pub fn await_wall_clock(&self, name: &str, secs: i64, timeout: Duration) -> Option<String> {
        let log = &self.member(name).log;
        let mut from = self.log_len(name);
        let deadline = Instant::now() + timeout;
        loop {
            let all = std::fs::read(log).unwrap_or_default();
            // complete lines only
            let end = all.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            let text = strip_ansi(&String::from_utf8_lossy(&all[from.min(end)..end]));
            let now = wall_us();
            let found = text.lines().find(|l| {
                log_line_wall_us(l).is_some_and(|t| (t - now - secs * 1_000_000).abs() < 30_000_000)
            });
            if let Some(l) = found {
                return Some(l.to_string());
            }
            from = from.max(end);
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every agent's log tail (and the proxy's), for failure messages.
    pub fn logs(&self, lines: usize) -> String {
        let mut out = String::new();
        for m in &self.members {
            out.push_str(&format!(
                "----- {} ({}, agent log, last {lines} lines)\n{}\n",
                m.name,
                m.host.ip,
                tail(&m.log, lines)
            ));
        }
        out.push_str(&format!(
            "----- proxy (last 20 lines)\n{}\n",
            tail(&self.root.join("proxy.log"), 20)
        ));
        out
    }

    /// Lines of `name`'s agent log (all runs) containing any of `needles` (case-insensitive),
    /// without terminal colours.
    pub fn log_lines(&self, name: &str, needles: &[&str]) -> Vec<String> {
        self.log_lines_since(name, 0, needles)
    }

    /// The length of `name`'s agent log now (an offset for [`Cluster::log_lines_since`]).
    pub fn log_len(&self, name: &str) -> usize {
        std::fs::metadata(&self.member(name).log).map_or(0, |m| m.len() as usize)
    }

    /// Like [`Cluster::log_lines`], from byte `offset` of the log on.
    pub fn log_lines_since(&self, name: &str, offset: usize, needles: &[&str]) -> Vec<String> {
        let all = std::fs::read(&self.member(name).log).unwrap_or_default();
        let text = String::from_utf8_lossy(&all[offset.min(all.len())..]).to_string();
        strip_ansi(&text)
            .lines()
            .filter(|l| {
                let l = l.to_lowercase();
                needles.iter().any(|n| l.contains(&n.to_lowercase()))
            })
            .map(str::to_string)
            .collect()
    }

    /// Starts the writers (proxy, multi-host, and one on each member's own host).
    pub fn checker(&self) -> Checker {
        Checker::start(self, None)
    }

    /// Like [`Cluster::checker`], plus a writer on each member's host that waits up to
    /// `patience` for every answer (it sees answers a stalled server delivers late).
    pub fn checker_patient(&self, patience: Duration) -> Checker {
        Checker::start(self, Some(patience))
    }
}

impl AgentSet for Cluster {
    type Agent = Member;

    const POLL: Duration = Duration::from_millis(200);

    fn rest_agents(&self) -> &[Member] {
        &self.members
    }

    fn failure_logs(&self) -> String {
        self.logs(60)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let keep_anyway = std::env::var_os("PGHA_FAULTS_KEEP_LOGS").is_some();
        if std::thread::panicking() || keep_anyway {
            if !keep_anyway {
                eprintln!("{}", self.logs(60));
            }
            // keep every log (the directory itself goes away)
            let keep = std::env::temp_dir()
                .join("pgha-faults-logs")
                .join(&self.net.prefix);
            if std::fs::create_dir_all(&keep).is_ok() {
                for e in std::fs::read_dir(&self.root)
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    let name = e.file_name();
                    if name.to_string_lossy().ends_with(".log") {
                        let _ = std::fs::copy(e.path(), keep.join(&name));
                    }
                }
                for m in &self.members {
                    let _ = std::fs::copy(
                        m.dir.join("postgresql.log"),
                        keep.join(format!("{}.postgresql.log", m.name)),
                    );
                }
                eprintln!("logs kept in {}", keep.display());
            }
        }
        if let Some(mut p) = self.proxy.take() {
            p.stop(Signal::SIGTERM, Duration::from_secs(5));
        }
        // SIGTERM every agent at once (SIGCONT first: one may be stopped), SIGKILL after 15 s
        for m in &self.members {
            if let Some(a) = &m.agent {
                a.signal(Signal::SIGCONT);
                a.signal(Signal::SIGTERM);
            }
        }
        for m in &mut self.members {
            if let Some(mut a) = m.agent.take() {
                a.stop(Signal::SIGTERM, Duration::from_secs(15));
            }
        }
        for d in self.disks.iter_mut().chain(&mut self.etcd_disks) {
            d.thaw();
        }
        for m in &self.members {
            m.stop_postmaster();
        }
        for d in self.disks.drain(..) {
            d.unmount();
        }
        for d in self.host_disks.drain(..) {
            d.unmount();
        }
        for mut e in self.etcd.drain(..) {
            e.stop(Signal::SIGKILL, Duration::from_secs(5));
        }
        for d in self.etcd_disks.drain(..) {
            d.unmount();
        }
        self.net.destroy();
        if let Some(fake) = &self.fake_clock {
            fake.remove_leftovers();
        }
        self.thread_ns.take();
    }
}

// ---------------------------------------------------------------------------------------------
// A member's own disk

/// A member's directory on an ext4 image of its own, mounted through a loop device: `fsfreeze`
/// stalls every write to it (and every fsync) until thawed, as a disk that stops answering.
struct MemberDisk {
    member: String,
    disk: LoopDisk,
}

impl MemberDisk {
    fn mount(root: &Path, mount: &Path) -> MemberDisk {
        let member = mount.file_name().unwrap().to_str().unwrap().to_string();
        let image = root.join(format!("{member}.disk"));
        MemberDisk {
            disk: LoopDisk::mount(&image, mount, "1G"),
            member,
        }
    }

    fn freeze(&mut self) {
        self.disk.freeze();
    }

    fn thaw(&mut self) {
        self.disk.thaw();
    }

    fn filler(&self) -> PathBuf {
        self.disk.path().join("disk-filler")
    }

    fn unmount(self) {
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
fn member_dir(root: &Path, name: &str, opts: &Opts) -> PathBuf {
    if opts.host_disks {
        root.join(format!("{name}-host")).join(name)
    } else {
        root.join(name)
    }
}

/// The small file system a member's directory sits on ([`Opts::host_disks`]): a tmpfs that
/// a test fills to the last byte, for root as well (tmpfs reserves nothing).
struct HostDisk {
    member: String,
    mount: PathBuf,
}

impl HostDisk {
    fn mount(root: &Path, member: &str) -> HostDisk {
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

    fn unmount(self) {
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

// ---------------------------------------------------------------------------------------------
// SQL from a test thread

/// Connections held open to one PostgreSQL (to exhaust its connection slots), from a thread in
/// the client host's namespace; closed on drop.
pub struct HeldConnections {
    pub opened: usize,
    /// The error that ended the opening (e.g. "sorry, too many clients already").
    pub refusal: String,
    /// Sessions of `terminate_app` terminated so far.
    pub terminated: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HeldConnections {
    /// Opens connections as `conninfo` until PostgreSQL refuses one (at most `max`), then
    /// keeps taking every slot that frees up until dropped.
    /// With `terminate_app`, every second the sessions of that application_name (e.g. the
    /// agent's own long-lived probe connection, "pgha") are terminated from a held connection,
    /// so that they have to reconnect, and find no free slot.
    pub fn open(
        ns: &str,
        conninfo: &str,
        max: usize,
        terminate_app: Option<&str>,
    ) -> HeldConnections {
        let stop = Arc::new(AtomicBool::new(false));
        let terminated = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn({
            let (ns, conninfo, stop) = (ns.to_string(), conninfo.to_string(), stop.clone());
            let terminate = terminate_app.map(|app| {
                format!(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                     WHERE application_name = '{app}' AND pid <> pg_backend_pid()"
                )
            });
            let terminated = terminated.clone();
            move || {
                enter_netns(&ns).expect("setns");
                small_runtime().block_on(async {
                    let mut held = Vec::new();
                    let mut refusal = String::from("limit reached");
                    while held.len() < max {
                        match connect_within(&conninfo, Duration::from_secs(3)).await {
                            Ok(c) => held.push(c),
                            Err(e) => {
                                refusal = e;
                                break;
                            }
                        }
                    }
                    let _ = tx.send((held.len(), refusal));
                    // keep taking any slot another client frees
                    let mut last_terminate = Instant::now() - Duration::from_secs(10);
                    while !stop.load(Ordering::SeqCst) {
                        if let (Some(q), Some(admin)) = (&terminate, held.first()) {
                            if last_terminate.elapsed() >= Duration::from_secs(1) {
                                last_terminate = Instant::now();
                                if let Ok(msgs) = admin.simple_query(q).await {
                                    let n = simple_rows(msgs)
                                        .first()
                                        .and_then(|r| r[0].as_deref()?.parse::<usize>().ok())
                                        .unwrap_or(0);
                                    terminated.fetch_add(n, Ordering::SeqCst);
                                }
                            }
                        }
                        if held.len() < max {
                            if let Ok(c) = connect_within(&conninfo, Duration::from_secs(3)).await {
                                held.push(c);
                            }
                        }
                        held.retain(|c| !c.is_closed());
                        tokio::time::sleep(Duration::from_millis(25)).await;
                    }
                    drop(held);
                });
            }
        });
        let (opened, refusal) = rx.recv().expect("the connection holder died");
        HeldConnections {
            opened,
            refusal,
            terminated,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for HeldConnections {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The checker

/// One acknowledged write.
#[derive(Clone, Debug)]
pub struct Ack {
    pub id: u64,
    pub writer: String,
    /// The member whose PostgreSQL committed it (from `inet_server_addr()`).
    pub member: String,
    pub sent: Instant,
    pub acked: Instant,
    /// `sent` and `acked` on the wall clock (µs since the epoch).
    pub sent_us: i64,
    pub acked_us: i64,
    /// When the member's PostgreSQL ran the INSERT (`clock_timestamp()`, µs since the epoch:
    /// every test host shares this machine's kernel, hence its wall clock).
    pub executed_us: Option<i64>,
    /// The timeline the member wrote it on (each promotion begins a new one).
    pub timeline: Option<u32>,
}

/// How far a server's `clock_timestamp()` may fall outside the window in which the checker sent
/// a write and got its answer (on the checker's true wall clock) before it is not trusted: the
/// clocks are one kernel's, so only a server whose wall clock was stepped strays.
pub const SERVER_CLOCK_TOLERANCE_US: i64 = 1_000_000;

impl Ack {
    /// Who took the write, as the judgement of writers tells them apart: the member and its
    /// timeline, so that a member that takes writes again after another did (a promotion of
    /// its own, on a newer timeline) is a newer writer, not the old one writing on.
    pub fn term(&self) -> String {
        match self.timeline {
            Some(tl) => format!("{} (timeline {tl})", self.member),
            None => self.member.clone(),
        }
    }

    /// How far the server's `clock_timestamp()` fell outside [sent, acked] (µs, negative:
    /// before it), when by more than [`SERVER_CLOCK_TOLERANCE_US`].
    pub fn server_clock_off_us(&self) -> Option<i64> {
        let e = self.executed_us?;
        let off = if e < self.sent_us {
            e - self.sent_us
        } else if e > self.acked_us {
            e - self.acked_us
        } else {
            0
        };
        (off.abs() > SERVER_CLOCK_TOLERANCE_US).then_some(off)
    }

    /// When the write ran, as far as the checker can tell: the server's `clock_timestamp()`,
    /// unless that strays from [sent, acked] (a stepped server clock); then the latest instant
    /// it can have run, its answer, so that a second writer is never missed (a late answer to
    /// an earlier write may then be counted as one, and the report says why).
    pub fn executed_trusted_us(&self) -> Option<i64> {
        match self.server_clock_off_us() {
            Some(_) => Some(self.acked_us),
            None => self.executed_us,
        }
    }
}

/// A member acknowledging writes it committed after a newer member had acknowledged one (see
/// [`judge_writers`] for exactly what counts).
#[derive(Clone, Debug)]
pub struct TwoWriters {
    pub older: String,
    pub newer: String,
    /// When `newer` acknowledged its first write (ms since the checker started).
    pub newer_first_ack_ms: i64,
    /// How many writes `older` acknowledged that were sent, or executed, after that.
    pub count: usize,
    /// Of those, how many were sent before but executed after (held by a stalled server).
    pub executed_late: usize,
    /// The last such acknowledgement (ms): the two-writer interval is
    /// [newer_first_ack_ms, last_ack_ms].
    pub last_ack_ms: i64,
    /// By writer.
    pub writers: BTreeMap<String, usize>,
}

/// Acknowledgements by `older` received after `newer` had acknowledged a write, of writes
/// sent *and* executed before that: `older` ran them while nobody else took writes and only
/// answered late (a backend frozen between its commit and its answer). Not a second writer;
/// each one the final primary lacks is also in [`Report::lost`].
#[derive(Clone, Debug)]
pub struct LateAcks {
    pub older: String,
    pub newer: String,
    pub newer_first_ack_ms: i64,
    pub count: usize,
    /// How many of them the final primary holds.
    pub present: usize,
    pub last_ack_ms: i64,
}

/// What the checker found.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub attempts: usize,
    pub acked: usize,
    pub acked_by_member: BTreeMap<String, usize>,
    pub acked_by_writer: BTreeMap<String, usize>,
    /// member → (first, last) acknowledgement, ms since start, in order of first ack.
    pub members_in_order: Vec<(String, i64, i64)>,
    /// Acknowledged writes missing from the final primary.
    pub lost: Vec<Ack>,
    /// Acknowledgements that arrived late but are no second writer (see [`LateAcks`]).
    pub late_acks: Vec<LateAcks>,
    pub final_primary: String,
    pub two_writers: Vec<TwoWriters>,
    /// Longest time without any acknowledgement (ms) and when it began.
    pub longest_gap_ms: i64,
    pub longest_gap_from_ms: i64,
    /// Events the test marked (label, ms since start).
    pub marks: Vec<(String, i64)>,
    /// By member: acknowledged writes whose `clock_timestamp()` strayed from the checker's
    /// clock ([`Ack::server_clock_off_us`]), and the largest such offset (µs).
    pub server_clock_off: BTreeMap<String, (usize, i64)>,
    pub origin: Option<Instant>,
}

impl Report {
    pub fn ms(&self, t: Instant) -> i64 {
        t.duration_since(self.origin.unwrap()).as_millis() as i64
    }

    pub fn lost_by_member(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for a in &self.lost {
            *m.entry(a.member.clone()).or_default() += 1;
        }
        m
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "checker: {} writes attempted, {} acknowledged (by member {:?}, by writer {:?})",
            self.attempts, self.acked, self.acked_by_member, self.acked_by_writer
        )?;
        for (label, ms) in &self.marks {
            writeln!(f, "  event at {ms} ms: {label}")?;
        }
        for (m, first, last) in &self.members_in_order {
            writeln!(f, "  {m} acknowledged writes from {first} ms to {last} ms")?;
        }
        writeln!(
            f,
            "  longest time without an acknowledgement: {} ms (from {} ms)",
            self.longest_gap_ms, self.longest_gap_from_ms
        )?;
        writeln!(
            f,
            "  acknowledged writes missing from the final primary {}: {} {:?}",
            self.final_primary,
            self.lost.len(),
            self.lost_by_member()
        )?;
        if let (Some(first), Some(last)) = (self.lost.first(), self.lost.last()) {
            writeln!(
                f,
                "    lost ids {}..{}, acknowledged from {} ms to {} ms",
                first.id,
                last.id,
                self.ms(first.acked),
                self.ms(last.acked)
            )?;
        }
        for l in &self.late_acks {
            writeln!(
                f,
                "  late acknowledgements (no second writer): {} answered {} writes after {} had \
                 acknowledged one at {} ms, all sent and executed before it, the last at {} ms; \
                 {} of them on the final primary, {} missing (counted as lost)",
                l.older,
                l.count,
                l.newer,
                l.newer_first_ack_ms,
                l.last_ack_ms,
                l.present,
                l.count - l.present
            )?;
        }
        for (m, (n, off)) in &self.server_clock_off {
            writeln!(
                f,
                "  SERVER CLOCK: {m}'s clock_timestamp() strayed from the checker's clock on {n} \
                 acknowledged writes (up to {:+.3} s outside [sent, answered]); their answers \
                 count as their execution",
                *off as f64 / 1e6
            )?;
        }
        if self.two_writers.is_empty() {
            writeln!(f, "  two writers: none")?;
        }
        for t in &self.two_writers {
            writeln!(
                f,
                "  TWO WRITERS: {} acknowledged {} writes sent ({} of them only executed) after {} had \
                 acknowledged one at {} ms; interval [{} ms, {} ms] = {} ms; by writer {:?}",
                t.older,
                t.count,
                t.executed_late,
                t.newer,
                t.newer_first_ack_ms,
                t.newer_first_ack_ms,
                t.last_ack_ms,
                t.last_ack_ms - t.newer_first_ack_ms,
                t.writers
            )?;
        }
        Ok(())
    }
}

struct Attempt {
    ack: Option<Ack>,
}

/// Writer threads: through the proxy, through the multi-host conninfo, and on each member's
/// own host (a local application: it still reaches its PostgreSQL when the host is cut off).
pub struct Checker {
    origin: Instant,
    attempts: Arc<Mutex<Vec<Attempt>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    marks: Mutex<Vec<(String, Instant)>>,
    members_by_ip: BTreeMap<String, String>,
}

/// A write is attempted every this often by each writer.
pub const WRITE_EVERY: Duration = Duration::from_millis(50);
/// How long a writer waits for an answer before it gives up on the session.
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);

impl Checker {
    /// With `patient`, one more writer on each member's host waits that long for each answer
    /// (as an application without a statement timeout does): it sees the answers a stalled
    /// server delivers late, which the others have given up on after [`WRITE_TIMEOUT`].
    fn start(c: &Cluster, patient: Option<Duration>) -> Checker {
        let leader = c.wait_converged(Duration::from_secs(60));
        run_sql(
            &c.member(&leader).conninfo(),
            "CREATE TABLE IF NOT EXISTS pgha_checker(id bigint PRIMARY KEY, writer text NOT NULL, \
             member text NOT NULL DEFAULT host(inet_server_addr()), at timestamptz DEFAULT clock_timestamp())",
        )
        .unwrap_or_else(|e| panic!("create the checker table on {leader}: {e}"));
        let origin = Instant::now();
        let attempts: Arc<Mutex<Vec<Attempt>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let ids = Arc::new(AtomicU64::new(1));
        let client_ns = c.net.host("client").ns.clone();
        let mut writers: Vec<(String, String, String, Duration)> = vec![
            (
                "proxy".into(),
                client_ns.clone(),
                c.proxy_conninfo(),
                WRITE_TIMEOUT,
            ),
            (
                "multihost".into(),
                client_ns,
                c.multi_host_conninfo(),
                WRITE_TIMEOUT,
            ),
        ];
        // one on each member's host, and with `patient` one more that waits that long
        let mut locals = vec![("local-", WRITE_TIMEOUT)];
        locals.extend(patient.map(|p| ("patient-local-", p)));
        for (prefix, timeout) in locals {
            for m in &c.members {
                let name = format!("{prefix}{}", m.name);
                writers.push((name, m.host.ns.clone(), m.conninfo(), timeout));
            }
        }
        let members_by_ip: BTreeMap<String, String> = c
            .members
            .iter()
            .map(|m| (m.host.ip.clone(), m.name.clone()))
            .collect();
        let threads = writers
            .into_iter()
            .map(|(writer, ns, conninfo, timeout)| {
                let (attempts, stop, ids, by_ip) = (
                    attempts.clone(),
                    stop.clone(),
                    ids.clone(),
                    members_by_ip.clone(),
                );
                std::thread::spawn(move || {
                    enter_netns(&ns).expect("setns into the writer's host");
                    small_runtime().block_on(write_loop(
                        writer, conninfo, timeout, attempts, stop, ids, by_ip,
                    ));
                })
            })
            .collect();
        Checker {
            origin,
            attempts,
            stop,
            threads,
            marks: Mutex::new(Vec::new()),
            members_by_ip,
        }
    }

    /// Records an event (printed in the report with its time).
    pub fn mark(&self, label: &str) {
        eprintln!("[{} ms] {label}", self.origin.elapsed().as_millis());
        self.marks
            .lock()
            .unwrap()
            .push((label.to_string(), Instant::now()));
    }

    pub fn ms(&self, t: Instant) -> i64 {
        t.duration_since(self.origin).as_millis() as i64
    }

    /// Acknowledgements so far.
    pub fn acks(&self) -> Vec<Ack> {
        self.attempts
            .lock()
            .unwrap()
            .iter()
            .filter_map(|a| a.ack.clone())
            .collect()
    }

    /// The first acknowledgement by `member` at or after `after`.
    pub fn first_ack_by(&self, member: &str, after: Instant) -> Option<Instant> {
        self.acks()
            .iter()
            .filter(|a| a.member == member && a.acked >= after)
            .map(|a| a.acked)
            .min()
    }

    /// Waits until `member` acknowledged at least `n` writes after `after`.
    pub fn wait_acks(&self, member: &str, after: Instant, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let count = self
                .acks()
                .iter()
                .filter(|a| a.member == member && a.acked >= after)
                .count();
            if count >= n {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Stops the writers, waits for the cluster to converge, and compares what was
    /// acknowledged with what the final primary holds.
    pub fn finish(mut self, c: &Cluster, converge: Duration) -> Report {
        let stopping = Instant::now();
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.mark(&format!(
            "writers stopped ({} ms to end their last write)",
            stopping.elapsed().as_millis()
        ));
        let final_primary = c.wait_converged(converge);
        self.mark(&format!(
            "converged: {final_primary} primary, every other member streaming"
        ));
        let attempts = std::mem::take(&mut *self.attempts.lock().unwrap());
        let mut acks: Vec<Ack> = attempts.iter().filter_map(|a| a.ack.clone()).collect();
        acks.sort_by_key(|a| a.acked);
        let present: BTreeSet<u64> = wait_until(
            "the checker table on the final primary",
            Duration::from_secs(30),
            || {
                let rows = c.sql(&final_primary, "SELECT id FROM pgha_checker").ok()?;
                Some(
                    rows.iter()
                        .filter_map(|r| r[0].as_deref()?.parse().ok())
                        .collect(),
                )
            },
        );
        let ms = |t: Instant| t.duration_since(self.origin).as_millis() as i64;
        let mut report = Report {
            attempts: attempts.len(),
            acked: acks.len(),
            final_primary,
            origin: Some(self.origin),
            ..Report::default()
        };
        for a in &acks {
            *report.acked_by_member.entry(a.member.clone()).or_default() += 1;
            *report.acked_by_writer.entry(a.writer.clone()).or_default() += 1;
        }
        let mut first: BTreeMap<&str, Instant> = BTreeMap::new();
        let mut last: BTreeMap<&str, Instant> = BTreeMap::new();
        for a in &acks {
            first.entry(&a.member).or_insert(a.acked);
            last.insert(&a.member, a.acked);
        }
        let mut order: Vec<(&str, Instant)> = first.iter().map(|(m, t)| (*m, *t)).collect();
        order.sort_by_key(|(_, t)| *t);
        report.members_in_order = order
            .iter()
            .map(|(m, t)| (m.to_string(), ms(*t), ms(last[m])))
            .collect();
        let (two_writers, late_acks) = judge_writers(&acks, &present, ms);
        report.two_writers = two_writers;
        report.late_acks = late_acks;
        report.lost = acks
            .iter()
            .filter(|a| !present.contains(&a.id))
            .cloned()
            .collect();
        report.lost.sort_by_key(|a| a.id);
        for a in &acks {
            if let Some(off) = a.server_clock_off_us() {
                let e = report
                    .server_clock_off
                    .entry(a.member.clone())
                    .or_insert((0, 0));
                e.0 += 1;
                if off.abs() > e.1.abs() {
                    e.1 = off;
                }
            }
        }
        let mut prev = self.origin;
        for a in &acks {
            let gap = ms(a.acked) - ms(prev);
            if gap > report.longest_gap_ms {
                report.longest_gap_ms = gap;
                report.longest_gap_from_ms = ms(prev);
            }
            prev = prev.max(a.acked);
        }
        report.marks = self
            .marks
            .lock()
            .unwrap()
            .iter()
            .map(|(l, t)| (l.clone(), ms(*t)))
            .collect();
        let _ = &self.members_by_ip;
        report
    }
}

/// Second writers and late acknowledgements among `acks` (sorted by `acked`); `present`: the
/// ids the final primary holds; `ms`: an instant as ms since the checker started.
pub fn judge_writers(
    acks: &[Ack],
    present: &BTreeSet<u64>,
    ms: impl Fn(Instant) -> i64,
) -> (Vec<TwoWriters>, Vec<LateAcks>) {
    // Two writers. Y ("newer") first acknowledged a write at t_Y (when its writer got the
    // answer), later than X ("older") first did; Y had committed that write by t_Y. X is a
    // second writer if it acknowledged a write that
    //  (a) was sent after t_Y: it cannot have reached X, let alone been committed there,
    //      before Y had committed one; or
    //  (b) X's PostgreSQL executed after t_Y by its own clock (the INSERT's
    //      clock_timestamp(); the test hosts share this kernel's wall clock), though sent
    //      earlier: held by a stalled server and run only once Y took writes (its commit,
    //      hence the answer, came later still). A server clock outside the window between
    //      sending and answering was stepped: then the answer counts as the execution
    //      (Ack::executed_trusted_us), which can only add second writers.
    // Neither needs the write to be lost: X committing anything after Y did is the fault.
    // Writers are told apart by term (member and timeline, `Ack::term`): a member promoted
    // again after another took writes (n1, n2, then n1 on a newer timeline) is a newer writer
    // than both; its old term writing after the other's first write is still the fault.
    // Not a second writer on its own: X answering after t_Y a write sent and executed
    // before t_Y (a backend frozen between its commit and its answer, or a commit waiting
    // for its synchronous standby's confirmation that arrives late). X may have committed
    // it before Y took over, and then Y holds it (that is what "durable on the new
    // primary" means here). Those are reported as late acknowledgements with how many the
    // final primary holds; every one it lacks is in `lost`, like any acknowledged write
    // missing there (a write executed before t_Y but committed after it is one of those:
    // the final primary cannot hold it).
    let terms: Vec<String> = acks.iter().map(Ack::term).collect();
    let first_us: BTreeMap<&str, i64> = {
        let mut m = BTreeMap::new();
        for (a, term) in acks.iter().zip(&terms) {
            m.entry(term.as_str()).or_insert(a.acked_us);
        }
        m
    };
    let mut first: BTreeMap<&str, Instant> = BTreeMap::new();
    for (a, term) in acks.iter().zip(&terms) {
        first.entry(term.as_str()).or_insert(a.acked);
    }
    let mut order: Vec<(&str, Instant)> = first.iter().map(|(m, t)| (*m, *t)).collect();
    order.sort_by_key(|(_, t)| *t);
    let (mut two_writers, mut late_acks) = (Vec::new(), Vec::new());
    for (i, (older, _)) in order.iter().enumerate() {
        for (newer, newer_first) in &order[i + 1..] {
            let newer_us = first_us[newer];
            let sent_after = |a: &Ack| a.sent > *newer_first;
            let executed_after = |a: &Ack| a.executed_trusted_us().is_some_and(|e| e > newer_us);
            let second: Vec<&Ack> = acks
                .iter()
                .zip(&terms)
                .filter(|(a, term)| term == older && (sent_after(a) || executed_after(a)))
                .map(|(a, _)| a)
                .collect();
            if let Some(l) = second.last() {
                let mut writers = BTreeMap::new();
                for a in &second {
                    *writers.entry(a.writer.clone()).or_default() += 1;
                }
                two_writers.push(TwoWriters {
                    older: older.to_string(),
                    newer: newer.to_string(),
                    newer_first_ack_ms: ms(*newer_first),
                    count: second.len(),
                    executed_late: second.iter().filter(|a| !sent_after(a)).count(),
                    last_ack_ms: ms(l.acked),
                    writers,
                });
            }
            let late: Vec<&Ack> = acks
                .iter()
                .zip(&terms)
                .filter(|(a, term)| {
                    term == older && a.acked > *newer_first && !sent_after(a) && !executed_after(a)
                })
                .map(|(a, _)| a)
                .collect();
            if let Some(l) = late.last() {
                late_acks.push(LateAcks {
                    older: older.to_string(),
                    newer: newer.to_string(),
                    newer_first_ack_ms: ms(*newer_first),
                    count: late.len(),
                    present: late.iter().filter(|a| present.contains(&a.id)).count(),
                    last_ack_ms: ms(l.acked),
                });
            }
        }
    }
    (two_writers, late_acks)
}

impl Drop for Checker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

async fn write_loop(
    writer: String,
    conninfo: String,
    timeout: Duration,
    attempts: Arc<Mutex<Vec<Attempt>>>,
    stop: Arc<AtomicBool>,
    ids: Arc<AtomicU64>,
    by_ip: BTreeMap<String, String>,
) {
    let mut client: Option<tokio_postgres::Client> = None;
    let mut next = tokio::time::Instant::now();
    while !stop.load(Ordering::SeqCst) {
        tokio::time::sleep_until(next).await;
        next = tokio::time::Instant::now().max(next) + WRITE_EVERY;
        if client.as_ref().is_none_or(|c| c.is_closed()) {
            client = connect_within(&conninfo, Duration::from_secs(4)).await.ok();
        }
        let Some(c) = &client else {
            continue;
        };
        let id = ids.fetch_add(1, Ordering::SeqCst);
        let sql = format!(
            "INSERT INTO pgha_checker(id, writer) VALUES ({id}, '{writer}') \
             RETURNING member, (extract(epoch FROM at) * 1000000)::bigint, \
             pg_walfile_name(pg_current_wal_insert_lsn())"
        );
        let (sent, sent_us) = (Instant::now(), wall_us());
        let result = tokio::time::timeout(timeout, c.simple_query(&sql)).await;
        let (acked, acked_us) = (Instant::now(), wall_us());
        let read_only = matches!(&result, Ok(Err(e))
            if e.code() == Some(&tokio_postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION));
        let ack = match result {
            Ok(Ok(msgs)) => simple_rows(msgs).first().and_then(|r| {
                let ip = r.first().cloned().flatten()?;
                Some(Ack {
                    id,
                    writer: writer.clone(),
                    member: by_ip.get(&ip).cloned().unwrap_or(ip),
                    sent,
                    acked,
                    sent_us,
                    acked_us,
                    executed_us: r.get(1).cloned().flatten().and_then(|v| v.parse().ok()),
                    timeline: r
                        .get(2)
                        .cloned()
                        .flatten()
                        .and_then(|f| u32::from_str_radix(f.get(..8)?, 16).ok()),
                })
            }),
            _ => None,
        };
        // Timed out or broken: a new connection finds the primary again. A local writer keeps
        // its session on a standby (it can write once that standby is promoted).
        if ack.is_none() && !(read_only && writer.contains("local-")) {
            client = None;
        }
        attempts.lock().unwrap().push(Attempt { ack });
    }
}
