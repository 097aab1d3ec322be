//! Links blackholed: to etcd (both ways or one way), and between members.

use super::*;

/// pgha-core's default `stream_timeout_ms`: how long a standby may fail to stream from a
/// healthy leader before pgha treats it as diverged (the test clusters keep the default).
const STREAM_TIMEOUT: Duration = Duration::from_secs(30);

/// The harness itself: a one-way cut drops what one host's programs send and still carries
/// what the other host's send (found by review: it dropped TCP's acknowledgements too, so
/// within a retransmission timeout the other side could send nothing either, and the one-way
/// tests below were cuts both ways). `b` sends 4 MiB to `a` through the cut that drops what
/// `a` sends to `b`: all of it arrives, and none of `a`'s replies does.
#[test]
fn a_one_way_cut_carries_what_the_other_side_sends() {
    use std::io::{Read, Write};

    let mut net = Net::new(&["a", "b"]);
    let a_ip = net.host("a").ip.clone();
    let listener = {
        let _in_a = NetnsGuard::enter(&net.host("a").ns);
        std::net::TcpListener::bind((a_ip.as_str(), 7070)).unwrap()
    };
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let (mut got, mut buf) = (0usize, [0u8; 65536]);
        while got < 4 << 20 {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    // a reply a MiB, which the cut drops (few: unanswered, they fill the
                    // socket's buffer and a write would block this reader)
                    if (got + n) >> 20 > got >> 20 {
                        let _ = conn.write(b"ack\n");
                    }
                    got += n;
                }
            }
        }
        got
    });
    let b_ns = net.host("b").ns.clone();
    let mut conn = {
        let _in_b = NetnsGuard::enter(&b_ns);
        std::net::TcpStream::connect((a_ip.as_str(), 7070)).unwrap()
    };
    net.cut("a", "b", Way::OneWay);
    conn.set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let chunk = vec![7u8; 64 << 10];
    let sent = (0..64)
        .take_while(|_| conn.write_all(&chunk).is_ok())
        .count();
    let got = server.join().unwrap();
    assert_eq!(sent, 64, "the sender was stopped by the cut");
    assert_eq!(
        got,
        4 << 20,
        "what b sent did not all reach a through a one-way cut"
    );
    conn.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut reply = [0u8; 16];
    assert!(
        !matches!(conn.read(&mut reply), Ok(n) if n > 0),
        "a reply of a crossed the cut"
    );
    net.heal_all();
}

/// `pgha config set ttl_ms=6000 safety_margin_ms=1500`, then the leader's link to etcd
/// blackholed both ways: the leader must demote before the lease etcd really holds expires.
#[test]
fn ttl_raised_then_leader_etcd_blackholed() {
    let (mut c, leader) = start(&Opts::default());
    let out = c.cli(&["config", "set", "ttl_ms=6000", "safety_margin_ms=1500"]);
    assert!(
        out.status.success(),
        "pgha config set failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until("ttl_ms=6000 in /cluster", Duration::from_secs(10), || {
        c.cluster_json()
            .filter(|v| v["config"]["ttl_ms"] == 6000)
            .map(|_| ())
    });
    // a few loops so every agent (and the leader's renewals) run with the new ttl
    std::thread::sleep(Duration::from_secs(5));
    let ck = checker_writing(&c, &leader);
    ck.mark(&format!(
        "{leader} <-> etcd blackholed both ways (ttl 6 s, margin 1.5 s)"
    ));
    c.net.cut(&leader, "etcd", Way::Both);
    await_failover(&c, &ck, &leader, Duration::from_secs(40));
    heal_and_judge(&mut c, ck);
}

