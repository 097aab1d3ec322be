//! The leader's PostgreSQL stalled, out of connection slots, or one process of it killed.

use super::*;

use nix::sys::signal::Signal;
use pgha_testkit::{children_of, cmdline, poll, signal};

/// A disk I/O stall as the agent sees it: the leader's postmaster and every backend stopped
/// (SIGSTOP; its agent and its supervisor keep running), in synchronous mode, for longer than
/// ttl + `primary_start_timeout_ms` and at least until another member is primary; then SIGCONT.
/// The agent must see its PostgreSQL unresponsive, keep the lease up to
/// primary_start_timeout_ms, then demote; its stop does not take, so it kills the stopped
/// processes (SIGKILL works on stopped processes; else the supervisor would, as the lease runs
/// out) before another member is primary, so nothing is left to resume; no second writer,
/// nothing lost, the old primary rejoins.
#[test]
fn leader_postgres_io_stall() {
    let (c, leader) = start_sync();
    let start_timeout = Duration::from_millis(
        c.cluster_json()
            .and_then(|v| v["config"]["primary_start_timeout_ms"].as_u64())
            .expect("primary_start_timeout_ms in /cluster"),
    );
    let stall = TTL + start_timeout + Duration::from_secs(4);
    let history_before = c.history().len();
    let ck = c.checker_patient(PATIENCE);
    wait_writes(&ck, &leader);
    let m = c.member(&leader);
    let pm = m.postmaster_pid().expect("the leader's postmaster runs");
    let (agent, supervisor) = (m.agent_pid(), m.supervisor_pid());
    let log_at = c.log_len(&leader);
    let stopped_at = Instant::now();
    let mut stopped = StoppedTree::stop(pm);
    ck.mark(&format!(
        "SIGSTOP of {leader}'s postmaster {pm} and its {} children (agent {agent:?} and \
         supervisor {supervisor:?} keep running), for {stall:?} (ttl {TTL:?} + \
         primary_start_timeout {start_timeout:?} + 4 s) at least",
        stopped.procs.len() - 1
    ));
    let promoted = c.wait_new_primary(&leader, stall + Duration::from_secs(30));
    // I1: nothing of the old primary may be left to resume once another member is primary
    let alive_at_failover = stopped.alive();
    match &promoted {
        Some((new, _)) => ck.mark(&format!(
            "{new} answers /primary; of {leader}'s stopped processes {} still alive: \
             {alive_at_failover:?}",
            alive_at_failover.len()
        )),
        None => ck.mark(&format!(
            "no member other than {leader} became primary; {leader}'s postmaster now {:?}, \
             its /primary answers {:?}",
            c.member(&leader).postmaster_pid(),
            c.member(&leader).get("/primary").map(|r| r.0)
        )),
    }
    std::thread::sleep((stopped_at + stall).saturating_duration_since(Instant::now()));
    let resumed = stopped.resume();
    ck.mark(&format!(
        "SIGCONT of {leader}'s stopped processes still alive: {resumed:?}"
    ));
    std::thread::sleep(WATCH);
    let report = ck.finish(&c, CONVERGE);
    eprintln!("{report}");
    let unresponsive = c.log_lines_since(
        &leader,
        log_at,
        &["has not answered", "primary PostgreSQL unresponsive"],
    );
    let lease_lines = c.log_lines_since(
        &leader,
        log_at,
        &[
            "lease deadline passed",
            "lease not renewed",
            "ours from before",
            "lease acquired",
            "releasing the lease",
            "demot",
        ],
    );
    eprintln!(
        "{leader}'s agent: {} unresponsive lines (first {:?}); lease and demotion lines: {:#?}",
        unresponsive.len(),
        unresponsive.first(),
        lease_lines
    );
    assert_no_loss_one_writer(&report, &c);
    let new_history: Vec<String> = c.history()[history_before..]
        .iter()
        .map(|e| e.to_string())
        .collect();
    // every expectation that failed, in one message
    let mut unmet = Vec::new();
    match &promoted {
        None => unmet.push(format!(
            "no member other than {leader} became primary although its PostgreSQL was stalled \
             for {stall:?} (history since: {new_history:#?})"
        )),
        Some((new, _)) if !alive_at_failover.is_empty() => unmet.push(format!(
            "{leader}'s stopped PostgreSQL processes {alive_at_failover:?} were still alive when \
             {new} was primary: the supervisor had not fenced them"
        )),
        Some(_) => {}
    }
    if !resumed.is_empty() {
        unmet.push(format!(
            "{leader}'s stopped processes {resumed:?} were still alive after {stall:?}"
        ));
    }
    if unresponsive.is_empty() {
        unmet.push(format!(
            "{leader}'s agent never reported its stopped PostgreSQL as unresponsive"
        ));
    }
    assert_all_met_and_streaming(
        &c,
        &report,
        &unmet,
        &format!("{leader}'s lease and demotion lines: {lease_lines:#?}"),
    );
}

