//! Fencing that outlives the agent (issue 9, I1): PostgreSQL runs under a supervisor process
//! that kills it at the lease deadline, so a primary whose agent died or was paused stops
//! accepting writes before its lease can expire for the others; standbys are left running.
//!
//! Local mode (`pgha up`, whose agents are tasks of one process): SIGKILL or SIGSTOP of that
//! process is the agent dying or pausing while PostgreSQL lives on.

mod common;

use std::sync::MutexGuard;
use std::time::Duration;

use common::cluster::MEMBERS;
use common::status::{members, primary_of};
use common::*;
use nix::sys::signal::Signal;
use pgha_testkit::{alive, cmdline, parent_of, poll, postmaster_in, postmaster_pid, proc_stat};
use pgha_testkit::{serial, signal};

const TTL_MS: u64 = 3000;
const MARGIN_MS: u64 = 1000;

/// Takes the serial lock and starts a 3-member cluster with a short lease in a fresh test
/// directory; the lock, the cluster and the primary's name.
fn start_cluster() -> (MutexGuard<'static, ()>, UpProcess, String) {
    let serial = serial();
    let mut up = UpProcess::start_in_temp(3);
    let d = up.dir.to_str().unwrap();
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
    let primary = members(&status)
        .iter()
        .find(|m| m["role"] == "primary")
        .map(|m| m["name"].as_str().unwrap().to_string())
        .expect("a primary");
    (serial, up, primary)
}

/// Waits until the postmaster `pid` is gone; returns how long that took.
fn time_until_gone(pid: u32, limit: Duration) -> Option<Duration> {
    let start = std::time::Instant::now();
    poll(limit, Duration::from_millis(10), || {
        (!alive(pid)).then(|| start.elapsed())
    })
}

/// The primary's postmaster must be gone (`gone`, from [`time_until_gone`]) within the ttl
/// after `event`: later, its lease could already have expired for the others.
fn assert_fenced_in_time(gone: Option<Duration>, primary: &str, event: &str) {
    let gone = gone.unwrap_or_else(|| {
        panic!("primary {primary} still running {TTL_MS} ms + 2 s after {event}")
    });
    assert!(
        gone < Duration::from_millis(TTL_MS),
        "primary {primary} fenced only {gone:?} after {event}: the lease (ttl {TTL_MS} ms) could already have expired"
    );
}

