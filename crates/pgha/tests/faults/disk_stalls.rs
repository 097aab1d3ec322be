//! Disks stalled (fsfreeze): the leader's, the synchronous standby's, and a standby's as the
//! leader's stalls.

use super::*;

use std::os::unix::fs::PermissionsExt;

use pgha_testkit::poll;

/// The leader's disk stalls (fsfreeze of the file system its member directory is on: writes
/// and fsyncs wait, reads from memory still answer the agent's probes), synchronous mode. The
/// leader sees its WAL stop reaching the disk, keeps its lease up to
/// `primary_start_timeout_ms`, then demotes; its stop hangs on the disk, so it kills every
/// PostgreSQL process (those blocked on the disk keep a pending SIGKILL) and, once none can
/// run again, releases the lease rather than letting it run out: another member takes over
/// while the disk is still frozen. Nothing acknowledged is lost, there is never a second
/// writer (the blocked backends' commits are never acknowledged), and the old primary rejoins
/// once its disk is back.
#[test]
fn leader_disk_stalled() {
    let (mut c, leader, ck) = start_writing_on_disks(false);
    let stall = Duration::from_secs(20);
    ck.mark(&format!("{leader}'s disk frozen (fsfreeze) for {stall:?}"));
    let log_at = c.log_len(&leader);
    c.freeze_disk(&leader);
    let frozen_at = Instant::now();
    let new = await_failover(&c, &ck, &leader, stall);
    let left = (frozen_at + stall).saturating_duration_since(Instant::now());
    let writes_back = writes_back_on(&ck, &new, frozen_at, left, "the freeze");
    std::thread::sleep((frozen_at + stall).saturating_duration_since(Instant::now()));
    let said = c.log_lines_since(&leader, log_at, &["has not reached its disk"]);
    let released = c.log_lines_since(&leader, log_at, &["none able to run again"]);
    ck.mark(&format!("{leader}'s disk thawed"));
    c.thaw_disk(&leader);
    std::thread::sleep(WATCH);
    let report = ck.finish(&c, CONVERGE);
    eprintln!("{report}");
    assert_no_loss_one_writer(&report, &c);
    assert!(
        writes_back,
        "no write acknowledged by {new} while {leader}'s disk was frozen\n{}",
        explain(&c)
    );
    assert!(
        !said.is_empty(),
        "{leader} never said its WAL stopped reaching the disk\n{}",
        explain(&c)
    );
    assert!(
        !released.is_empty(),
        "{leader} never showed its PostgreSQL killed and let go of its lease before it ran \
         out\n{}",
        explain(&c)
    );
}

