//! Faults on test hosts (issue 9): etcd, three `pgha agent` members and a client running
//! `pgha proxy`, each in its own network namespace (see `common/netns.rs`), on real
//! PostgreSQL and real etcd. Each test injects one fault while writers write every 50 ms
//! through the proxy, through a multi-host conninfo with `target_session_attrs=read-write`,
//! and on each member's own host; the checker then counts acknowledged writes missing from the
//! final primary and two-writer intervals. The faults:
//!
//! - the leader's agent killed (kill -9) or paused (SIGSTOP) while PostgreSQL lives;
//! - the leader's agent killed and restarted at once while its host cannot reach etcd (the
//!   supervisor must fence at the deadline the dead agent armed; the new agent must not extend
//!   it without etcd);
//! - `ttl_ms` raised live, then the leader's link to etcd blackholed (iptables DROP); etcd's
//!   answers to the leader alone blackholed (its requests still arrive);
//! - the leader's whole host isolated (synchronous mode);
//! - the leader's whole host frozen, as a stalled VM (cgroup v1 freezer: agent, supervisor,
//!   postmaster and backends), then thawed (synchronous mode);
//! - the leader's PostgreSQL stalled (SIGSTOP of the postmaster and every backend, agent and
//!   supervisor running: probes hang as in a disk I/O stall) beyond ttl +
//!   `primary_start_timeout_ms` (synchronous mode);
//! - the wall clock of the leader's agent stepped an hour ahead, then an hour behind, then back,
//!   and a standby's the other way round (libfaketime on the agents and their supervisors only,
//!   synchronous mode): nothing may happen at all;
//! - etcd itself stalled (SIGSTOP of its process) for 2 T, synchronous mode, then resumed;
//!   etcd's data lost (killed, data removed, an empty etcd started in its place);
//!   etcd slow (its answers and the members' requests delayed by a forwarder on its host),
//!   within the store call bound, around it and far beyond it, and slow enough that a
//!   call's bound holds one round trip but not two while the leader's host crashes (the
//!   leader key must still change hands); one etcd member of three
//!   stalled (SIGSTOP), or cut off from the other two (each on a host of its own);
//! - the leader's disk stalled (fsfreeze of a loop-mounted ext4 holding its member directory:
//!   `Opts::member_disks`) for 20 s, synchronous mode; its PostgreSQL killed while its disk is
//!   frozen, and its link to etcd cut while the agent restarts it (the lease lapses with the
//!   start in flight); the synchronous standby's disk stalled, then the leader's host crashed;
//!   the disk of the standby that would win a tie frozen just after the leader's, and the
//!   winner's frozen as it promotes after the leader's host crashed (asynchronous);
//! - the file system holding the lease files full (`Opts::host_disks`: the data has room):
//!   the standbys' while the leader's host crashes, and the leader's own; the leader's data
//!   disk full, then its host crashed; the synchronous standby's data disk full, then the
//!   leader's host crashed;
//! - the release of the leader key sent by an agent whose link to etcd is slow (6 s each
//!   way), landing after that agent was killed and its successor adopted the key; a
//!   winner's acquisition held 6 s on its way to etcd (one gRPC call held, the others
//!   passing: `Opts::etcd_call_holds`), landing after the cluster was paused; a leader's
//!   smaller synchronous set held the same way, landing as the leader crashes (quorum
//!   commit: nothing acknowledged may be lost);
//! - `pgha proxy` paused (SIGSTOP) through a failover, and cut from etcd through one;
//! - the leader stopped (`pgha stop`) while its crashed primary's restart hangs on a frozen
//!   disk (the leave must keep the fence armed);
//! - the old leader's agent killed while it rewinds (pg_rewind must die with it; the next agent
//!   re-clones instead of starting or rewinding that directory again);
//! - the synchronous standby's link to the leader blackholed one way, each way in turn;
//! - a standby's link to the primary blackholed; failsafe with a member absent from the
//!   leader's view; the ttl lowered from 10 s to 3 s while the leader and the member its
//!   failsafe list names are cut off from etcd (the member outside the list must wait out
//!   the promises given on the longer ttl); a failsafe list naming a member back landing
//!   unseen as the store's side is cut off; a leader kept by confirmations reading the store
//!   for a moment in which its renewals are lost, a new member in it (four members: no list
//!   naming that member may go out); the leader's connection slots exhausted; one process of the leader's
//!   PostgreSQL killed as by the OOM killer (the postmaster recovers by itself); the primary
//!   killed soon after a failover while a standby lags;
//! - the synchronous standby restarted with its replay held back (`recovery_min_apply_delay`)
//!   as the leader's host crashes.
//!
//! Needs root, iproute2 and iptables (`apt-get install -y iptables`), the cgroup v1 freezer
//! for `leader_host_frozen`, loop devices, `mkfs.ext4` and `fsfreeze` for `leader_disk_stalled`,
//! and libfaketime (`apt-get install -y libfaketime`) for
//! `leader_wall_clock_jumps`. `PGHA_FAULTS_BIN=PATH`
//! runs them against another `pgha` build; `PGHA_FAULTS_KEEP_LOGS=1` keeps the logs of a run
//! that passed too (in `$TMPDIR/pgha-faults-logs/`). Run them one at a time:
//!
//! ```sh
//! cargo test -p pgha --test faults -- --test-threads=1 [SCENARIO] --nocapture
//! ```