/// Every connection slot of the leader's PostgreSQL taken, and the sessions of application
/// "pgha" (the agent's long-lived probe connection) terminated every second, so the agent's
/// probe cannot connect:
/// a live postmaster must not be read as "not running": no failover, nothing rewound,
/// no standby.signal written into the primary's data directory.
#[test]
fn leader_connection_slots_exhausted() {
    // synchronous mode: there a leader that reads its PostgreSQL as down hands the lease over
    // at once (issue 9, item 4)
    let (c, leader) = start(&Opts {
        dynamic: vec![("synchronous_mode".into(), "\"on\"".into())],
        ..Opts::default()
    });
    let history_before = c.history().len();
    let pm = c.member(&leader).postmaster_pid();
    let ck = checker_writing(&c, &leader);
    let hold_for = TTL * 4;
    let held = HeldConnections::open(
        &c.net.host("client").ns,
        &c.member(&leader).conninfo(),
        100,
        Some("pgha"),
    );
    ck.mark(&format!(
        "{} connections opened to {leader}, the next one refused ({}); held for {hold_for:?}",
        held.opened, held.refusal
    ));
    assert!(
        held.refusal.contains("too many clients") || held.refusal.contains("reserved"),
        "could not exhaust {leader}'s connection slots: {}",
        held.refusal
    );
    let deadline = Instant::now() + hold_for;
    let mut others_primary: Vec<String> = Vec::new();
    let mut standby_signal = false;
    while Instant::now() < deadline {
        for m in &c.members {
            if m.name != leader && m.is_primary() && !others_primary.contains(&m.name) {
                ck.mark(&format!("{} answers /primary", m.name));
                others_primary.push(m.name.clone());
            }
        }
        if !standby_signal && c.member(&leader).data_dir().join("standby.signal").exists() {
            ck.mark(&format!(
                "standby.signal written into {leader}'s data directory"
            ));
            standby_signal = true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let terminated = held.terminated.load(std::sync::atomic::Ordering::SeqCst);
    drop(held);
    ck.mark(&format!(
        "connections closed ({terminated} sessions of application pgha terminated meanwhile)"
    ));
    let refused = c.log_lines(&leader, &["too many clients", "53300"]);
    eprintln!(
        "{leader}'s agent log mentions the refusal {} times{}",
        refused.len(),
        refused
            .first()
            .map(|l| format!(", first: {l}"))
            .unwrap_or_default()
    );
    std::thread::sleep(Duration::from_secs(5));
    let report = ck.finish(&c, CONVERGE);
    eprintln!("{report}");
    // Role changes only: the first synchronous set is recorded by the leader in its own time,
    // which may fall after `history_before` was read (seen in a whole-suite run).
    let new_history: Vec<String> = c.history()[history_before..]
        .iter()
        .filter(|e| e["kind"] != "sync_changed")
        .map(|e| e.to_string())
        .collect();
    let rewound = c.log_lines(&leader, &["rewind", "re-clon"]);
    let pm_after = c.member(&leader).postmaster_pid();
    assert!(
        others_primary.is_empty()
            && !standby_signal
            && new_history.is_empty()
            && rewound.is_empty()
            && report.final_primary == leader
            && pm_after == pm,
        "{leader}'s postmaster stayed alive with its connection slots full, yet: promoted {others_primary:?}; \
         standby.signal written: {standby_signal}; final primary {}; postmaster {pm:?} -> {pm_after:?}; \
         new history {new_history:#?}; rewind lines {rewound:#?}\n{report}\n{}",
        report.final_primary,
        explain(&c)
    );
    assert_no_loss_one_writer(&report, &c);
}

/// One process of the leader's PostgreSQL killed as the OOM killer kills (SIGKILL; the
/// checkpointer, whose resident set covers the shared buffers it has written), synchronous
/// mode, writers writing. The postmaster lives: it ends every backend, runs crash recovery and
/// takes connections again by itself, and every standby reconnects. While it recovers it
/// refuses connections: a live postmaster that does not answer is neither stopped nor a
/// standby. Nothing may change: no failover, no restart by pgha, nothing rewound, no new
/// history; writes resume on the same leader within a ttl; nothing lost.
#[test]
fn leader_postgres_child_killed_as_by_the_oom_killer() {
    let (c, leader) = start_sync();
    let history_before = c.history().len();
    let pm = running_postmaster(&c, &leader);
    let ck = checker_writing(&c, &leader);
    let checkpointer = children_of(pm)
        .into_iter()
        .find(|p| cmdline(*p).contains("checkpointer"))
        .expect("the leader's checkpointer");
    let log_at = c.log_len(&leader);
    signal(checkpointer, Signal::SIGKILL);
    let killed_at = Instant::now();
    ck.mark(&format!(
        "{leader}'s checkpointer (pid {checkpointer}) killed"
    ));
    let mut others_primary: Vec<String> = Vec::new();
    let resumed = poll(TTL * 3, Duration::from_millis(50), || {
        for m in &c.members {
            if m.name != leader && m.is_primary() && !others_primary.contains(&m.name) {
                ck.mark(&format!("{} answers /primary", m.name));
                others_primary.push(m.name.clone());
            }
        }
        let acks = ck.acks();
        acks.iter()
            .filter(|a| a.member == leader && a.sent > killed_at)
            .map(|a| a.acked)
            .min()
    });
    match resumed {
        Some(at) => ck.mark(&format!(
            "{leader} acknowledged a write again, {} ms after the kill",
            at.duration_since(killed_at).as_millis()
        )),
        None => ck.mark(&format!("{leader} acknowledged no write again")),
    }
    std::thread::sleep(TTL);
    let report = ck.finish(&c, CONVERGE);
    eprintln!("{report}");
    assert_no_loss_one_writer(&report, &c);
    let mut unmet = Vec::new();
    match resumed {
        Some(at) if at.duration_since(killed_at) < TTL => {}
        Some(at) => unmet.push(format!(
            "writes resumed only {} ms after the kill",
            at.duration_since(killed_at).as_millis()
        )),
        None => unmet.push(format!("{leader} took no write again")),
    }
    if !others_primary.is_empty() {
        unmet.push(format!("promoted: {others_primary:?}"));
    }
    let pm_after = c.member(&leader).postmaster_pid();
    if pm_after != Some(pm) {
        unmet.push(format!(
            "postmaster {pm} -> {pm_after:?}: pgha restarted PostgreSQL"
        ));
    }
    let new_history: Vec<String> = c.history()[history_before..]
        .iter()
        .filter(|e| e["kind"] != "sync_changed")
        .map(|e| e.to_string())
        .collect();
    if !new_history.is_empty() {
        unmet.push(format!("new history: {new_history:?}"));
    }
    let server_log = c.member(&leader).dir.join("postgresql.log");
    let server_log = std::fs::read_to_string(&server_log).unwrap_or_default();
    if !server_log.contains("all server processes terminated; reinitializing") {
        unmet.push(format!(
            "{leader}'s PostgreSQL did not reset itself: the kill did nothing"
        ));
    }
    // Since the kill: what the agent said as it started (a warning about its timing, say)
    // is not what the kill made it do.
    let touched = c.log_lines_since(&leader, log_at, &["rewind", "re-clon", "demot"]);
    if !touched.is_empty() {
        unmet.push(format!("{leader}'s agent: {touched:?}"));
    }
    assert_kept_leading_and_streaming(&c, &report, &leader, unmet, "a PostgreSQL child killed");
}