/// The leader's PostgreSQL crashes (kill -9 of the postmaster and every backend) while its
/// disk is stalled (fsfreeze), and once its agent has begun to start it again as the primary,
/// its host's link to etcd is blackholed both ways: the start hangs on the frozen disk and the
/// lease lapses while it is in flight (simulation seed 3608, end to end). Asynchronous mode: in
/// a synchronous one a crashed primary hands over to its synchronous standby instead of
/// restarting. The agent must demote, which cancels the start, and the supervisor must stay
/// armed, so that nothing the start brings up once the disk thaws can take a write: another
/// member takes over after the ttl, the disk thaws while it writes, and a start that resumed
/// then would be a second writer (the writers still write on the old leader's own host).
/// Once the link heals the old primary rejoins. One writer, nothing lost.
#[test]
fn primary_restart_in_flight_when_the_lease_lapses() {
    let HungRestart {
        mut c,
        leader,
        ck,
        killed,
        log_at,
    } = restart_hung_on_frozen_disk();
    c.net.cut(&leader, "etcd", Way::Both);
    let cut_at = Instant::now();
    // A renewal sent just before the cut may be answered, and its deadline armed, after it:
    // nothing later than what a renewal sent at the cut gives (R + T - M/2) may be armed.
    let fence_limit = boot_clock_ms() + (TTL - SAFETY_MARGIN / 2).as_millis() as u64 + 50;
    let armed = c
        .member(&leader)
        .lease_deadline()
        .expect("the leader's fencing deadline is armed");
    let watch = LeaseWatch::start(c.member(&leader).lease_file());
    ck.mark(&format!(
        "{leader} restarts its primary on a frozen disk; {leader} <-> etcd blackholed both \
         ways; its fencing deadline is {} ms ahead",
        armed as i64 - boot_clock_ms() as i64
    ));
    let new = await_failover(&c, &ck, &leader, Duration::from_secs(30));
    let writes_on_new = ck.wait_acks(&new, cut_at, 1, Duration::from_secs(20));
    // the new primary writes while the old one's start is still stuck on its disk
    std::thread::sleep(WATCH);
    c.thaw_disk(&leader);
    let thawed_at = Instant::now();
    ck.mark(&format!(
        "{leader}'s disk thawed (the link to etcd stays cut): whatever its start brings up \
         now must not take a write"
    ));
    // I1 on the server itself: from the thaw on, n1's PostgreSQL, whenever it answers, must be
    // in recovery (another member holds the lease)
    let writable_after_thaw = poll(WATCH, Duration::from_millis(20), || {
        c.sql_one(&leader, "SELECT pg_is_in_recovery()")
            .filter(|r| r == "f")
            .map(|_| thawed_at.elapsed())
    });
    let leftovers_dead = killed
        .iter()
        .all(|p| wait_dead(*p, Duration::from_secs(10)).is_some());
    let old_pm = c.member(&leader).postmaster_pid();
    let old_in_recovery = old_pm.and_then(|_| {
        c.sql(&leader, "SELECT pg_is_in_recovery()")
            .ok()
            .and_then(|rows| rows.first().and_then(|r| r[0].clone()))
    });
    let values = watch.finish();
    ck.mark(&format!(
        "link healed; {leader}'s postmaster after the thaw: {old_pm:?} (in recovery: \
         {old_in_recovery:?})"
    ));
    c.net.heal_all();
    let report = ck.finish(&c, CONVERGE);
    eprintln!("{report}");
    let lease_seen: Vec<String> = values
        .iter()
        .map(|(t, v)| {
            format!(
                "[{} ms] {}",
                ck_ms(&report, *t),
                v.map_or("disarmed".into(), |v| format!("{v}"))
            )
        })
        .collect();
    let lines = c.log_lines_since(
        &leader,
        log_at,
        &["restarting it", "lease", "demot", "fenc", "job"],
    );
    eprintln!(
        "{leader}'s lease file from the cut on (armed {armed}): {lease_seen:?}\n{leader}'s \
         lease, demotion and job lines: {lines:#?}"
    );
    assert_no_loss_one_writer(&report, &c);
    let mut unmet = Vec::new();
    if !writes_on_new {
        unmet.push(format!(
            "{new} acknowledged no write while {leader} was cut off"
        ));
    }
    if let Some(after) = writable_after_thaw {
        unmet.push(format!(
            "{leader}'s PostgreSQL answered as a primary {after:?} after the thaw, while {new} \
             held the lease and {leader}'s lease had lapsed"
        ));
    }
    // the start cannot end while its disk is frozen: until then the supervisor must stay armed
    if let Some((t, _)) = values.iter().find(|(t, v)| v.is_none() && *t < thawed_at) {
        unmet.push(format!(
            "{leader}'s fencing deadline was disarmed at {} ms, while its start was still blocked \
             on the frozen disk (thawed at {} ms): a start that resumed then would run unfenced",
            ck_ms(&report, *t),
            ck_ms(&report, thawed_at)
        ));
    }
    if !leftovers_dead {
        unmet.push(format!(
            "of {leader}'s killed processes {killed:?}, some still lived 10 s after the thaw"
        ));
    }
    let later: Vec<u64> = values
        .iter()
        .filter_map(|(_, v)| *v)
        .filter(|v| *v > fence_limit)
        .collect();
    if !later.is_empty() {
        unmet.push(format!(
            "{leader}'s agent armed a fencing deadline no renewal sent before the cut gives: \
             {later:?} > {fence_limit} (armed at the cut: {armed})"
        ));
    }
    if old_pm.is_some() && old_in_recovery.as_deref() != Some("t") {
        unmet.push(format!(
            "{leader}'s PostgreSQL ran after the thaw, cut off from etcd, and was not a standby \
             (pg_is_in_recovery: {old_in_recovery:?}, {:?} after the thaw)",
            thawed_at.elapsed()
        ));
    }
    assert_all_met_and_streaming(
        &c,
        &report,
        &unmet,
        &format!("{leader}'s lines: {lines:#?}"),
    );
}