#[path = "common/dist.rs"]
mod dist;
#[path = "common/etcd_space.rs"]
mod etcd_space;
#[path = "common/netns.rs"]
mod netns;

#[path = "faults/checker.rs"]
mod checker;
#[path = "faults/clocks.rs"]
mod clocks;
#[path = "faults/disk_full.rs"]
mod disk_full;
#[path = "faults/disk_stalls.rs"]
mod disk_stalls;
#[path = "faults/etcd_stalls.rs"]
mod etcd_stalls;
#[path = "faults/etcd_storage.rs"]
mod etcd_storage;
#[path = "faults/failsafe.rs"]
mod failsafe;
#[path = "faults/hosts.rs"]
mod hosts;
#[path = "faults/impostors.rs"]
mod impostors;
#[path = "faults/late_requests.rs"]
mod late_requests;
#[path = "faults/leaving.rs"]
mod leaving;
#[path = "faults/links.rs"]
mod links;
#[path = "faults/postgres.rs"]
mod postgres;
#[path = "faults/processes.rs"]
mod processes;
#[path = "faults/proxy.rs"]
mod proxy;
#[path = "faults/replay.rs"]
mod replay;
#[path = "faults/support.rs"]
mod support;

use std::time::{Duration, Instant};

use netns::*;
use pgha_testkit::wait_until;
use support::*;

/// How long after a failover the writers keep watching for a second writer.
const WATCH: Duration = Duration::from_secs(6);
const CONVERGE: Duration = Duration::from_secs(180);
/// How long the patient writers wait for an answer (longer than any stall injected).
const PATIENCE: Duration = Duration::from_secs(30);
/// Scheduling slack for "at once" on a shared 2-core machine (the supervisor polls every
/// 100 ms): a timing bound, not a correctness one.
const FENCE_SLACK: Duration = Duration::from_secs(3);

