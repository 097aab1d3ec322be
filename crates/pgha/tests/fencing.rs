//! Fencing that outlives the agent (issue 9, I1): PostgreSQL runs under a supervisor process
//! that kills it at the lease deadline, so a primary whose agent died or was paused stops
//! accepting writes before its lease can expire for the others; standbys are left running.
//!
//! Local mode (`pgha up`, whose agents are tasks of one process): SIGKILL or SIGSTOP of that
//! process is the agent dying or pausing while PostgreSQL lives on.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// One cluster at a time in this file.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

const TTL_MS: u64 = 3000;
const MARGIN_MS: u64 = 1000;

fn postmaster_pid(data: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(data.join("postmaster.pid")).ok()?;
    let pid: i32 = text.lines().next()?.trim().parse().ok()?;
    kill(Pid::from_raw(pid), None).ok().map(|_| pid)
}

fn alive(pid: i32) -> bool {
    // A zombie still answers kill(0): look at /proc.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| !r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// Starts a 3-member cluster with a short lease and returns it with the primary's name.
fn start_cluster(dir: &Path) -> (UpProcess, String) {
    let mut up = UpProcess::start(dir, 3);
    let d = dir.to_str().unwrap();
    let ttl = format!("ttl_ms={TTL_MS}");
    let margin = format!("safety_margin_ms={MARGIN_MS}");
    let out = pgha(&[
        "config",
        "set",
        "--dir",
        d,
        &ttl,
        &margin,
        "loop_wait_ms=500",
    ]);
    assert!(out.status.success(), "config set: {}", stderr_of(&out));
    // Let a few renewals happen under the new ttl.
    std::thread::sleep(Duration::from_millis(2 * TTL_MS));
    let status = up.wait_streaming(Duration::from_secs(30));
    let primary = status["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "primary")
        .map(|m| m["name"].as_str().unwrap().to_string())
        .expect("a primary");
    (up, primary)
}

/// Waits until the postmaster `pid` is gone; returns how long that took.
fn time_until_gone(pid: i32, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if !alive(pid) {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

#[test]
fn killed_agent_process_fences_the_primary_and_keeps_standbys() {
    let _one = serial();
    let tmp = test_dir();
    let dir = tmp.path().join("ha");
    let (mut up, primary) = start_cluster(&dir);
    let data = |m: &str| dir.join(m).join("data");
    let pm = postmaster_pid(&data(&primary)).expect("primary postmaster");
    let standbys: Vec<(String, i32)> = ["n1", "n2", "n3"]
        .iter()
        .filter(|m| **m != primary)
        .map(|m| {
            (
                m.to_string(),
                postmaster_pid(&data(m)).expect("standby postmaster"),
            )
        })
        .collect();

    up.kill9();
    let gone = time_until_gone(pm, Duration::from_millis(TTL_MS + 2000));
    let gone = gone.unwrap_or_else(|| {
        panic!("primary {primary} still running {TTL_MS} ms + 2 s after its agent was killed")
    });
    assert!(
        gone < Duration::from_millis(TTL_MS),
        "primary fenced only after {gone:?}: the lease (ttl {TTL_MS} ms) could already have expired"
    );
    for (name, pid) in &standbys {
        assert!(
            alive(*pid),
            "standby {name} was stopped along with the agent"
        );
    }
    let log = up.log();
    assert!(
        log.contains("fencing"),
        "the supervisor says why it stopped PostgreSQL:\n{log}"
    );

    // The next `pgha up` adopts the standbys as they run and brings the old primary back.
    let mut again = UpProcess::spawn(&dir, 3, up.base, &[]);
    again.wait_streaming(Duration::from_secs(60));
    for (name, pid) in &standbys {
        assert_eq!(
            postmaster_pid(&data(name)),
            Some(*pid),
            "standby {name} was restarted instead of adopted"
        );
    }
}

#[test]
fn paused_agent_process_is_fenced_then_the_cluster_recovers() {
    let _one = serial();
    let tmp = test_dir();
    let dir = tmp.path().join("ha");
    let (mut up, primary) = start_cluster(&dir);
    let pm = postmaster_pid(&dir.join(&primary).join("data")).expect("primary postmaster");
    let pid = Pid::from_raw(up.pid().unwrap());

    kill(pid, Signal::SIGSTOP).unwrap();
    let gone = time_until_gone(pm, Duration::from_millis(TTL_MS + 2000));
    kill(pid, Signal::SIGCONT).unwrap();
    let gone = gone.unwrap_or_else(|| {
        panic!("primary {primary} still running {TTL_MS} ms + 2 s into its agent's pause")
    });
    assert!(
        gone < Duration::from_millis(TTL_MS),
        "primary fenced only after {gone:?} (ttl {TTL_MS} ms)"
    );
    // Resumed, the agents find the lease gone and converge on one primary again.
    let status = up.wait_streaming(Duration::from_secs(60));
    let primaries = status["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "primary")
        .count();
    assert_eq!(primaries, 1, "{status:#}");
}

fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The supervisor is the postmaster's parent and PostgreSQL dies with it: a primary never runs
/// without something that can fence it. The agent starts it again.
#[test]
fn a_killed_supervisor_takes_postgresql_with_it() {
    let _one = serial();
    let tmp = test_dir();
    let dir = tmp.path().join("ha");
    let (mut up, primary) = start_cluster(&dir);
    let standby = ["n1", "n2", "n3"]
        .into_iter()
        .find(|m| *m != primary)
        .unwrap();
    let data = dir.join(standby).join("data");
    let pm = postmaster_pid(&data).expect("standby postmaster");
    let supervisor = parent_of(pm).expect("the postmaster's parent");
    let cmdline = std::fs::read_to_string(format!("/proc/{supervisor}/cmdline")).unwrap();
    assert!(
        cmdline.split('\0').any(|a| a == "supervise"),
        "the postmaster's parent is not pgha supervise: {cmdline:?}"
    );
    kill(Pid::from_raw(supervisor), Signal::SIGKILL).unwrap();
    let gone = time_until_gone(pm, Duration::from_secs(5));
    assert!(gone.is_some(), "the postmaster outlived its supervisor");
    up.wait_streaming(Duration::from_secs(60));
    let again = postmaster_pid(&data).expect("restarted");
    assert_ne!(again, pm);
}