/// The synchronous standby's disk stalls (fsfreeze: its WAL receiver waits on every write and
/// sends no reply), synchronous mode `on` (FIRST 1 over both standbys), writers writing; then,
/// with that disk still frozen, the leader's host crashes (agent and postmaster kill -9). The
/// leader's WAL sender drops the silent standby after the replication timeout, and the other
/// standby acknowledges the commits from then on; the failover must pick that one, which holds
/// every acknowledged commit, and not the frozen one, whose position stands still. Once the
/// disk thaws and the old leader's agent is back, both rejoin. One writer, nothing lost.
#[test]
fn sync_standby_disk_stalled_then_leader_crash() {
    let (mut c, leader, ck) = start_writing_on_disks(false);
    let frozen = wait_until("the synchronous standby", Duration::from_secs(30), || {
        c.sql_one(
            &leader,
            "SELECT application_name FROM pg_stat_replication WHERE sync_state = 'sync'",
        )
    });
    c.freeze_disk(&frozen);
    let frozen_at = Instant::now();
    ck.mark(&format!(
        "{frozen}'s disk frozen (fsfreeze): the synchronous standby stops writing and replying"
    ));
    // the commits move to the other standby after the replication timeout
    let hold = WAL_TIMEOUT * 2;
    std::thread::sleep(hold);
    let gap = longest_gap(&ck.acks(), frozen_at, Instant::now());
    let sync_now = c.sql_one(
        &leader,
        "SELECT string_agg(application_name || ' ' || sync_state, ', ') FROM pg_stat_replication",
    );
    ck.mark(&format!(
        "{leader}'s standbys now: {sync_now:?}; node crash of {leader} (agent and postmaster \
         kill -9) with {frozen}'s disk still frozen"
    ));
    c.member_mut(&leader).crash();
    let crashed_at = Instant::now();
    let new = await_failover(&c, &ck, &leader, Duration::from_secs(30));
    let writes_on_new = ck.wait_acks(&new, crashed_at, 1, Duration::from_secs(20));
    std::thread::sleep(WATCH);
    ck.mark(&format!(
        "{frozen}'s disk thawed; {leader}'s agent restarted"
    ));
    c.thaw_disk(&frozen);
    c.start_agent(&leader);
    let report = ck.finish(&c, CONVERGE);
    eprintln!("{report}");
    eprintln!(
        "no write acknowledged for {} ms at the longest while {frozen}'s disk was frozen \
         (replication timeout {WAL_TIMEOUT:?})",
        gap.as_millis()
    );
    assert_no_loss_one_writer(&report, &c);
    let mut unmet = Vec::new();
    if new == frozen {
        unmet.push(format!(
            "{frozen}, whose disk was frozen and whose position stood still, was promoted"
        ));
    }
    if !writes_on_new {
        unmet.push(format!(
            "{new} acknowledged no write within 20 s of {leader}'s crash"
        ));
    }
    if gap > WAL_TIMEOUT + Duration::from_secs(3) {
        unmet.push(format!(
            "no write acknowledged for {} ms while {frozen}'s disk was frozen (replication \
             timeout {WAL_TIMEOUT:?})",
            gap.as_millis()
        ));
    }
    assert_all_met_and_streaming(&c, &report, &unmet, "a synchronous standby's stalled disk");
}

/// Found by an asynchronous campaign with a second nemesis: the leader's disk froze, then the
/// disk of the standby that wins a tie (the smaller name). Both standbys had received all the
/// leader flushed, so they stood at the same position; the frozen one won the tie and its
/// promotion waited on its disk until the thaw (20.4 s without writes, the other standby
/// idle). The fencing deadline a candidate writes before it runs lies beside its member
/// directory, off the frozen disk, and did not catch it. A member whose data directory takes
/// no write is out of the failovers: the other standby must take over while both disks are
/// still frozen. Asynchronous mode, writers writing. One writer, nothing lost.
#[test]
fn a_standby_whose_disk_froze_with_the_leaders_does_not_win_the_tie() {
    let (mut c, leader) = start(&Opts {
        member_disks: true,
        ..Opts::default()
    });
    let ck = checker_writing(&c, &leader);
    let standbys = standbys_of(&c, &leader);
    let (tie_winner, other) = (standbys[0].clone(), standbys[1].clone());
    let stall = Duration::from_secs(20);
    c.freeze_disk(&leader);
    let frozen_at = Instant::now();
    ck.mark(&format!("{leader}'s disk frozen (fsfreeze) for {stall:?}"));
    // its WAL senders pass on what was flushed before the freeze: both standbys at one position
    std::thread::sleep(Duration::from_millis(1500));
    let log_at = c.log_len(&tie_winner);
    c.freeze_disk(&tie_winner);
    ck.mark(&format!(
        "{tie_winner}'s disk frozen too (it wins a tie by name against {other})"
    ));
    let left = (frozen_at + stall).saturating_duration_since(Instant::now());
    let what = format!("{leader}'s freeze");
    let writes_back = writes_back_on(&ck, &other, frozen_at, left, &what);
    std::thread::sleep((frozen_at + stall).saturating_duration_since(Instant::now()));
    let said = c.log_lines_since(&tie_winner, log_at, &["data directory has taken no write"]);
    ck.mark(&format!("both disks thawed ({leader}'s, {tie_winner}'s)"));
    c.thaw_disk(&tie_winner);
    c.thaw_disk(&leader);
    std::thread::sleep(WATCH);
    let report = ck.finish(&c, CONVERGE);
    eprintln!("{report}");
    assert_no_loss_one_writer(&report, &c);
    let mut unmet = Vec::new();
    if !writes_back {
        unmet.push(format!(
            "{other} acknowledged no write while {leader}'s and {tie_winner}'s disks were \
             frozen ({stall:?})"
        ));
    }
    if said.is_empty() {
        unmet.push(format!(
            "{tie_winner} never said its data directory took no write"
        ));
    }
    assert_all_met_and_streaming(&c, &report, &unmet, "a candidate's frozen disk");
}