#[test]
fn killed_agent_process_fences_the_primary_and_keeps_standbys() {
    let (_one, mut up, primary) = start_cluster();
    let dir = up.dir.clone();
    let data = |m: &str| dir.join(m).join("data");
    let pm = postmaster_pid(&data(&primary)).expect("primary postmaster");
    let standbys: Vec<(String, u32)> = MEMBERS
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
    assert_fenced_in_time(gone, &primary, "its agent was killed");
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

/// `pgha up` killed (kill -9) and started again at once while the primary's PostgreSQL runs on
/// under its supervisor, another member holding a primary's data as well (the first leader
/// stopped with `pgha stop`, the lease moved): the embedded store comes back with the lease
/// held by the running primary, whose new agent adopts it; the same postmaster goes on and
/// nobody else is promoted. Before, the store came back without a leader and, two members
/// holding a primary's data, nobody was given the key: the primary's agent stopped it at once
/// and an election ran while it could still take writes until its supervisor's deadline.
#[test]
fn pgha_up_killed_and_started_again_at_once_keeps_the_lease_with_the_running_primary() {
    let _one = serial();
    let mut up = UpProcess::start_in_temp(3);
    let dir = up.dir.clone();
    let d = dir.to_str().unwrap().to_string();
    let data = |m: &str| dir.join(m).join("data");
    let first = primary_of(&up.status().expect("status")).expect("a primary");
    let out = pgha(&["stop", "--dir", &d, &first]);
    assert!(out.status.success(), "stop: {}", stderr_of(&out));
    let second = poll(Duration::from_secs(30), Duration::from_millis(100), || {
        up.status()
            .and_then(|s| primary_of(&s))
            .filter(|p| *p != first)
    })
    .unwrap_or_else(|| panic!("no member took over from {first}:\n{}", up.log()));
    let pm = postmaster_pid(&data(&second)).expect("the new primary's postmaster");
    let timeline = |up: &UpProcess, m: &str| {
        members(&up.status().expect("status"))
            .iter()
            .find(|s| s["name"] == m)
            .map(|s| s["timeline"].clone())
    };
    let tl = timeline(&up, &second);

    up.kill9();
    up.restart(&[]);
    let status = up.wait_streaming(Duration::from_secs(90));
    assert_eq!(
        primary_of(&status).as_deref(),
        Some(second.as_str()),
        "the lease moved on the restart:\n{}",
        up.log()
    );
    assert_eq!(
        postmaster_pid(&data(&second)),
        Some(pm),
        "{second}'s PostgreSQL was stopped instead of adopted by its new agent:\n{}",
        up.log()
    );
    assert_eq!(timeline(&up, &second), tl, "a promotion ran on the restart");
}

#[test]
fn paused_agent_process_is_fenced_then_the_cluster_recovers() {
    let (_one, mut up, primary) = start_cluster();
    let pm = postmaster_pid(&up.dir.join(&primary).join("data")).expect("primary postmaster");
    let pid = up.pid().unwrap();

    assert!(signal(pid, Signal::SIGSTOP), "SIGSTOP to pgha up");
    let gone = time_until_gone(pm, Duration::from_millis(TTL_MS + 2000));
    assert!(signal(pid, Signal::SIGCONT), "SIGCONT to pgha up");
    assert_fenced_in_time(gone, &primary, "its agent was paused");
    // Resumed, the agents find the lease gone and converge on one primary again.
    let status = up.wait_streaming(Duration::from_secs(60));
    let primaries = members(&status)
        .iter()
        .filter(|m| m["role"] == "primary")
        .count();
    assert_eq!(primaries, 1, "{status:#}");
}

/// The supervisor is the postmaster's parent and PostgreSQL dies with it: a primary never runs
/// without something that can fence it. The agent starts it again.
#[test]
fn a_killed_supervisor_takes_postgresql_with_it() {
    let (_one, mut up, primary) = start_cluster();
    kill_a_standbys_supervisor(&mut up, &primary);
}

/// As [`a_killed_supervisor_takes_postgresql_with_it`] with `pgha up` as a container's pid 1
/// (a child subreaper): the killed supervisor's postmaster becomes its child and stays a zombie,
/// which still answers `kill(pid, 0)`; the agent starts PostgreSQL again all the same.
#[test]
fn a_killed_supervisor_under_pgha_up_as_pid_1_leaves_a_zombie_postgresql_is_started_past() {
    let _one = serial();
    let mut up = UpProcess::start_in_temp_as_subreaper(3);
    let status = up.wait_streaming(Duration::from_secs(60));
    let primary = primary_of(&status).expect("a primary");
    let zombie = kill_a_standbys_supervisor(&mut up, &primary);
    let state = proc_stat(zombie).map(|s| s.state);
    assert_eq!(
        state,
        Some('Z'),
        "the killed postmaster, adopted by pgha up"
    );
    let said = format!("names pid {zombie}, a process that has exited and that its parent");
    assert!(
        up.log().contains(&said),
        "the log does not say why: {}",
        up.log()
    );
}

/// `pgha up` as pid 1 of a pid namespace of its own, as a container's command started without
/// an init: the postmaster of a killed supervisor becomes its child, and it reaps it (no
/// zombie: before, it stayed one for good, as in the test above); its agent starts PostgreSQL
/// again; a SIGTERM to it stops the cluster cleanly (exit 0).
#[test]
fn pgha_up_as_pid_1_reaps_what_a_killed_supervisor_leaves_and_stops_on_sigterm() {
    let _one = serial();
    let mut up = UpProcess::start_in_temp_as(3, RunAs::Pid1);
    let init = up.pid().expect("pid 1 of the namespace");
    assert!(
        cmdline(init).split(' ').any(|a| a == "up"),
        "pid 1 of the namespace is not pgha up: {:?}",
        cmdline(init)
    );
    let status = up.wait_streaming(Duration::from_secs(60));
    let primary = primary_of(&status).expect("a primary");
    let standby = MEMBERS.into_iter().find(|m| *m != primary).unwrap();
    let data = up.dir.join(standby).join("data");
    let pm = postmaster_in(&data).expect("the standby's postmaster");
    let supervisor = parent_of(pm).expect("the postmaster's parent");
    assert!(
        cmdline(supervisor).split(' ').any(|a| a == "supervise"),
        "the postmaster's parent is not pgha supervise: {:?}",
        cmdline(supervisor)
    );
    assert!(
        signal(supervisor, Signal::SIGKILL),
        "SIGKILL to the supervisor"
    );
    // A zombie keeps its /proc entry until its parent reaps it.
    let reaped = poll(Duration::from_secs(10), Duration::from_millis(10), || {
        proc_stat(pm).is_none().then_some(())
    });
    assert!(
        reaped.is_some(),
        "the killed supervisor's postmaster {pm} was not reaped: {:?} (its parent {:?})\n{}",
        proc_stat(pm),
        proc_stat(pm).map(|s| cmdline(s.ppid)),
        up.log()
    );
    up.wait_streaming(Duration::from_secs(60));
    let again = postmaster_in(&data).expect("PostgreSQL started again");
    assert_ne!(again, pm);
    let code = up.terminate();
    let log = up.log();
    assert_eq!(code, Some(0), "pgha up did not stop cleanly:\n{log}");
    assert!(log.contains("all members stopped"), "{log}");
}

/// Kills the supervisor of a standby of `primary`; checks its postmaster died with it and that
/// the agent started PostgreSQL again. Returns the dead postmaster's pid.
fn kill_a_standbys_supervisor(up: &mut UpProcess, primary: &str) -> u32 {
    let standby = MEMBERS.into_iter().find(|m| *m != primary).unwrap();
    let data = up.dir.join(standby).join("data");
    let pm = postmaster_pid(&data).expect("standby postmaster");
    let supervisor = parent_of(pm).expect("the postmaster's parent");
    let cmdline = cmdline(supervisor);
    assert!(
        cmdline.split(' ').any(|a| a == "supervise"),
        "the postmaster's parent is not pgha supervise: {cmdline:?}"
    );
    assert!(
        signal(supervisor, Signal::SIGKILL),
        "SIGKILL to the supervisor"
    );
    let gone = time_until_gone(pm, Duration::from_secs(5));
    assert!(gone.is_some(), "the postmaster outlived its supervisor");
    up.wait_streaming(Duration::from_secs(60));
    let again = postmaster_pid(&data).expect("restarted");
    assert_ne!(again, pm);
    pm
}
