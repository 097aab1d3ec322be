//! A synchronous standby restarted with its replay held back as the leader's host crashes.

use super::*;

use nix::sys::signal::Signal;
use pgha_testkit::signal;

/// Synchronous mode `on` (FIRST 1 over both standbys). The synchronous standby S stops
/// replaying (`recovery_min_apply_delay` of an hour, set on S alone: it stands for any hold
/// on replay, such as a query in conflict with it for up to `max_standby_archive_delay`)
/// while it still receives and confirms every commit; the other standby A, then cut from the
/// leader, holds more than S replayed but less than S received. S's postmaster is killed (its
/// agent starts it again: having received nothing since, its position is its replay, held
/// where it was) and the leader's host crashes. A must not take over on S's replay position:
/// the commits S alone confirmed would be lost. Once the hold is lifted S replays its own WAL
/// to its end and takes over. One writer, nothing lost.
#[test]
fn a_synchronous_standby_restarted_with_its_replay_held_is_waited_for() {
    let (mut c, leader) = start_sync();
    let sync = wait_until("the synchronous standby", Duration::from_secs(30), || {
        c.sql_one(
            &leader,
            "SELECT application_name FROM pg_stat_replication WHERE sync_state = 'sync'",
        )
    });
    let other = c
        .members
        .iter()
        .map(|m| m.name.clone())
        .find(|n| *n != leader && *n != sync)
        .expect("a third member");
    let ck = checker_writing(&c, &leader);
    hold_replay(&c, &sync, true);
    let held_at = wait_until(
        &format!("{sync}'s replay held while it receives"),
        Duration::from_secs(30),
        || {
            let before = positions(&c, &sync)?;
            std::thread::sleep(Duration::from_millis(500));
            let after = positions(&c, &sync)?;
            (after.replay == before.replay && after.received > before.received)
                .then_some(after.replay)
        },
    );
    ck.mark(&format!(
        "{sync}'s replay held at {held_at:X} (recovery_min_apply_delay = 1h); it still \
         receives and confirms commits"
    ));
    wait_until(
        &format!("{other} past {sync}'s replay"),
        Duration::from_secs(30),
        || {
            positions(&c, &other)
                .filter(|p| p.replay > held_at)
                .map(|_| ())
        },
    );
    c.net.cut(&other, &leader, Way::Both);
    let cut_at = Instant::now();
    ck.mark(&format!(
        "{other} cut from {leader}: it receives no more WAL"
    ));
    // Commits only S confirms, before the leader's WAL sender gives up on the cut standby
    // (the replication timeout) and the leader drops it from the synchronous set: A must
    // still be in it, or it could not take over anyway and the test would show nothing.
    assert!(
        ck.wait_acks(&leader, cut_at, 3, WAL_TIMEOUT / 2),
        "fewer than 3 writes acknowledged by {leader} after the cut\n{}",
        explain(&c)
    );
    let names = c
        .sql_one(&leader, "SHOW synchronous_standby_names")
        .unwrap_or_default();
    assert!(
        names.contains(&format!("\"{other}\"")),
        "{leader}'s synchronous_standby_names no longer names {other} before the crash: \
         {names:?}"
    );
    let pm = c
        .member(&sync)
        .postmaster_pid()
        .expect("the synchronous standby's postmaster runs");
    ck.mark(&format!(
        "{sync}'s postmaster killed (its agent starts it again) and {leader}'s host crashed \
         (agent and postmaster kill -9)"
    ));
    signal(pm, Signal::SIGKILL);
    c.member_mut(&leader).crash();
    let crashed_at = Instant::now();
    // Nobody may take over on the held replay position: A would lack what S confirmed.
    let early = c.wait_new_primary(&leader, TTL * 4);
    if let Some((name, _)) = &early {
        ck.mark(&format!(
            "{name} answers /primary while {sync}'s replay is held"
        ));
    }
    wait_until(
        &format!("{sync}'s hold lifted"),
        Duration::from_secs(30),
        || hold_replay_now(&c, &sync, false).then_some(()),
    );
    ck.mark(&format!("{sync}'s replay released"));
    let new = match &early {
        Some((name, _)) => name.clone(),
        None => await_failover(&c, &ck, &leader, Duration::from_secs(60)),
    };
    let writes_on_new = ck.wait_acks(&new, crashed_at, 1, Duration::from_secs(20));
    ck.mark(&format!(
        "{other}'s link healed; {leader}'s agent restarted"
    ));
    c.net.heal_all();
    c.start_agent(&leader);
    let report = ck.finish(&c, CONVERGE);
    eprintln!("{report}");
    assert_no_loss_one_writer(&report, &c);
    let mut unmet = Vec::new();
    if let Some((name, _)) = &early {
        unmet.push(format!(
            "{name} took over while {sync}'s replay was held, its position short of what it \
             received"
        ));
    }
    if new != sync {
        unmet.push(format!(
            "{new} took over, not {sync}, which held the most WAL"
        ));
    }
    if !writes_on_new {
        unmet.push(format!(
            "{new} acknowledged no write within 20 s of its promotion"
        ));
    }
    assert_all_met_and_streaming(
        &c,
        &report,
        &unmet,
        "a synchronous standby restarted with its replay held",
    );
}

/// A standby's received (flushed) and replayed WAL positions, in bytes.
struct Positions {
    received: u64,
    replay: u64,
}

fn positions(c: &Cluster, member: &str) -> Option<Positions> {
    let rows = c
        .sql(
            member,
            "SELECT pg_wal_lsn_diff(pg_last_wal_receive_lsn(), '0/0')::bigint, \
                    pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::bigint",
        )
        .ok()?;
    let row = rows.first()?;
    let at = |i: usize| row.get(i)?.as_deref()?.parse::<u64>().ok();
    Some(Positions {
        received: at(0)?,
        replay: at(1)?,
    })
}

/// Holds (or releases) `member`'s replay with `recovery_min_apply_delay`, set by `ALTER
/// SYSTEM` on that member alone (not a setting pgha owns) and reloaded.
fn hold_replay(c: &Cluster, member: &str, hold: bool) {
    assert!(
        hold_replay_now(c, member, hold),
        "could not set recovery_min_apply_delay on {member}"
    );
}

/// [`hold_replay`]; whether PostgreSQL took it (it may be restarting).
fn hold_replay_now(c: &Cluster, member: &str, hold: bool) -> bool {
    let set = if hold {
        "ALTER SYSTEM SET recovery_min_apply_delay = '1h'"
    } else {
        "ALTER SYSTEM RESET recovery_min_apply_delay"
    };
    c.sql(member, set).is_ok() && c.sql(member, "SELECT pg_reload_conf()").is_ok()
}
