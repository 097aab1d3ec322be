//! (b)-(d) A node crash, the leader's link to etcd cut, etcd restarted: one writer at a time.

use super::*;

use super::writers::{assert_one_writer, Writers};

/// A test under way, holding off the others (`serial`): its runtime, and when it began.
struct Run {
    rt: tokio::runtime::Runtime,
    began: Instant,
    _serial: std::sync::MutexGuard<'static, ()>,
}

impl Run {
    fn begin() -> Run {
        let serial = serial();
        Run {
            rt: runtime(),
            began: Instant::now(),
            _serial: serial,
        }
    }

    /// Prints how long test `label` ran ("test (b) took 12.3 s").
    fn took(&self, label: &str) {
        eprintln!(
            "test ({label}) took {:.1} s",
            self.began.elapsed().as_secs_f64()
        );
    }
}

fn ensure_probe_table(rt: &tokio::runtime::Runtime, leader: &Agent) {
    wait_until(
        "the probe table on the leader",
        Duration::from_secs(10),
        || {
            sql(
            rt,
            leader,
            "CREATE TABLE IF NOT EXISTS pgha_probe(member text, at timestamptz DEFAULT now()); SELECT 'ok'",
        )
        },
    );
}

/// A cluster started with `opts`, its leader and the leader's index, the probe table created.
fn start_with_probe_table(
    rt: &tokio::runtime::Runtime,
    opts: &Options,
) -> (DistCluster, String, usize) {
    let c = DistCluster::start(opts);
    let leader = c.wait_converged(Duration::from_secs(10));
    let i = c.index(&leader);
    ensure_probe_table(rt, &c.agents[i]);
    (c, leader, i)
}

/// (b) kill -9 of the leader's agent and postmaster together: another member is promoted once
/// the lease expires and takes writes; the old one rejoins when its agent is restarted.
#[test]
fn node_crash_fails_over_and_old_leader_rejoins() {
    let run = Run::begin();
    let (mut c, old, oi) = start_with_probe_table(&run.rt, &Options::default());
    let others: Vec<String> = c
        .agents
        .iter()
        .filter(|a| a.name != old)
        .map(|a| a.name.clone())
        .collect();
    let writers = {
        let targets: Vec<&Agent> = others.iter().map(|n| c.agent(n)).collect();
        Writers::start(&run.rt, &targets, Duration::from_millis(50))
    };
    std::thread::sleep(Duration::from_millis(300));

    let crashed_at = Instant::now();
    c.agents[oi].crash();
    let (new, at) = writers.await_another_writer(&old, crashed_at);
    let attempts = writers.finish_after(Duration::from_millis(500), &run.rt);
    let unavailable = at.duration_since(crashed_at);
    eprintln!("node crash of {old}: {new} took writes after {unavailable:?}");
    assert_one_writer(&attempts, crashed_at);
    // Not before the old leader itself stopped trusting its lease (ttl - safety margin after
    // its last renewal, which was before the crash): an earlier promotion would break I1.
    assert!(
        unavailable >= TTL - SAFETY_MARGIN,
        "{new} took writes {unavailable:?} after the crash: before {old}'s lease expired"
    );
    assert!(unavailable < Duration::from_secs(15), "{unavailable:?}");
    wait_until(
        "/primary on the new leader",
        Duration::from_secs(10),
        || (c.primaries() == [new.clone()]).then_some(()),
    );
    let failovers = history_kinds(&c, "failover");
    assert_eq!(failovers.len(), 1, "{:?}", c.history());
    assert_eq!(failovers[0]["to"], new.as_str());

    // The old leader rejoins when its agent is restarted.
    sql(
        &run.rt,
        c.agent(&new),
        "INSERT INTO pgha_probe(member) VALUES ('after-crash'); SELECT 1",
    )
    .expect("write on the new leader");
    c.agents[oi].start();
    assert_eq!(wait_rejoined(&c, oi), new);
    // The rejoin is recorded in the step after the follow job ends, once it streams.
    let rejoined = pgha_testkit::poll(Duration::from_secs(10), Duration::from_millis(100), || {
        c.history()
            .iter()
            .any(|e| {
                e["from"] == old.as_str() && e["kind"].as_str().unwrap_or("").starts_with("rejoin")
            })
            .then_some(())
    });
    assert!(
        rejoined.is_some(),
        "no rejoin of {old} in history: {:?}",
        c.history()
    );
    wait_until(
        "the write made after the crash on the old leader",
        Duration::from_secs(10),
        || {
            sql(
                &run.rt,
                &c.agents[oi],
                "SELECT count(*) FROM pgha_probe WHERE member = 'after-crash'",
            )
            .filter(|n| n == "1")
        },
    );
    run.took("b");
}

