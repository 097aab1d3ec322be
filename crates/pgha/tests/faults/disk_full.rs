//! Disks full: the file system of the lease files, and the data disks.

use super::*;

use pgha_testkit::poll;

/// The file system the standbys' member directories sit on fills up (`/` full of logs while
/// the data volumes, mounted at the member directories, have room): their agents can no longer
/// write the lease file, the deadline by which the supervisor fences a primary its agent no
/// longer renews. Then the leader's host crashes (agent and postmaster kill -9), synchronous
/// mode. A standby promoted now would be a primary nothing fences should its agent die or
/// pause, as the leader's just did: none may leave recovery, none acknowledges a write, and
/// their logs say why. Once there is room again one takes over, its deadline armed; the old
/// leader rejoins. One writer, nothing lost.
#[test]
fn standbys_that_cannot_write_their_fencing_deadline_are_not_promoted() {
    let (mut c, leader, ck) = start_writing_on_disks(true);
    let standbys = standbys_of(&c, &leader);
    let logs_at: Vec<usize> = standbys.iter().map(|s| c.log_len(s)).collect();
    for s in &standbys {
        c.fill_host_disk(s);
    }
    ck.mark(&format!(
        "the file system holding the lease files of {standbys:?} full; node crash of {leader} \
         (agent and postmaster kill -9)"
    ));
    c.member_mut(&leader).crash();
    let crashed_at = Instant::now();
    // the lease runs out after a ttl; each standby may win, try and be held out in turn
    let full_for = TTL * 4;
    let mut promoted = Vec::new();
    while crashed_at.elapsed() < full_for {
        for s in &standbys {
            let in_recovery = c.sql_one(s, "SELECT pg_is_in_recovery()::text");
            if in_recovery.as_deref() == Some("false") && !promoted.contains(s) {
                ck.mark(&format!(
                    "{s} left recovery without room for its lease file"
                ));
                promoted.push(s.clone());
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let acked_while_full = ck.acks().iter().filter(|a| a.sent > crashed_at).count();
    let said: Vec<String> = standbys
        .iter()
        .zip(&logs_at)
        .flat_map(|(s, at)| {
            c.log_lines_since(
                s,
                *at,
                &["cannot write the fencing deadline", "promotion not made"],
            )
        })
        .collect();
    ck.mark("room made again on both file systems");
    for s in &standbys {
        c.free_host_disk(s);
    }
    let freed_at = Instant::now();
    // a member whose promotion was not made stays out of failovers for three ttls at most
    let new = await_failover(&c, &ck, &leader, TTL * 3 + PATIENCE);
    let writes_on_new = ck.wait_acks(&new, freed_at, 1, PATIENCE);
    let armed = c.member(&new).lease_deadline();
    ck.mark(&format!("{leader}'s agent restarted"));
    c.start_agent(&leader);
    let report = ck.finish(&c, CONVERGE);
    eprintln!("{report}\nthe standbys said: {said:#?}");
    assert_no_loss_one_writer(&report, &c);
    let mut unmet = Vec::new();
    if !promoted.is_empty() {
        unmet.push(format!(
            "{promoted:?} left recovery while their fencing deadline could not be written"
        ));
    }
    if acked_while_full > 0 {
        unmet.push(format!(
            "{acked_while_full} writes acknowledged after the crash while no standby could \
             write its fencing deadline"
        ));
    }
    if said.is_empty() {
        unmet.push("no standby said it cannot write its fencing deadline".into());
    }
    if !writes_on_new {
        unmet.push(format!("{new} acknowledged no write once there was room"));
    }
    if armed.is_none() {
        unmet.push(format!("{new} leads with its fencing deadline disarmed"));
    }
    assert_all_met_and_streaming(&c, &report, &unmet, "standbys without room for their fence");
}

/// The file system holding the leader's lease file fills up (`/` full of logs; its data
/// volume, mounted at the member directory, has room), synchronous mode, writers writing. Its
/// agent can no longer move the deadline by which the supervisor fences PostgreSQL, and it
/// keeps renewing the store's lease: left alone, the supervisor kills the primary at that
/// deadline (a crash, commits cut short), then its restart is refused. Instead the leader
/// must stop PostgreSQL cleanly before that deadline, let go of the lease, and say why; a
/// standby takes over and the old leader follows it, its disk still full. One writer,
/// nothing lost.
#[test]
fn a_leader_that_cannot_write_its_fencing_deadline_hands_over_before_it_is_fenced() {
    let (mut c, leader, ck) = start_writing_on_disks(true);
    let log_at = c.log_len(&leader);
    let armed_before = c.member(&leader).lease_deadline();
    c.fill_host_disk(&leader);
    let filled_boot_ms = boot_clock_ms();
    ck.mark(&format!(
        "the file system holding {leader}'s lease file full (fencing deadline armed until \
         {armed_before:?}, boot clock now {filled_boot_ms})"
    ));
    let new = await_failover(&c, &ck, &leader, TTL + PATIENCE);
    let writes_on_new = ck.wait_acks(&new, Instant::now(), 1, PATIENCE);
    let streaming = format!(
        "SELECT count(*)::text FROM pg_stat_replication \
         WHERE application_name = '{leader}' AND state = 'streaming'"
    );
    let follows = poll(CONVERGE, Duration::from_millis(200), || {
        (c.sql_one(&new, &streaming).as_deref() == Some("1")).then_some(())
    })
    .is_some();
    ck.mark(&format!(
        "{leader} follows {new}: {follows}; room made again"
    ));
    let explained = c.log_lines_since(&leader, log_at, &["stopping it cleanly first"]);
    let killed = c.log_lines_since(&leader, log_at, &["lease deadline passed"]);
    c.free_host_disk(&leader);
    let report = ck.finish(&c, CONVERGE);
    eprintln!("{report}\n{leader} said: {explained:#?}\nits supervisor: {killed:#?}");
    assert_no_loss_one_writer(&report, &c);
    let mut unmet = Vec::new();
    if !killed.is_empty() {
        unmet.push(format!(
            "{leader}'s supervisor had to fence its primary: {killed:?}"
        ));
    }
    if explained.is_empty() {
        unmet.push(format!(
            "{leader}'s agent did not say it stops PostgreSQL because its fence is stuck"
        ));
    }
    if !writes_on_new {
        unmet.push(format!("{new} acknowledged no write after it took over"));
    }
    if !follows {
        unmet.push(format!(
            "{leader} did not follow {new} while its lease file system was full"
        ));
    }
    assert_all_met_and_streaming(&c, &report, &unmet, "a leader without room for its fence");
}

/// The leader's data disk fills up (its own volume, to the last byte: its inserts fail with
/// `ENOSPC` while PostgreSQL runs on), then its host crashes (agent and postmaster kill -9),
/// synchronous mode, writers writing. A synchronous standby takes over; the old leader's agent
/// comes back to a disk where PostgreSQL cannot even write its lock file, so crash recovery and
/// pg_rewind fail. A full disk is no divergence: it must not re-clone (moving its data aside
/// beside a copy that cannot fit), nor come back as a primary; it says why and waits, and
/// once there is room it rejoins with its data where it was. One writer, nothing lost.
#[test]
fn leader_data_disk_full() {
    let (mut c, leader, ck) = start_writing_on_disks(false);
    let log_at = c.log_len(&leader);
    c.fill_disk(&leader);
    ck.mark(&format!(
        "{leader}'s data disk full; node crash of {leader} (agent and postmaster kill -9)"
    ));
    std::thread::sleep(Duration::from_secs(1));
    c.member_mut(&leader).crash();
    let new = await_failover(&c, &ck, &leader, TTL + PATIENCE);
    let writes_on_new = ck.wait_acks(&new, Instant::now(), 1, PATIENCE);
    ck.mark(&format!(
        "{leader}'s agent restarted, its data disk still full"
    ));
    c.start_agent(&leader);
    // the old leader, its disk still full, for a few ttls
    let full_until = Instant::now() + TTL * 5;
    let mut came_back_writable = false;
    while Instant::now() < full_until {
        if c.sql_one(&leader, "SELECT pg_is_in_recovery()::text")
            .as_deref()
            == Some("false")
        {
            came_back_writable = true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let aside_while_full = moved_aside(&c, &leader);
    let said = c.log_lines_since(
        &leader,
        log_at,
        &["not re-cloning", "a full disk is no divergence"],
    );
    ck.mark(&format!("room made again on {leader}'s data disk"));
    c.free_disk(&leader);
    let report = ck.finish(&c, CONVERGE);
    let aside = [aside_while_full, moved_aside(&c, &leader)].concat();
    eprintln!(
        "{report}\n{leader} said ({} lines): {:#?}",
        said.len(),
        said.iter().rev().take(20).collect::<Vec<_>>()
    );
    assert_no_loss_one_writer(&report, &c);
    let mut unmet = Vec::new();
    if came_back_writable {
        unmet.push(format!(
            "{leader} came back writable with its data disk full"
        ));
    }
    if !aside.is_empty() {
        unmet.push(format!("{leader}'s data was moved aside: {aside:?}"));
    }
    if said.is_empty() {
        unmet.push(format!(
            "{leader}'s agent never said why it does not re-clone"
        ));
    }
    if !writes_on_new {
        unmet.push(format!("{new} acknowledged no write after it took over"));
    }
    assert_all_met_and_streaming(&c, &report, &unmet, "the leader's data disk full");
}

/// The synchronous standby's data disk fills up (its own volume, to the last byte: its WAL
/// receiver can no longer write what it receives), synchronous mode, writers writing to the
/// leader. Commits wait for a standby that cannot confirm them: the synchronous role must move
/// to the other standby, which can, and writes go on. Then the leader's host crashes (agent
/// and postmaster kill -9): the member taking over must be one that holds every acknowledged
/// write, never the full one. Once room is made the full one rejoins with its data where it
/// was. One writer, nothing lost.
#[test]
fn sync_standby_data_disk_full_then_leader_crash() {
    let (mut c, leader, ck) = start_writing_on_disks(false);
    let sync = c
        .sql_one(
            &leader,
            "SELECT application_name FROM pg_stat_replication WHERE sync_state = 'sync'",
        )
        .expect("a synchronous standby");
    let other = standbys_of(&c, &leader)
        .into_iter()
        .find(|m| *m != sync)
        .unwrap();
    c.fill_disk(&sync);
    let filled_at = Instant::now();
    ck.mark(&format!(
        "{sync}'s data disk full ({sync} the synchronous standby)"
    ));
    let moved = poll(TTL * 5, Duration::from_millis(100), || {
        c.sql_one(
            &leader,
            "SELECT application_name FROM pg_stat_replication WHERE sync_state = 'sync'",
        )
        .filter(|s| *s == other)
    });
    match moved {
        Some(_) => ck.mark(&format!("{other} the synchronous standby")),
        None => ck.mark(&format!("{other} still not the synchronous standby")),
    }
    // Until the leader has published the set without the full standby (once the other has
    // caught up with every commit the full one may have confirmed), a failover has to wait
    // for the full standby's position: it may hold commits nobody else has.
    let published = poll(TTL * 5, Duration::from_millis(100), || {
        let set = c.cluster_json()?["sync"]["members"].clone();
        (set == serde_json::json!([other])).then_some(set)
    });
    match &published {
        Some(set) => ck.mark(&format!("the published synchronous set is {set}")),
        None => ck.mark(&format!(
            "the published synchronous set never became [{other}]"
        )),
    }
    let writes_after = ck.wait_acks(&leader, Instant::now(), 20, PATIENCE);
    let full_gap = longest_gap(&ck.acks(), filled_at, Instant::now());
    ck.mark(&format!(
        "node crash of {leader} (agent and postmaster kill -9), {sync}'s disk still full"
    ));
    c.member_mut(&leader).crash();
    let new = await_failover(&c, &ck, &leader, TTL + PATIENCE);
    let writes_on_new = ck.wait_acks(&new, Instant::now(), 1, PATIENCE);
    ck.mark(&format!("{leader}'s agent restarted"));
    c.start_agent(&leader);
    std::thread::sleep(TTL * 2);
    let aside_while_full = moved_aside(&c, &sync);
    ck.mark(&format!("room made again on {sync}'s data disk"));
    c.free_disk(&sync);
    let report = ck.finish(&c, CONVERGE);
    eprintln!("{report}\nlongest write gap while {sync}'s disk was full: {full_gap:?}");
    assert_no_loss_one_writer(&report, &c);
    let mut unmet = Vec::new();
    if moved.is_none() {
        unmet.push(format!(
            "the synchronous role never moved from {sync} to {other}"
        ));
    }
    if published.is_none() {
        unmet.push(format!("the published set never became [{other}]"));
    }
    if !writes_after {
        unmet.push(format!("{leader} took no write after {sync}'s disk filled"));
    }
    if full_gap > TTL * 2 {
        unmet.push(format!(
            "no write acknowledged for {full_gap:?} after the disk filled"
        ));
    }
    if new == sync {
        unmet.push(format!("{sync}, its disk full, took over"));
    }
    if !writes_on_new {
        unmet.push(format!("{new} acknowledged no write after it took over"));
    }
    let aside = [aside_while_full, moved_aside(&c, &sync)].concat();
    if !aside.is_empty() {
        unmet.push(format!("{sync}'s data was moved aside: {aside:?}"));
    }
    assert_all_met_and_streaming(&c, &report, &unmet, "the synchronous standby's disk full");
    assert_history_recorded_once(&c);
}