/// The agent log lines that explain a failover (lease, fencing, promotion, demotion, rewind).
fn explain(c: &Cluster) -> String {
    let mut out = String::new();
    for m in &c.members {
        let lines = c.log_lines(
            &m.name,
            &[
                "promot", "demot", "fenc", "lease", "rewind", "re-clon", "failsafe", "watchdog",
                "leader", "stopp",
            ],
        );
        // the agents that log every loop (fake wall clock) repeat their reasons at debug level
        let lines: Vec<&String> = lines.iter().filter(|l| !l.contains(" DEBUG ")).collect();
        let skip = lines.len().saturating_sub(40);
        out.push_str(&format!(
            "----- {} ({} matching lines, last 40)\n",
            m.name,
            lines.len()
        ));
        for l in &lines[skip..] {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// Fails when a scenario found `unmet` expectations: says which, then `context`, the checker's
/// report and what the agents logged ([`explain`]).
fn assert_all_met(c: &Cluster, report: &Report, unmet: &[String], context: &str) {
    assert!(
        unmet.is_empty(),
        "{}\n{context}\n{report}\n{}",
        unmet.join(";\n"),
        explain(c)
    );
}

/// [`assert_all_met`], then every member streams from the final primary.
fn assert_all_met_and_streaming(c: &Cluster, report: &Report, unmet: &[String], context: &str) {
    assert_all_met(c, report, unmet, context);
    assert_streaming_from_final(c, report);
}

/// [`assert_all_met`] for a fault that must change nothing: `leader` is the final primary too.
fn assert_kept_leading(
    c: &Cluster,
    report: &Report,
    leader: &str,
    mut unmet: Vec<String>,
    fault: &str,
) {
    if report.final_primary != leader {
        unmet.push(format!("the final primary is {}", report.final_primary));
    }
    assert_all_met(c, report, &unmet, &format!("{fault} changed something"));
}

/// [`assert_kept_leading`], then every member streams from it.
fn assert_kept_leading_and_streaming(
    c: &Cluster,
    report: &Report,
    leader: &str,
    unmet: Vec<String>,
    fault: &str,
) {
    assert_kept_leading(c, report, leader, unmet, fault);
    assert_streaming_from_final(c, report);
}

/// Panics, with the figures, if an acknowledged write is missing or two members took writes.
fn assert_no_loss_one_writer(report: &Report, c: &Cluster) {
    if report.lost.is_empty() && report.two_writers.is_empty() {
        return;
    }
    let mut why = Vec::new();
    if !report.lost.is_empty() {
        why.push(format!(
            "{} acknowledged writes lost (by member {:?})",
            report.lost.len(),
            report.lost_by_member()
        ));
    }
    for t in &report.two_writers {
        why.push(format!(
            "two writers: {} acknowledged {} writes sent (or, {} of them, only executed) after {} had acknowledged one, during [{} ms, {} ms] ({} ms)",
            t.older,
            t.count,
            t.executed_late,
            t.newer,
            t.newer_first_ack_ms,
            t.last_ack_ms,
            t.last_ack_ms - t.newer_first_ack_ms
        ));
    }
    panic!("{}\n{report}\n{}", why.join("; "), explain(c));
}

/// Panics if an entry is in the history twice: an append retried after its answer was lost
/// (a lossy or cut link to etcd) must be recorded once.
fn assert_history_recorded_once(c: &Cluster) {
    let mut seen = std::collections::BTreeSet::new();
    let twice: Vec<String> = c
        .history()
        .iter()
        .map(|e| e.to_string())
        .filter(|e| !seen.insert(e.clone()))
        .collect();
    assert!(
        twice.is_empty(),
        "history entries recorded twice: {twice:#?}\n{}",
        explain(c)
    );
}

/// A cluster with `opts` once one primary runs and the others stream; its leader.
fn start(opts: &Opts) -> (Cluster, String) {
    let c = Cluster::start(opts);
    let leader = c.wait_converged(Duration::from_secs(60));
    (c, leader)
}

/// A cluster in synchronous mode `on` whose leader has a synchronous standby; its leader.
fn start_sync() -> (Cluster, String) {
    start_sync_with(Opts::default())
}

/// [`start_sync`] with other options besides.
fn start_sync_with(opts: Opts) -> (Cluster, String) {
    let mut dynamic = vec![("synchronous_mode".to_string(), "\"on\"".to_string())];
    dynamic.extend(opts.dynamic.iter().cloned());
    let (c, leader) = start(&Opts { dynamic, ..opts });
    wait_until(
        "a synchronous standby on the leader",
        Duration::from_secs(30),
        || {
            c.sql_one(
                &leader,
                "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'",
            )
            .filter(|n| n != "0")
        },
    );
    (c, leader)
}

/// Panics unless every other member streams from the final primary (its
/// `pg_stat_replication`, not only each member's own word).
fn assert_streaming_from_final(c: &Cluster, report: &Report) {
    let primary = &report.final_primary;
    let want = standbys_of(c, primary);
    let mut last = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(rows) = c.sql(
            primary,
            "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'",
        ) {
            last = rows.into_iter().filter_map(|r| r[0].clone()).collect();
            if want.iter().all(|w| last.contains(w)) {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "not every member streams from the final primary {primary}: its pg_stat_replication \
             shows {last:?} streaming, expected {want:?}\n{report}\n{}",
            explain(c)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `t` in ms since the checker started.
fn ck_ms(report: &Report, t: Instant) -> i64 {
    report.ms(t)
}

/// Waits up to `timeout` for `pid` to die; when it died (`None`: still alive).
fn wait_dead(pid: u32, timeout: Duration) -> Option<Instant> {
    let deadline = Instant::now() + timeout;
    loop {
        if !process_alive(pid) {
            return Some(Instant::now());
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn standbys_of(c: &Cluster, leader: &str) -> Vec<String> {
    c.members
        .iter()
        .filter(|m| m.name != leader)
        .map(|m| m.name.clone())
        .collect()
}

/// After [`WATCH`], heals every cut and judges a run in which a failover may lose the last
/// writes (asynchronous: not asserted): never a second writer, nothing `unmet`, every member
/// streaming from the final primary.
fn heal_and_judge_one_writer(c: &mut Cluster, ck: Checker, unmet: &[String], fault: &str) {
    std::thread::sleep(WATCH);
    ck.mark("links healed");
    c.net.heal_all();
    let report = ck.finish(c, CONVERGE);
    eprintln!("{report}");
    assert!(
        report.two_writers.is_empty(),
        "two writers ({fault}): {:?}\n{report}\n{}",
        report.two_writers,
        explain(c)
    );
    assert_all_met_and_streaming(c, &report, unmet, fault);
}

/// Waits until `member` is gone from `leader`'s `/cluster` (its key expired or removed).
fn wait_gone_from_view(c: &Cluster, leader: &str, member: &str) {
    wait_until(
        &format!("{member} gone from {leader}'s view"),
        Duration::from_secs(30),
        || {
            let (status, body) = c.member(leader).get("/cluster")?;
            let view: serde_json::Value = serde_json::from_str(&body).ok()?;
            let members = view["members"].as_object()?;
            (status == 200 && !members.contains_key(member)).then_some(())
        },
    );
}

/// Waits up to `timeout` until `member`'s log says `needle` after its line `from` (`what`
/// names the wait in the panic if it does not).
fn wait_logged(
    c: &Cluster,
    member: &str,
    from: usize,
    needle: &str,
    what: &str,
    timeout: Duration,
) {
    wait_until(what, timeout, || {
        let said = c.log_lines_since(member, from, &[needle]);
        (!said.is_empty()).then_some(())
    });
}

/// The writers started, once they had 20 writes acknowledged by `member`.
fn checker_writing(c: &Cluster, member: &str) -> Checker {
    let ck = c.checker();
    wait_writes(&ck, member);
    ck
}

/// The pid of `member`'s running postmaster, or a panic naming it.
fn running_postmaster(c: &Cluster, member: &str) -> u32 {
    c.member(member)
        .postmaster_pid()
        .unwrap_or_else(|| panic!("{member}'s postmaster does not run"))
}

fn wait_writes(ck: &Checker, member: &str) {
    assert!(
        ck.wait_acks(member, Instant::now(), 20, Duration::from_secs(30)),
        "the writers got no 20 acknowledgements from {member} before the fault"
    );
}

/// Marks when a member other than `old` becomes primary (REST `/primary`), or panics.
fn await_failover(c: &Cluster, ck: &Checker, old: &str, timeout: Duration) -> String {
    match c.wait_new_primary(old, timeout) {
        Some((new, _)) => {
            ck.mark(&format!(
                "{new} answers /primary (old primary {old}: postmaster {})",
                c.member(old)
                    .postmaster_pid()
                    .map_or("gone".into(), |p| format!("pid {p} alive"))
            ));
            new
        }
        None => panic!(
            "no member other than {old} became primary within {timeout:?}; /cluster: {}\n{}",
            c.cluster_json().map(|v| v.to_string()).unwrap_or_default(),
            explain(c)
        ),
    }
}