/// (c) The leader's link to etcd cut (its relay severed): it is read-only before its lease can
/// expire for the others, a new leader is elected, and at no instant do two members take writes.
#[test]
fn leader_cut_from_etcd_fences_itself_before_another_takes_over() {
    let run = Run::begin();
    let relays = Options {
        relays: true,
        ..Options::default()
    };
    let (c, old, oi) = start_with_probe_table(&run.rt, &relays);
    let all: Vec<&Agent> = c.agents.iter().collect();
    let writers = Writers::start(&run.rt, &all, Duration::from_millis(20));
    wait_until("writes on the leader", Duration::from_secs(5), || {
        writers.first_ok(&old, run.began)
    });
    std::thread::sleep(Duration::from_millis(500));

    let cut_at = Instant::now();
    c.relays[oi].sever();
    let (new, new_at) = writers.await_another_writer(&old, cut_at);
    let attempts = writers.finish_after(Duration::from_millis(1000), &run.rt);
    assert_one_writer(&attempts, cut_at);
    let last_old = attempts
        .iter()
        .filter(|a| a.ok && a.member == old)
        .map(|a| a.end)
        .max()
        .unwrap();
    let ms = |d: Duration| d.as_millis();
    let fenced = last_old.saturating_duration_since(cut_at);
    let took_over = new_at.duration_since(cut_at);
    eprintln!(
        "link cut: {old} took its last write {} ms after the cut, {new} its first after {} ms \
         (ttl {} ms)",
        ms(fenced),
        ms(took_over),
        ms(TTL)
    );
    // The lease was renewed at most one loop before the cut: it cannot expire for the others
    // before cut + ttl - loop_wait. The old leader must be read-only by then.
    assert!(
        fenced < TTL - LOOP_WAIT,
        "{old} still took writes {fenced:?} after its link to etcd was cut"
    );
    assert!(last_old < new_at);
    assert!(
        c.agents[oi].get("/primary").map(|r| r.0) != Some(200),
        "{old} still claims to be primary"
    );
    assert_eq!(
        sql(&run.rt, c.agent(&new), "SELECT pg_is_in_recovery()::text").as_deref(),
        Some("false")
    );

    // Link restored: the old leader follows the new one.
    c.relays[oi].heal();
    assert_eq!(wait_rejoined(&c, oi), new);
    run.took("c");
}

/// (d) etcd stopped (SIGTERM) and started again on the same data directory and ports within
/// about a second: no failover, no demotion (same leader and timeline, the primary's
/// postmaster not restarted, writes on it never refused).
#[test]
fn etcd_restart_causes_no_failover_and_no_demotion() {
    let run = Run::begin();
    let (mut c, leader, li) = start_with_probe_table(&run.rt, &Options::default());
    let q_start = "SELECT pg_postmaster_start_time()::text";
    let q_tl = "SELECT timeline_id::text FROM pg_control_checkpoint()";
    let started_before = sql(&run.rt, &c.agents[li], q_start).unwrap();
    let timeline_before = sql(&run.rt, &c.agents[li], q_tl).unwrap();
    let history_before = c.history().len();
    let writers = Writers::start(&run.rt, &[&c.agents[li]], Duration::from_millis(50));
    std::thread::sleep(Duration::from_millis(300));

    let stopped_at = Instant::now();
    c.etcd.terminate();
    std::thread::sleep(Duration::from_millis(2000));
    c.etcd.start();
    let down = stopped_at.elapsed();
    eprintln!("etcd was down for {down:?}");
    // Longer than the leader trusts a lease it cannot renew (ttl - safety margin = 2 s): only
    // the failsafe (the other members confirming the leader over REST) keeps it primary.
    assert!(down > Duration::from_millis(2000), "{down:?}");
    // Long enough for a lease that was not renewed to have expired, and for any reaction.
    let attempts = writers.finish_after(TTL + LOOP_WAIT * 2, &run.rt);
    let refused: Vec<u128> = attempts
        .iter()
        .filter(|a| !a.ok)
        .map(|a| a.start.duration_since(stopped_at).as_millis())
        .collect();
    assert_eq!(
        c.wait_converged(Duration::from_secs(20)),
        leader,
        "the leader changed"
    );
    assert!(
        refused.is_empty(),
        "writes on {leader} were refused at {refused:?} ms after etcd stopped (demoted)"
    );
    assert_eq!(
        sql(&run.rt, &c.agents[li], q_start).unwrap(),
        started_before,
        "restarted"
    );
    assert_eq!(
        sql(&run.rt, &c.agents[li], q_tl).unwrap(),
        timeline_before,
        "new timeline"
    );
    let history = c.history();
    assert_eq!(
        history.len(),
        history_before,
        "new history entries: {history:?}"
    );
    let outage: Vec<String> = c.agents[li]
        .log()
        .lines()
        .filter(|l| l.contains("store") || l.contains("failsafe") || l.contains("etcd"))
        .map(str::to_string)
        .collect();
    eprintln!("{leader} during the outage:\n{}", outage.join("\n"));
    run.took("d");
}