/// The leader's host crashes (agent and postmaster kill -9), asynchronous mode, writers
/// writing; the standby that wins the election has its data disk frozen (fsfreeze) as it
/// promotes: its `pre_promote` callback, which the promotion waits for, holds it until the
/// disk is frozen. `pg_ctl promote` then waits on the disk, and with it every write, for as
/// long as the freeze lasts (before: until the thaw, or 60 s, with the lease renewed). Once
/// its data directory has taken no write for 4 s the winner must give the promotion up (demote,
/// kill what the stop cannot end, release the lease once nothing of its PostgreSQL can run
/// again), and the other standby must take over while the disk is still frozen. One writer,
/// nothing lost; both rejoin after the thaw.
#[test]
fn a_winner_whose_disk_freezes_as_it_promotes_gives_way() {
    let hooks = pgha_testkit::traversable_tempdir("pgha-hook-");
    let marks = hooks.path().join("marks");
    std::fs::create_dir(&marks).unwrap();
    std::fs::set_permissions(&marks, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (armed, go) = (hooks.path().join("armed"), hooks.path().join("go"));
    let script = hooks.path().join("pre_promote.sh");
    // ACTION ROLE CLUSTER MEMBER: once armed, say which member promotes and hold it until `go`
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nif [ -e {armed} ]; then\n  touch {marks}/$4\n  \
             while [ ! -e {go} ]; do sleep 0.05; done\nfi\nexit 0\n",
            armed = armed.display(),
            marks = marks.display(),
            go = go.display(),
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (mut c, leader) = start(&Opts {
        member_disks: true,
        member_toml: format!(
            "\n[callbacks]\npre_promote = \"{}\"\ntimeout_s = 60\n",
            script.display()
        ),
        ..Opts::default()
    });
    let ck = checker_writing(&c, &leader);
    std::fs::write(&armed, "").unwrap();
    c.member_mut(&leader).crash();
    let crashed_at = Instant::now();
    ck.mark(&format!(
        "node crash of {leader} (agent and postmaster kill -9)"
    ));
    let winner = poll(Duration::from_secs(30), Duration::from_millis(20), || {
        let mut promoting = std::fs::read_dir(&marks).ok()?.filter_map(|e| e.ok());
        promoting
            .next()
            .map(|e| e.file_name().to_string_lossy().to_string())
    })
    .unwrap_or_else(|| panic!("no standby began to promote\n{}", explain(&c)));
    let log_at = c.log_len(&winner);
    c.freeze_disk(&winner);
    let frozen_at = Instant::now();
    std::fs::write(&go, "").unwrap();
    ck.mark(&format!(
        "{winner} won and runs its pre_promote callback: its disk frozen, then the callback let go"
    ));
    let other = standbys_of(&c, &leader)
        .into_iter()
        .find(|m| *m != winner)
        .unwrap();
    let stall = Duration::from_secs(25);
    let what = format!("{leader}'s crash");
    let writes_back = writes_back_on(&ck, &other, crashed_at, stall, &what);
    std::thread::sleep((frozen_at + stall).saturating_duration_since(Instant::now()));
    let gave_up = c.log_lines_since(&winner, log_at, &["while it promotes"]);
    ck.mark(&format!(
        "{winner}'s disk thawed; {leader}'s agent restarted"
    ));
    c.thaw_disk(&winner);
    c.start_agent(&leader);
    std::thread::sleep(WATCH);
    let report = ck.finish(&c, CONVERGE);
    eprintln!("{report}");
    assert_no_loss_one_writer(&report, &c);
    let mut unmet = Vec::new();
    if !writes_back {
        unmet.push(format!(
            "{other} acknowledged no write while {winner}'s disk was frozen ({stall:?})"
        ));
    }
    if gave_up.is_empty() {
        unmet.push(format!(
            "{winner} never said it gave its promotion up for its disk"
        ));
    }
    assert_all_met_and_streaming(&c, &report, &unmet, "a winner's disk frozen as it promotes");
}