/// The leader's link to etcd blackholed both ways, asynchronous mode, its standbys reachable;
/// as its lease lapses (its agent demotes `SAFETY_MARGIN / 2` before the fencing deadline it
/// armed) its walsenders are starved of CPU (SIGSTOP from [`STARVED_BEFORE_DEADLINE`] before
/// that demotion to 100 ms after it), and 450 ms after the demotion (50 ms before the fencing
/// deadline) its host is isolated. A demotion that stopped PostgreSQL at once would throw away
/// the commits acknowledged meanwhile that no walsender had sent (the standbys could only have
/// streamed them from the old primary once it ran again as a standby, and the isolation stops
/// that); the agent stops it fast (the backends end, then the walsenders send what they
/// wrote): nothing lost.
#[test]
fn leader_cut_from_etcd_with_walsenders_starved_as_its_lease_lapses() {
    let (mut c, leader) = start(&Opts::default());
    let ck = checker_writing(&c, &leader);
    let pm = running_postmaster(&c, &leader);
    c.net.cut(&leader, "etcd", Way::Both);
    // renewals sent before the cut may still be answered: the deadline settles within a loop
    std::thread::sleep(LOOP_WAIT * 2);
    let deadline = c
        .member(&leader)
        .lease_deadline()
        .expect("an armed deadline");
    let demote_at = deadline - (SAFETY_MARGIN / 2).as_millis() as u64;
    ck.mark(&format!(
        "{leader} <-> etcd blackholed both ways; its fencing deadline {} ms ahead, its demotion \
         due {} ms ahead",
        deadline as i64 - boot_clock_ms() as i64,
        demote_at as i64 - boot_clock_ms() as i64
    ));
    let walsenders = starve_walsenders(&ck, &leader, pm, demote_at, "its demotion is due");
    sleep_until_boot_ms(demote_at + 100);
    resume(&walsenders);
    ck.mark(&format!("SIGCONT of {leader}'s walsenders"));
    // the host then drops off the network altogether: the standbys cannot stream the tail
    // from the old primary once it runs again as a standby
    sleep_until_boot_ms(demote_at + 450);
    c.net.isolate(&leader);
    ck.mark(&format!(
        "{leader} isolated, {} ms before its fencing deadline",
        deadline as i64 - boot_clock_ms() as i64
    ));
    await_failover(&c, &ck, &leader, Duration::from_secs(30));
    heal_and_judge(&mut c, ck);
}

/// Only etcd's answers to the leader are dropped (iptables in etcd's namespace, one way),
/// synchronous mode: the leader's renewals still reach etcd and keep its lease alive there,
/// but the leader never hears back. It must stop writing on its own clock, and stop renewing,
/// so that the lease etcd holds runs out and another member takes over; nothing is lost and
/// there is never a second writer. Then the link heals and the old leader rejoins.
#[test]
fn etcd_answers_to_the_leader_blackholed_one_way() {
    let (mut c, leader) = start_sync();
    let ck = checker_writing(&c, &leader);
    ck.mark(&format!(
        "etcd -> {leader} blackholed (one way: {leader}'s requests still reach etcd)"
    ));
    c.net.cut("etcd", &leader, Way::OneWay);
    let new = await_failover(&c, &ck, &leader, TTL * 6);
    assert_ne!(new, leader);
    heal_and_judge(&mut c, ck);
}

/// After [`WATCH`], heals every cut and checks the run: nothing acknowledged lost, never a
/// second writer.
fn heal_and_judge(c: &mut Cluster, ck: Checker) {
    std::thread::sleep(WATCH);
    ck.mark("link healed");
    c.net.heal_all();
    let report = ck.finish(c, CONVERGE);
    eprintln!("{report}");
    assert_no_loss_one_writer(&report, c);
    assert_history_recorded_once(c);
}

/// Synchronous mode `on` (`FIRST 1` over both standbys), writers writing: the synchronous
/// standby's link to etcd blackholed both ways (its PostgreSQL still streams from the leader
/// and acknowledges commits), then at once the leader's host crashes. The other standby cannot
/// know how far the cut-off one got, which acknowledged the last commits, and the cut-off one
/// cannot reach etcd: nobody may be promoted while it stays cut off. Once healed, its fresh
/// position is in, the better of the two takes over, and nothing acknowledged is lost.
#[test]
fn a_synchronous_standby_cut_from_etcd_as_the_leader_crashes_is_waited_for() {
    let (mut c, leader) = start_sync();
    let sync = wait_until("the synchronous standby", Duration::from_secs(30), || {
        c.sql_one(
            &leader,
            "SELECT application_name FROM pg_stat_replication WHERE sync_state = 'sync'",
        )
    });
    let ck = checker_writing(&c, &leader);
    ck.mark(&format!(
        "{sync} (synchronous standby) <-> etcd blackholed both ways; node crash of {leader}"
    ));
    c.net.cut(&sync, "etcd", Way::Both);
    c.member_mut(&leader).crash();
    let hold = TTL * 5;
    let promoted = c.wait_new_primary(&leader, hold);
    ck.mark("link healed");
    c.net.heal_all();
    let new = await_failover(&c, &ck, &leader, PATIENCE);
    c.start_agent(&leader);
    let report = ck.finish(&c, CONVERGE);
    eprintln!("{report}");
    assert_no_loss_one_writer(&report, &c);
    let mut unmet = Vec::new();
    if let Some((member, _)) = promoted {
        unmet.push(format!(
            "{member} was promoted while {sync}, which acknowledged the last commits, was cut \
             off from etcd"
        ));
    }
    eprintln!("{new} took over once {sync} was back");
    assert_all_met_and_streaming(&c, &report, &unmet, "a synchronous standby cut from etcd");
    assert_history_recorded_once(&c);
}

