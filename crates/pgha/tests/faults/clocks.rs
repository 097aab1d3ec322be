//! Wall-clock steps on the agents (libfaketime).

use super::*;

/// How long each wall-clock step of `leader_wall_clock_jumps` is held.
const CLOCK_HOLD: Duration = Duration::from_secs(10);

/// Wall-clock steps on running agents (libfaketime, see `netns::FakeWallClock`: only the
/// agents and their supervisors see them, PostgreSQL keeps the true clock), synchronous mode,
/// writers writing: the leader's agent one hour ahead for 10 s, then one hour behind the true
/// time for 10 s, then true again; at the same time one standby's agent one hour behind, then
/// one hour ahead, then true (two hours between their clocks). No lease decision reads the wall
/// clock (deadlines are on the boot clock and tokio's monotonic clock), so nothing may happen:
/// no failover, no demotion, no restart, no election, the leader's fencing deadline stays
/// within a ttl of the boot clock and the standbys' stay disarmed, writes go on (no gap of
/// ttl/2), none is lost, one writer, every member streams from the leader at the end.
#[test]
fn leader_wall_clock_jumps() {
    let (c, leader) = start_sync_with(Opts {
        fake_wall_clock: true,
        ..Opts::default()
    });
    let standby = standbys_of(&c, &leader)[0].clone();
    let history_before = c.history();
    let procs = |c: &Cluster| -> Vec<String> {
        c.members
            .iter()
            .map(|m| {
                format!(
                    "{}: agent {:?}, supervisor {:?}, postmaster {:?}",
                    m.name,
                    m.agent_pid(),
                    m.supervisor_pid(),
                    m.postmaster_pid()
                )
            })
            .collect()
    };
    let procs_before = procs(&c);
    let logs_at: Vec<usize> = c.members.iter().map(|m| c.log_len(&m.name)).collect();
    let leases: Vec<(String, LeaseWatch)> = c
        .members
        .iter()
        .map(|m| (m.name.clone(), LeaseWatch::start(m.lease_file())))
        .collect();
    let ck = checker_writing(&c, &leader);
    let mut roles = RoleWatch::default();
    let steps = [
        (3600, -3600, CLOCK_HOLD),
        (-3600, 3600, CLOCK_HOLD),
        (0, 0, CLOCK_HOLD / 2),
    ];
    for (lead_s, stand_s, hold) in steps {
        c.set_wall_clock(&leader, lead_s);
        c.set_wall_clock(&standby, stand_s);
        let stepped = Instant::now();
        // the proof that the step reached the running agent: its log's timestamps
        let stamp = |name: &str, secs: i64| {
            let line = c
                .await_wall_clock(name, secs, Duration::from_secs(5))
                .unwrap_or_else(|| {
                    panic!(
                        "{name}'s agent logged no line stamped {secs:+} s from the true time \
                         within 5 s of the step: the step did not reach it\n{}",
                        c.logs(10)
                    )
                });
            line.split_whitespace().next().unwrap_or("").to_string()
        };
        let (lead_stamp, stand_stamp) = (stamp(&leader, lead_s), stamp(&standby, stand_s));
        ck.mark(&format!(
            "wall clock of {leader}'s agent {lead_s:+} s, of {standby}'s {stand_s:+} s from the \
             true time, held {hold:?}; their logs now stamp {lead_stamp} and {stand_stamp}"
        ));
        roles.watch(
            &c,
            &ck,
            &leader,
            (stepped + hold).saturating_duration_since(Instant::now()),
        );
    }
    let report = ck.finish(&c, CONVERGE);
    eprintln!("{report}");
    let (now, boot_now) = (Instant::now(), boot_clock_ms());
    let boot_at = |t: Instant| boot_now - now.duration_since(t).as_millis() as u64;
    let mut unmet = Vec::new();
    for (name, watch) in leases {
        let values = watch.finish();
        let wrong: Vec<String> = values
            .iter()
            .filter(|(t, v)| {
                if name == leader {
                    // armed, not passed, at most a ttl ahead on the boot clock
                    v.is_none_or(|v| v <= boot_at(*t) || v > boot_at(*t) + TTL.as_millis() as u64)
                } else {
                    v.is_some()
                }
            })
            .map(|(t, v)| {
                format!(
                    "{v:?} at {} ms (boot clock {})",
                    ck_ms(&report, *t),
                    boot_at(*t)
                )
            })
            .collect();
        eprintln!(
            "{name}'s lease file took {} values, {} of them wrong",
            values.len(),
            wrong.len()
        );
        if !wrong.is_empty() {
            unmet.push(format!(
                "{name}'s lease file ({}) held {wrong:?}",
                if name == leader {
                    "the leader's: always armed within a ttl of the boot clock"
                } else {
                    "a standby's: always disarmed"
                }
            ));
        }
    }
    if !roles.odd.is_empty() {
        unmet.push(format!("roles changed: {:?}", roles.odd));
    }
    let history_after = c.history();
    if history_after != history_before {
        unmet.push(format!(
            "the history changed: {:#?}",
            &history_after[history_before.len().min(history_after.len())..]
        ));
    }
    let procs_after = procs(&c);
    if procs_after != procs_before {
        unmet.push(format!(
            "processes changed: {procs_before:?} -> {procs_after:?}"
        ));
    }
    if report.final_primary != leader {
        unmet.push(format!("the final primary is {}", report.final_primary));
    }
    if report.longest_gap_ms >= (TTL / 2).as_millis() as i64 {
        unmet.push(format!(
            "no write acknowledged for {} ms (from {} ms)",
            report.longest_gap_ms, report.longest_gap_from_ms
        ));
    }
    if !report.server_clock_off.is_empty() {
        unmet.push(format!(
            "PostgreSQL's clock_timestamp() strayed from the true clock ({:?}): the fake reached \
             PostgreSQL",
            report.server_clock_off
        ));
    }
    // what the agents (and supervisors) said meanwhile, beyond their every-loop debug lines
    let needles = [
        "lease",
        "demot",
        "promot",
        "no leader",
        "restart",
        "rewind",
        "clon",
        "standby of",
        "not streaming",
        "failsafe",
        "fenc",
        "stopp",
        "fail",
        "elect",
        "candidate",
    ];
    for (m, at) in c.members.iter().zip(&logs_at) {
        let said: Vec<String> = c
            .log_lines_since(&m.name, *at, &[""])
            .into_iter()
            .filter(|l| !l.contains(" DEBUG "))
            .collect();
        eprintln!(
            "{}'s agent log meanwhile, debug lines left out ({} lines): {said:#?}",
            m.name,
            said.len()
        );
        let alarming: Vec<&String> = said
            .iter()
            .filter(|l| needles.iter().any(|n| l.to_lowercase().contains(n)))
            .collect();
        if !alarming.is_empty() {
            unmet.push(format!("{}'s agent log: {alarming:#?}", m.name));
        }
    }
    assert_all_met(&c, &report, &unmet, "wall-clock steps changed something");
    assert_no_loss_one_writer(&report, &c);
    assert_streaming_from_final(&c, &report);
}
