//! `pgha proxy` paused, or cut from etcd, through a failover.

use super::*;

use nix::sys::signal::Signal;
use pgha_testkit::run_sql;

/// `pgha proxy` paused (SIGSTOP: a stalled process or VM) while the leader's host crashes,
/// another member takes over and the old leader comes back as a standby; clients connect to
/// the read-write address meanwhile (their connections wait in the listen backlog) and just
/// after the proxy resumes. I2: no read-write session reaches a member in recovery, whatever
/// the proxy last confirmed before its pause; each is held until the new primary is
/// confirmed, then served by it. Synchronous mode; one writer, nothing lost.
#[test]
fn a_proxy_paused_through_a_failover_sends_no_session_to_a_standby() {
    let (mut c, leader) = start_sync();
    let ck = checker_writing(&c, &leader);
    ck.mark("pgha proxy paused (SIGSTOP)");
    c.signal_proxy(Signal::SIGSTOP);
    ck.mark(&format!(
        "node crash of {leader} (agent and postmaster kill -9)"
    ));
    c.member_mut(&leader).crash();
    let new = await_failover(&c, &ck, &leader, PATIENCE);
    c.start_agent(&leader);
    wait_until(&format!("{leader} back as a standby"), PATIENCE, || {
        c.sql_one(&leader, "SELECT pg_is_in_recovery()::text")
            .filter(|r| r == "true")
    });
    ck.mark(&format!("{leader} back as a standby of {new}"));
    let client_ns = c.net.host("client").ns.clone();
    let session = |conninfo: String| {
        let ns = client_ns.clone();
        std::thread::spawn(move || {
            enter_netns(&ns).expect("setns");
            let answer = run_sql(
                &format!("{conninfo} connect_timeout=60"),
                "SELECT pg_is_in_recovery()::text, host(inet_server_addr())",
            );
            let row = answer.map(|rows| {
                rows[0]
                    .iter()
                    .map(|v| v.clone().unwrap_or_default())
                    .collect::<Vec<_>>()
            });
            (row, Instant::now())
        })
    };
    let mut sessions: Vec<_> = (0..8).map(|_| session(c.proxy_conninfo())).collect();
    std::thread::sleep(Duration::from_secs(1));
    ck.mark("pgha proxy resumed (SIGCONT), 8 sessions waiting in its backlog");
    c.signal_proxy(Signal::SIGCONT);
    let resumed_at = Instant::now();
    sessions.extend((0..8).map(|_| session(c.proxy_conninfo())));
    let (answers, at): (Vec<_>, Vec<_>) = sessions.into_iter().map(|s| s.join().unwrap()).unzip();
    let last_ms = at
        .iter()
        .map(|t| t.duration_since(resumed_at).as_millis())
        .max();
    let report = ck.finish(&c, CONVERGE);
    eprintln!("{report}");
    eprintln!(
        "the sessions' answers (in recovery, server): {answers:?}; the last {last_ms:?} ms after \
         the proxy resumed"
    );
    assert_no_loss_one_writer(&report, &c);
    let new_ip = c.member(&new).host.ip.clone();
    let mut unmet = Vec::new();
    for answer in &answers {
        match answer {
            Ok(row) if row[0] == "false" && row[1] == new_ip => {}
            Ok(row) => unmet.push(format!(
                "a read-write session was served by {} (in recovery: {})",
                row[1], row[0]
            )),
            Err(e) => unmet.push(format!("a read-write session failed: {e}")),
        }
    }
    assert_all_met_and_streaming(&c, &report, &unmet, "a paused proxy");
}

/// The link between the proxy's host and etcd blackholed both ways, then the leader's host
/// crashes (agent and postmaster kill -9), synchronous mode: the members elect a new leader
/// the proxy cannot hear of, and its read-write sessions wait (the old leader is gone, nothing
/// new is confirmed). Once the link heals, the proxy must route writes to the new primary
/// within a few seconds: its watch of etcd and its reads get through again (a connection
/// silent for the whole cut must not hold them for a TCP retransmission backoff).
#[test]
fn a_proxy_cut_from_etcd_through_a_failover_follows_the_new_primary_once_healed() {
    let (mut c, leader) = start_sync();
    let ck = checker_writing(&c, &leader);
    ck.mark(&format!(
        "the proxy's host <-> etcd blackholed both ways; node crash of {leader}"
    ));
    c.net.cut("client", "etcd", Way::Both);
    c.member_mut(&leader).crash();
    let new = await_failover(&c, &ck, &leader, PATIENCE);
    std::thread::sleep(TTL * 2);
    ck.mark("link healed");
    c.net.heal_all();
    let healed = Instant::now();
    let through_proxy = wait_until("a write through the proxy", PATIENCE, || {
        ck.acks()
            .into_iter()
            .find(|a| a.writer == "proxy" && a.member == new && a.sent > healed)
            .map(|a| a.acked)
    });
    let after_ms = through_proxy.duration_since(healed).as_millis();
    ck.mark(&format!(
        "first write through the proxy on {new}, {after_ms} ms after the heal"
    ));
    c.start_agent(&leader);
    let report = ck.finish(&c, CONVERGE);
    eprintln!("{report}");
    assert_no_loss_one_writer(&report, &c);
    let mut unmet = Vec::new();
    // a call under way at the heal ends at its bound (2 s), the next goes over a new
    // connection; before: the old one stayed silent until a keep-alive ping timed out
    if after_ms > 3_000 {
        unmet.push(format!(
            "the proxy routed its first write to {new} only {after_ms} ms after the heal"
        ));
    }
    assert_all_met_and_streaming(&c, &report, &unmet, "a proxy cut from etcd");
}