/// The synchronous standby's link to the leader stops carrying, synchronous mode `on`
/// (`FIRST 1` over both standbys), pgha's default ttl (10 s: a 10 s replication timeout),
/// writers writing: blackholed both ways, then only its acknowledgements (its replies never
/// arrive; the WAL still does), then only the WAL it is sent (its replies still arrive, so the
/// leader's side never times out). Its connection stays up and PostgreSQL shows it streaming
/// until the replication timeout, while every commit waits on it; its flushed position stands
/// still with the primary ahead, and after `stalled_standby_ms` (3 s) the leader has
/// PostgreSQL count the other standby instead and says why in history. Each way: no write
/// waits for the replication timeout, nothing acknowledged is lost, the leader stays, one
/// writer; healed, the standby streams and is counted again.
#[test]
fn sync_standby_link_blackholed() {
    let ttl = Duration::from_secs(10);
    let (mut c, leader) = start_sync_with(Opts {
        dynamic: vec![("ttl_ms".into(), ttl.as_millis().to_string())],
        ..Opts::default()
    });
    let ck = checker_writing(&c, &leader);
    let hold = Duration::from_secs(12);
    let stalled_after = Duration::from_secs(3);
    let mut gaps = Vec::new();
    for (way, from_standby, what) in [
        (Way::Both, true, "link, both ways"),
        (Way::OneWay, true, "acknowledgements"),
        (Way::OneWay, false, "WAL"),
    ] {
        // both standbys in the set, one of them the synchronous one
        let sync = wait_until(
            "one sync and one potential standby",
            Duration::from_secs(60),
            || {
                let rows = c
                    .sql(
                        &leader,
                        "SELECT application_name, sync_state FROM pg_stat_replication",
                    )
                    .ok()?;
                let state = |s: &str| rows.iter().filter(|r| r[1].as_deref() == Some(s)).count();
                let sync = rows.iter().find(|r| r[1].as_deref() == Some("sync"))?;
                (state("sync") == 1 && state("potential") == 1).then(|| sync[0].clone())?
            },
        );
        let (a, b) = if from_standby {
            (sync.as_str(), leader.as_str())
        } else {
            (leader.as_str(), sync.as_str())
        };
        let events_before = c.history().len();
        ck.mark(&format!(
            "{a} -> {b} blackholed for {hold:?} (the synchronous standby's {what})"
        ));
        c.net.cut(a, b, way);
        let cut_at = Instant::now();
        std::thread::sleep(hold);
        ck.mark("healed");
        c.net.heal_all();
        let gap = longest_gap(&ck.acks(), cut_at, Instant::now());
        let explained = c.history()[events_before.min(c.history().len())..]
            .iter()
            .any(|e| e["kind"] == "sync_changed" && e["from"] == sync.as_str());
        gaps.push((what, sync, gap, explained));
    }
    let report = ck.finish(&c, CONVERGE);
    eprintln!("{report}");
    assert_no_loss_one_writer(&report, &c);
    let mut unmet = Vec::new();
    for (what, sync, gap, explained) in &gaps {
        eprintln!(
            "{sync}'s {what} dropped: no write acknowledged for {} ms at the longest",
            gap.as_millis()
        );
        if *gap > stalled_after + Duration::from_secs(3) {
            unmet.push(format!(
                "{sync}'s {what} dropped: no write acknowledged for {} ms (stalled after \
                 {stalled_after:?}, replication timeout {ttl:?})",
                gap.as_millis()
            ));
        }
        if !explained {
            unmet.push(format!(
                "{sync}'s {what} dropped: no history event from {sync} says why commits \
                 stopped waiting on it"
            ));
        }
    }
    assert_kept_leading_and_streaming(&c, &report, &leader, unmet, "a cut synchronous link");
}

/// A standby's link to the primary blackholed (etcd reachable) for longer than
/// wal_receiver_timeout plus pgha's stream timeout, both ways, then only what the primary
/// sends it (TCP handshakes still complete: a path MTU blackhole, a middlebox, a postmaster
/// hung while its kernel accepts): once healed it streams again, and it was neither rewound
/// nor re-cloned, nor its data directory moved aside. Found by review, the second: the
/// standby took a completed TCP handshake for a leader that answers and refuses to stream,
/// and stopped its PostgreSQL to rewind data that had not diverged.
#[test]
fn standby_link_blackholed() {
    let (mut c, leader) = start(&Opts::default());
    let standby = standbys_of(&c, &leader)[0].clone();
    let ck = checker_writing(&c, &leader);
    // past the receiver's timeout and the stream timeout by a few loops (the old rewind came
    // half a second after them), not more: the test is among the longest of the suite
    let cut_for = WAL_TIMEOUT + STREAM_TIMEOUT + Duration::from_secs(3);
    // the log from here on (its initial clone is a Reclone action too)
    let log_at_cut = c.log_len(&standby);
    for (a, b, way, what) in [
        (&standby, &leader, Way::Both, "both ways"),
        (&leader, &standby, Way::OneWay, "what the primary sends"),
    ] {
        ck.mark(&format!(
            "{standby} <-> {leader} blackholed, {what}, for {cut_for:?}"
        ));
        c.net.cut(a, b, way);
        std::thread::sleep(cut_for);
        ck.mark("link healed");
        c.net.heal_all();
        let streaming = c.wait_converged(Duration::from_secs(90));
        assert_eq!(streaming, leader, "the leader changed");
        ck.mark(&format!("{standby} streams again"));
    }
    let report = ck.finish(&c, CONVERGE);
    eprintln!("{report}");
    let m = c.member(&standby);
    let aside = m.moved_aside();
    let rewound = c.log_lines_since(
        &standby,
        log_at_cut,
        &[
            "rewind",
            "re-clon",
            "reclone",
            "moving the old data directory",
        ],
    );
    let history: Vec<String> = c
        .history()
        .iter()
        .filter(|e| e["from"] == standby.as_str() || e["to"] == standby.as_str())
        .filter(|e| e["kind"].as_str().unwrap_or("").starts_with("rejoin"))
        .map(|e| e.to_string())
        .collect();
    assert!(
        aside.is_empty() && rewound.is_empty() && history.is_empty(),
        "{standby} was only cut off from {leader} (no divergence), yet: data directories moved \
         aside {aside:?}; agent log lines {rewound:#?}; history {history:#?}\n{report}"
    );
    assert_no_loss_one_writer(&report, &c);
}

/// A standby cloning from the leader (its data directory gone, the copy slowed to a crawl)
/// when the leader's host crashes and its link to the standby is blackholed both ways: no
/// RST ever comes. The clone must give up on its silent source within seconds and clone from
/// the new leader. Found by review: pg_basebackup had no keepalives nor connect timeout, so
/// it waited on TCP (up to two hours with the kernel's defaults) and the member stayed a
/// member with no data, neither a standby nor a candidate, after another member led.
#[test]
fn a_clone_whose_source_vanishes_mid_copy_is_taken_again_from_the_new_leader() {
    let (mut c, leader) = start(&Opts::default());
    let standbys = standbys_of(&c, &leader);
    let cloning = standbys[1].clone();
    // ~60 MB to copy: seconds on the slowed link at the least
    c.sql(
        &leader,
        "CREATE TABLE big AS SELECT repeat('x', 1500) AS pad FROM generate_series(1, 40000)",
    )
    .expect("fill the leader");
    c.member_mut(&cloning).crash();
    let data = c.member(&cloning).data_dir();
    std::fs::remove_dir_all(&data).expect("remove the data directory");
    c.net.throttle_from_port(&leader, &cloning, PG_PORT, 30);
    let log_from = c.log_len(&cloning);
    c.start_agent(&cloning);
    wait_until(
        &format!("{cloning} cloning from {leader}"),
        Duration::from_secs(60),
        || {
            (!c.log_lines_since(&cloning, log_from, &["starting clone from"])
                .is_empty())
            .then_some(())
        },
    );
    std::thread::sleep(Duration::from_secs(3));
    c.net.cut(&leader, &cloning, Way::Both);
    c.member_mut(&leader).crash();
    let cut_at = Instant::now();
    let (new, _) = c
        .wait_new_primary(&leader, Duration::from_secs(30))
        .expect("a new primary");
    let streaming = pgha_testkit::poll(Duration::from_secs(90), Duration::from_millis(200), || {
        let rows = c.sql_one(
            &new,
            &format!(
                "SELECT count(*) FROM pg_stat_replication WHERE application_name = '{cloning}' \
                 AND state = 'streaming'"
            ),
        );
        (rows.as_deref() == Some("1")).then_some(())
    });
    let clones = c.log_lines_since(&cloning, log_from, &["clone from", "clone "]);
    assert!(
        streaming.is_some(),
        "{cloning} did not stream from {new} within 90 s of its clone source {leader} \
         vanishing mid-copy; its clone jobs: {clones:#?}\n{}",
        c.logs(40)
    );
    eprintln!(
        "{cloning} streams from {new} {:?} after {leader} vanished mid-copy; {clones:#?}",
        cut_at.elapsed()
    );
    c.net.heal_all();
}

/// The leader's links to both standbys blackholed (etcd reachable), synchronous mode, writers
/// writing: its commits wait, its WAL runs ahead of theirs; then its host crashes and a
/// standby takes over. Its agent restarted with the links still cut, the old leader has to
/// rewind from a source it cannot reach: each attempt stops before pg_rewind begins, which
/// says nothing of its data, so it tries again rather than moving its data aside for a
/// re-clone (found by `leader_host_lossy`). Once healed it rewinds back in: no data moved
/// aside, nothing lost, one writer.
#[test]
fn a_rewind_source_out_of_reach_is_waited_for_not_replaced_by_a_reclone() {
    let (mut c, leader) = start_sync();
    let ck = checker_writing(&c, &leader);
    let standbys = standbys_of(&c, &leader);
    ck.mark(&format!(
        "{leader} <-> {standbys:?} blackholed both ways (etcd reachable)"
    ));
    for s in &standbys {
        c.net.cut(&leader, s, Way::Both);
    }
    std::thread::sleep(Duration::from_secs(1));
    ck.mark(&format!("node crash of {leader}"));
    c.member_mut(&leader).crash();
    let new = await_failover(&c, &ck, &leader, PATIENCE);
    let log_at = c.log_len(&leader);
    ck.mark(&format!("{leader}'s agent started, its links still cut"));
    c.start_agent(&leader);
    let tried = wait_until(
        "a rewind attempt that could not reach its source",
        Duration::from_secs(40),
        || {
            c.log_lines_since(&leader, log_at, &["could not be reached"])
                .into_iter()
                .find(|l| l.contains("rewind source"))
        },
    );
    ck.mark(&format!("{leader}: {tried}"));
    std::thread::sleep(Duration::from_secs(10));
    let aside_while_cut = moved_aside(&c, &leader);
    ck.mark("links healed");
    c.net.heal_all();
    let report = ck.finish(&c, CONVERGE);
    eprintln!("{report}");
    assert_no_loss_one_writer(&report, &c);
    let mut unmet = Vec::new();
    let aside = moved_aside(&c, &leader);
    if !aside_while_cut.is_empty() || !aside.is_empty() {
        unmet.push(format!("{leader}'s data was moved aside: {aside:?}"));
    }
    let rewound = c.history().iter().any(|e| {
        e["kind"] == "rejoin_rewind" && e["from"] == leader.as_str() && e["to"] == new.as_str()
    });
    if !rewound {
        unmet.push(format!(
            "no rejoin_rewind of {leader} to {new} in the history"
        ));
    }
    assert_all_met_and_streaming(&c, &report, &unmet, "a rewind source out of reach");
    assert_history_recorded_once(&c);
}
