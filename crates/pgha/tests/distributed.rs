//! Distributed mode end to end (issue 3): real etcd, real PostgreSQL, three `pgha agent`
//! processes on loopback. Bootstrap in any order, a node crash, the leader's link to etcd cut
//! (a severable relay), etcd restarted under the cluster, and bad input.
//!
//! The tests of this file run one at a time (a 2-core machine runs one 3-member cluster well);
//! every process is cleaned up by pid, also when a test fails (see `common/dist.rs`).

#[path = "common/dist.rs"]
mod dist;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dist::*;
use pgha_testkit::{serial, try_connect};
use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::Value;

// TTL, LOOP_WAIT and SAFETY_MARGIN: the test clusters' (see `dist::node_config`).

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

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

async fn connect(conninfo: &str) -> Option<tokio_postgres::Client> {
    try_connect(conninfo, Duration::from_secs(2)).await
}

/// The first column of the first row of `sql` as text, on `agent`'s PostgreSQL.
fn sql(rt: &tokio::runtime::Runtime, agent: &Agent, query: &str) -> Option<String> {
    rt.block_on(async {
        let client = connect(&agent.conninfo()).await?;
        let msgs = client.simple_query(query).await.ok()?;
        msgs.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
    })
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

/// Waits (40 s at most) until agent `i` streams as a standby, then until the cluster converges
/// (20 s at most): returns the leader.
fn wait_rejoined(c: &DistCluster, i: usize) -> String {
    wait_until(
        &format!("{} streaming as a standby again", c.agents[i].name),
        Duration::from_secs(40),
        || c.agents[i].is_streaming_replica().then_some(()),
    );
    c.wait_converged(Duration::from_secs(20))
}

/// One write attempt: which member, when it was sent and when it came back, and whether it
/// committed.
#[derive(Clone, Debug)]
struct Attempt {
    member: String,
    start: Instant,
    end: Instant,
    ok: bool,
}

/// Tries a write on each given member every `every`, on a connection kept open (re-opened when
/// it breaks) with a short statement timeout, and records every attempt.
struct Writers {
    attempts: Arc<Mutex<Vec<Attempt>>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Writers {
    fn start(rt: &tokio::runtime::Runtime, members: &[&Agent], every: Duration) -> Writers {
        let attempts: Arc<Mutex<Vec<Attempt>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = members
            .iter()
            .map(|a| {
                let (name, conninfo) = (a.name.clone(), a.conninfo());
                let (attempts, stop) = (attempts.clone(), stop.clone());
                rt.spawn(async move {
                    let insert = format!("INSERT INTO pgha_probe(member) VALUES ('{name}')");
                    let mut client: Option<tokio_postgres::Client> = None;
                    let mut tick = tokio::time::interval(every);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    while !stop.load(Ordering::SeqCst) {
                        tick.tick().await;
                        if client.as_ref().is_none_or(|c| c.is_closed()) {
                            client = None;
                            if let Some(c) = connect(&conninfo).await {
                                if c.simple_query("SET statement_timeout = 300").await.is_ok() {
                                    client = Some(c);
                                }
                            }
                        }
                        let start = Instant::now();
                        let ok = match &client {
                            Some(c) => matches!(
                                tokio::time::timeout(
                                    Duration::from_millis(500),
                                    c.simple_query(&insert)
                                )
                                .await,
                                Ok(Ok(_))
                            ),
                            None => false,
                        };
                        let end = Instant::now();
                        attempts.lock().unwrap().push(Attempt {
                            member: name.clone(),
                            start,
                            end,
                            ok,
                        });
                    }
                })
            })
            .collect();
        Writers {
            attempts,
            stop,
            tasks,
        }
    }

    fn snapshot(&self) -> Vec<Attempt> {
        self.attempts.lock().unwrap().clone()
    }

    fn first_ok(&self, member: &str, after: Instant) -> Option<Instant> {
        self.snapshot()
            .iter()
            .filter(|a| a.ok && a.member == member && a.start >= after)
            .map(|a| a.start)
            .min()
    }

    /// Waits (30 s at most) until a member other than `old` commits a write sent at `after` or
    /// later: which member, and when its first such write was sent.
    fn await_another_writer(&self, old: &str, after: Instant) -> (String, Instant) {
        wait_until(
            "another member taking writes",
            Duration::from_secs(30),
            || {
                self.snapshot()
                    .iter()
                    .filter(|a| a.ok && a.member != old && a.start >= after)
                    .min_by_key(|a| a.start)
                    .map(|a| (a.member.clone(), a.start))
            },
        )
    }

    /// Lets the writers write for `linger` more, stops them and returns every attempt.
    fn finish_after(self, linger: Duration, rt: &tokio::runtime::Runtime) -> Vec<Attempt> {
        std::thread::sleep(linger);
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            let _ = rt.block_on(t);
        }
        let v = self.attempts.lock().unwrap().clone();
        v
    }
}

/// Panics if two members committed writes in overlapping windows, or if writes ever went
/// back and forth between members (A, then B, then A again).
fn assert_one_writer(attempts: &[Attempt], origin: Instant) {
    let mut ok: Vec<&Attempt> = attempts.iter().filter(|a| a.ok).collect();
    ok.sort_by_key(|a| a.start);
    let ms = |t: Instant| t.duration_since(origin).as_millis() as i64;
    for (i, a) in ok.iter().enumerate() {
        for b in &ok[i + 1..] {
            if a.member != b.member && a.start <= b.end && b.start <= a.end {
                panic!(
                    "two writers at once: {} committed in [{}, {}] ms and {} in [{}, {}] ms",
                    a.member,
                    ms(a.start),
                    ms(a.end),
                    b.member,
                    ms(b.start),
                    ms(b.end)
                );
            }
        }
    }
    let mut order: Vec<&str> = Vec::new();
    for a in &ok {
        if order.last() != Some(&a.member.as_str()) {
            assert!(
                !order.contains(&a.member.as_str()),
                "writes went back to {} after another member took writes: {order:?}",
                a.member
            );
            order.push(&a.member);
        }
    }
}

fn history_kinds(c: &DistCluster, kind: &str) -> Vec<Value> {
    c.history()
        .into_iter()
        .filter(|e| e["kind"] == kind)
        .collect()
}

// ---------------------------------------------------------------------------------------------

/// (a) Agents started in a shuffled order with small random delays bootstrap exactly once;
/// then the REST API, `pgha status --config`, and a second start that must not initdb again.
#[test]
fn bootstrap_in_any_order_rest_and_status() {
    let _serial = serial();
    let rt = runtime();
    let mut c = DistCluster::prepare(&Options::default());
    c.etcd.start();
    let mut order: Vec<usize> = (0..c.agents.len()).collect();
    order.shuffle(&mut rand::thread_rng());
    let started = Instant::now();
    for &i in &order {
        std::thread::sleep(Duration::from_millis(rand::thread_rng().gen_range(0..400)));
        c.agents[i].start();
    }
    let leader = c.wait_converged(Duration::from_secs(60));
    eprintln!(
        "bootstrap (start order {:?}) converged in {:.1} s, leader {leader}",
        order.iter().map(|&i| &c.agents[i].name).collect::<Vec<_>>(),
        started.elapsed().as_secs_f64()
    );

    // Exactly one bootstrap, by the leader; the others cloned from it.
    let boots = history_kinds(&c, "bootstrap");
    assert_eq!(boots.len(), 1, "history: {:?}", c.history());
    assert_eq!(boots[0]["to"], leader.as_str(), "{boots:?}");
    let bootstrapped: Vec<&str> = c
        .agents
        .iter()
        .filter(|a| a.log().contains("starting Bootstrap"))
        .map(|a| a.name.as_str())
        .collect();
    assert_eq!(
        bootstrapped,
        [leader.as_str()],
        "only the leader runs initdb"
    );
    let ids: Vec<String> = c
        .agents
        .iter()
        .map(|a| {
            sql(
                &rt,
                a,
                "SELECT system_identifier::text FROM pg_control_system()",
            )
            .unwrap()
        })
        .collect();
    assert!(
        ids.iter().all(|id| id == &ids[0]),
        "system identifiers {ids:?}"
    );

    // REST: health checks.
    for a in &c.agents {
        let primary = a.get("/primary").unwrap().0;
        let replica = a.get("/replica").unwrap().0;
        let health = a.get("/health").unwrap().0;
        if a.name == leader {
            assert_eq!((primary, replica), (200, 503), "{} is the leader", a.name);
        } else {
            assert_eq!((primary, replica), (503, 200), "{} streams", a.name);
            assert_eq!(a.get("/replica?lag=104857600").unwrap().0, 200);
        }
        assert_eq!(health, 200, "{}", a.name);
        let (code, metrics) = a.get("/metrics").unwrap();
        assert_eq!(code, 200);
        let expected = format!(
            "pgha_member_is_leader{{member=\"{}\"}} {}",
            a.name,
            u8::from(a.name == leader)
        );
        assert!(metrics.contains(&expected), "{metrics}");
        // Issue 14: member metrics at parity with what a DBA alerts on.
        let n = &a.name;
        let standby = u8::from(a.name != leader);
        for sample in [
            format!("pgha_member_streaming{{member=\"{n}\"}} {standby}"),
            format!("pgha_member_in_recovery{{member=\"{n}\"}} {standby}"),
            format!("pgha_member_store_reachable{{member=\"{n}\"}} 1"),
            format!("pgha_member_timeline{{member=\"{n}\"}} 1"),
            format!("pgha_member_postgresql_major{{member=\"{n}\"}} 15"),
            "pgha_cluster_paused 0".to_string(),
        ] {
            assert!(metrics.contains(&sample), "{sample} missing:\n{metrics}");
        }
        if a.name != leader {
            assert!(
                metrics.contains("pgha_member_replay_lag_bytes{"),
                "{metrics}"
            );
        }
    }
    // Issue 14: the checks HAProxy and Kubernetes send. OPTIONS and HEAD answer as GET does;
    // /read-only and /readiness take the primary and the streaming standbys; /liveness only
    // needs the agent stepping; in asynchronous mode every standby is /async, none /sync.
    for a in &c.agents {
        let leads = a.name == leader;
        let code = |method: &str, path: &str| {
            pgha_testkit::http(method, &a.api, path, None, None)
                .unwrap()
                .0
        };
        let role = |ok: bool| if ok { 200 } else { 503 };
        assert_eq!(code("OPTIONS", "/primary"), role(leads), "{}", a.name);
        assert_eq!(code("OPTIONS", "/replica"), role(!leads), "{}", a.name);
        assert_eq!(code("HEAD", "/primary"), role(leads), "{}", a.name);
        for path in ["/read-only", "/readiness", "/liveness"] {
            assert_eq!(code("GET", path), 200, "{} {path}", a.name);
        }
        assert_eq!(code("GET", "/async"), role(!leads), "{}", a.name);
        assert_eq!(code("GET", "/sync"), 503, "{}", a.name);
        assert_eq!(code("GET", "/read-only?lag=x"), 400, "{}", a.name);
    }
    // Lag bounds read units, and one that does not parse is refused, not read as no bound.
    let standby = c.agents.iter().find(|a| a.name != leader).unwrap();
    assert_eq!(standby.get("/replica?lag=100MB").unwrap().0, 200);
    assert_eq!(standby.get("/replica?lag=16furlongs").unwrap().0, 400);

    // Issue 11: health checks answer from the agent's last observation; 1,000 of them within
    // about a second do not raise the leader's PostgreSQL connection count.
    let count_sql =
        "SELECT count(*)::text FROM pg_stat_activity WHERE backend_type = 'client backend'";
    let leader_agent = c.agent(&leader);
    let before: u64 = sql(&rt, leader_agent, count_sql).unwrap().parse().unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let peak = std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut peak = 0u64;
            while !done.load(Ordering::Relaxed) {
                if let Some(n) = sql(&rt, leader_agent, count_sql) {
                    peak = peak.max(n.parse().unwrap());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            peak
        });
        let started = Instant::now();
        let callers: Vec<_> = (0..4)
            .map(|t| {
                scope.spawn(move || {
                    for i in 0..250 {
                        let path = ["/health", "/primary", "/replica", "/metrics"][(i + t) % 4];
                        let code = leader_agent.get(path).map(|r| r.0);
                        let want = if path == "/replica" { 503 } else { 200 };
                        assert_eq!(code, Some(want), "{path} on the leader");
                    }
                })
            })
            .collect();
        for caller in callers {
            caller.join().unwrap();
        }
        eprintln!("1000 health checks in {:?}", started.elapsed());
        done.store(true, Ordering::Relaxed);
        sampler.join().unwrap()
    });
    assert!(
        peak <= before + 1,
        "health checks opened PostgreSQL connections: {before} before, {peak} at most during"
    );

    let cluster = c.cluster_json().unwrap();
    assert_eq!(cluster["leader"], leader.as_str());
    assert_eq!(
        cluster["members"].as_object().unwrap().len(),
        3,
        "{cluster}"
    );

    // REST: mutating endpoints need the token.
    let api = &c.agents[0].api;
    for path in [
        "/switchover",
        "/failover",
        "/pause",
        "/resume",
        "/config",
        "/failsafe",
    ] {
        for token in [None, Some("wrong")] {
            let (code, body) = http("POST", api, path, token, Some("{}")).unwrap();
            assert_eq!(code, 401, "POST {path} with token {token:?}: {body}");
        }
    }
    let (code, body) = http("POST", api, "/pause", Some(API_TOKEN), None).unwrap();
    assert_eq!(code, 200, "{body}");
    assert_eq!(c.cluster_json().unwrap()["config"]["paused"], true);
    let (code, body) = http("POST", api, "/resume", Some(API_TOKEN), None).unwrap();
    assert_eq!(code, 200, "{body}");
    assert_eq!(c.cluster_json().unwrap()["config"]["paused"], false);

    // pgha status --config shows the three members.
    let status = c.status_json();
    let names: Vec<&str> = status["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 3, "{status}");
    for a in &c.agents {
        assert!(names.contains(&a.name.as_str()), "{status}");
    }
    assert_eq!(status["leader"], leader.as_str(), "{status}");
    let text = c.cli_ok(&["status"]);
    for a in &c.agents {
        assert!(text.contains(&a.name), "{text}");
    }
    c.cli_ok(&["history"]);

    // A second start of the agent that ran initdb does not initdb again.
    let i = c.index(&leader);
    c.agents[i].terminate(Duration::from_secs(30));
    c.agents[i].start();
    wait_rejoined(&c, i);
    let second_run = c.agents[i].log();
    assert!(
        !second_run.contains("Bootstrap"),
        "second start bootstrapped again:\n{second_run}"
    );
    assert_eq!(history_kinds(&c, "bootstrap").len(), 1, "{:?}", c.history());
    let id = sql(
        &rt,
        &c.agents[i],
        "SELECT system_identifier::text FROM pg_control_system()",
    );
    assert_eq!(id.as_deref(), Some(ids[0].as_str()));
    eprintln!("test (a) took {:.1} s", started.elapsed().as_secs_f64());
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

/// (e) etcd unreachable at start: a clear retry message and no initdb until etcd answers, then
/// a bootstrap. A member whose data directory belongs to another cluster is refused, and the
/// directory is left as it was.
#[test]
fn etcd_unreachable_at_start_then_foreign_data_directory_refused() {
    let _serial = serial();
    let t = Instant::now();
    let one = Options {
        members: 1,
        cluster: "late".into(),
        ..Options::default()
    };
    let mut late = DistCluster::prepare(&one);
    late.agents[0].start();
    wait_until("a retry message", Duration::from_secs(10), || {
        let log = late.agents[0].log();
        (log.contains("unreachable") && log.contains("retrying")).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        late.agents[0].exited().is_none(),
        "the agent gave up: {}",
        late.agents[0].log()
    );
    assert!(
        !late.agents[0].data_dir().exists(),
        "data directory created while etcd was unreachable"
    );
    let msg = late.agents[0].log();
    assert!(
        msg.contains(&late.etcd.endpoint()),
        "the message names the endpoint: {msg}"
    );
    late.etcd.start();
    wait_until(
        "the bootstrap once etcd is up",
        Duration::from_secs(30),
        || late.agents[0].is_primary().then_some(()),
    );
    wait_until(
        "the bootstrap in the history",
        Duration::from_secs(10),
        || (history_kinds(&late, "bootstrap").len() == 1).then_some(()),
    );
    late.agents[0].terminate(Duration::from_secs(30));

    // Another cluster, bootstrapped; then one of its members pointed at `late`'s data.
    let mut other = DistCluster::start(&Options {
        members: 1,
        ..Options::default()
    });
    other.agents[0].terminate(Duration::from_secs(30));
    let foreign = late.agents[0].dir.clone();
    let data = late.agents[0].data_dir();
    let before = dir_fingerprint(&data);
    let config = std::fs::read_to_string(&other.agents[0].config).unwrap();
    let moved = config.replace(
        &format!("dir = \"{}\"", other.agents[0].dir.display()),
        &format!("dir = \"{}\"", foreign.display()),
    );
    assert_ne!(config, moved);
    std::fs::write(&other.agents[0].config, moved).unwrap();
    other.agents[0].start();
    let status = other.agents[0]
        .wait_exit(Duration::from_secs(20))
        .expect("the agent must refuse and exit");
    let log = other.agents[0].log();
    assert!(!status.success(), "{log}");
    assert!(log.contains("belongs to another cluster"), "{log}");
    assert!(
        log.contains(&data.display().to_string()),
        "the error names the directory: {log}"
    );
    assert_eq!(
        dir_fingerprint(&data),
        before,
        "the foreign data directory was changed"
    );
    assert!(
        late.agents[0].postmaster_pid().is_none(),
        "PostgreSQL was started on it"
    );
    eprintln!("test (e) took {:.1} s", t.elapsed().as_secs_f64());
}

/// Every file under `dir` with its size and modification time.
fn dir_fingerprint(dir: &std::path::Path) -> BTreeMap<String, (u64, std::time::SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            }
            out.insert(
                e.path().display().to_string(),
                (m.len(), m.modified().unwrap()),
            );
        }
    }
    out
}

/// (e) Config errors name the key and the file, for the agent and the CLI.
#[test]
fn config_errors_name_the_key_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets.toml");
    std::fs::write(
        &secrets,
        "superuser_password = \"a\"\nreplication_password = \"b\"\n",
    )
    .unwrap();
    std::fs::set_permissions(
        &secrets,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let good = node_config(
        "demo",
        "http://127.0.0.1:1",
        "node1",
        &dir.path().join("node1"),
        25431,
        "127.0.0.1:28001",
        &secrets,
        26432,
        26433,
    );
    let cases: &[(&str, &str, &str)] = &[
        ("name = \"node1\"", "name = \"Node 1\"", "member.name"),
        ("port = 25431", "port = \"x\"", "port"),
        (
            "host = \"127.0.0.1\"",
            "host = \"127.0.0.1\"\ncolour = \"red\"",
            "colour",
        ),
        ("ttl_ms = 3000", "ttl_ms = 10", "ttl_ms"),
        (
            "endpoints = [\"http://127.0.0.1:1\"]",
            "endpoints = []",
            "etcd.endpoints",
        ),
        (
            "api = \"127.0.0.1:28001\"",
            "api = \"localhost\"",
            "member.api",
        ),
        (
            "rw_listen = \"127.0.0.1:26432\"",
            "rw_listen = \"nowhere\"",
            "proxy.rw_listen",
        ),
    ];
    for (i, (from, to, key)) in cases.iter().enumerate() {
        let text = good.replacen(from, to, 1);
        assert_ne!(text, good, "case {key}");
        let file = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&file, text).unwrap();
        for args in [vec!["agent"], vec!["status"]] {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_pgha"))
                .args(&args)
                .arg("--config")
                .arg(&file)
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{args:?} accepted {key}: {err}");
            assert!(
                err.contains(key) && err.contains(&file.display().to_string()),
                "pgha {args:?}: the error should name {key} and {}: {err}",
                file.display()
            );
        }
    }
    // A missing secrets file is named too.
    let file = dir.path().join("nosecrets.toml");
    std::fs::write(&file, good.replace("secrets.toml", "missing.toml")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pgha"))
        .args(["agent", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("missing.toml"),
        "{err}"
    );
}

/// `[watchdog] mode = "required"` on a host without a usable device: the member says why and
/// is never promoted (as Patroni's required mode), even when the leader's node crashes.
#[test]
fn a_required_watchdog_that_cannot_open_keeps_the_member_from_being_promoted() {
    let _serial = serial();
    let mut c = DistCluster::prepare(&Options {
        members: 2,
        ..Options::default()
    });
    // A one-second watchdog needs a safety margin of at least two seconds.
    for a in &c.agents {
        let text = std::fs::read_to_string(&a.config).unwrap();
        let text = text.replace("safety_margin_ms = 1000", "safety_margin_ms = 2000");
        std::fs::write(&a.config, text).unwrap();
    }
    let mut text = std::fs::read_to_string(&c.agents[1].config).unwrap();
    text.push_str("[watchdog]\nmode = \"required\"\ndevice = \"/nonexistent/watchdog\"\n");
    std::fs::write(&c.agents[1].config, text).unwrap();
    c.etcd.start();
    c.agents[0].start();
    wait_until("node1 primary", Duration::from_secs(60), || {
        c.agents[0].is_primary().then_some(())
    });
    c.agents[1].start();
    c.wait_converged(Duration::from_secs(60));
    let log = c.agents[1].log();
    assert!(
        log.contains("watchdog required but unusable") && log.contains("/nonexistent/watchdog"),
        "node2 must say why it will not be promoted:\n{log}"
    );
    let cluster = c.cluster_json().expect("GET /cluster");
    assert!(
        cluster.to_string().contains("\"nofailover\":true"),
        "node2 is published as not promotable: {cluster}"
    );
    c.agents[0].crash();
    // Three ttls (3 s each) later node2 has still not been promoted.
    let until = Instant::now() + Duration::from_secs(9);
    while Instant::now() < until {
        assert!(
            !c.agents[1].is_primary(),
            "node2 promoted without its watchdog"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        c.agents[1].log().contains("nofailover") || c.agents[1].log().contains("not eligible"),
        "node2 says why it does not take over:\n{}",
        c.agents[1].log()
    );
}

/// How the agent binary is upgraded without a failover (docs/design.md): in maintenance mode
/// a stopped agent leaves PostgreSQL running (its supervisor disarmed, nobody takes over), and
/// the agent started again within the ttl adopts the running primary and its leader key. In
/// strict synchronous mode, the restarted agent keeps PostgreSQL's synchronous standby list
/// (it once rewrote the configuration from its empty memory: asynchronous until resumed).
#[test]
fn paused_leader_agent_restarts_without_touching_postgresql() {
    let _serial = serial();
    let rt = runtime();
    let mut c = DistCluster::start(&Options::default());
    let leader = c.wait_converged(Duration::from_secs(60));
    c.cli_ok(&["config", "set", "synchronous_mode=strict"]);
    let sync_names = |c: &DistCluster| {
        sql(&rt, c.agent(&leader), "SHOW synchronous_standby_names").unwrap_or_default()
    };
    let applied = wait_until(
        "the leader to apply a synchronous standby list",
        Duration::from_secs(30),
        || {
            let names = sync_names(&c);
            (names.starts_with("FIRST") || names.starts_with("ANY")).then_some(names)
        },
    );
    let pm = c
        .agent(&leader)
        .postmaster_pid()
        .expect("leader postmaster");
    c.cli_ok(&["pause"]);
    std::thread::sleep(Duration::from_secs(1));
    c.agent_mut(&leader).terminate(Duration::from_secs(20));
    assert!(
        c.agent(&leader).log().contains("PostgreSQL keeps running"),
        "{}",
        c.agent(&leader).log()
    );
    // A binary swap: back within the ttl (3 s); nothing is fenced meanwhile.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        c.agent(&leader).postmaster_pid(),
        Some(pm),
        "PostgreSQL was stopped with its agent in maintenance mode"
    );
    assert!(
        c.primaries().is_empty(),
        "another member took over while paused"
    );
    c.agent_mut(&leader).start();
    wait_until(
        "the restarted agent to lead again",
        Duration::from_secs(30),
        || c.agent(&leader).is_primary().then_some(()),
    );
    assert_eq!(
        c.agent(&leader).postmaster_pid(),
        Some(pm),
        "PostgreSQL was restarted"
    );
    // A few loops of the adopted agent, still paused (nothing would set the list again).
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        sync_names(&c),
        applied,
        "the restarted agent changed synchronous_standby_names:\n{}",
        c.agent(&leader).log()
    );
    c.cli_ok(&["resume"]);
    assert_eq!(c.wait_converged(Duration::from_secs(30)), leader);
    assert!(
        history_kinds(&c, "failover").is_empty(),
        "no failover: {:?}",
        c.history()
    );
    assert_eq!(c.agent(&leader).postmaster_pid(), Some(pm));
}

/// `pgha pause`, then waits until the leader's supervisor is disarmed (its lease file empty).
fn pause_until_unfenced(c: &DistCluster, leader: &str) {
    let lease_file = c.agent(leader).dir.with_extension("lease");
    c.cli_ok(&["pause"]);
    wait_until(
        "the paused leader's fencing to go off",
        Duration::from_secs(10),
        || {
            let text = std::fs::read_to_string(&lease_file).unwrap_or_default();
            text.trim().is_empty().then_some(())
        },
    );
}

/// Every member's name but `leader`'s.
fn others_than(c: &DistCluster, leader: &str) -> Vec<String> {
    c.agents
        .iter()
        .map(|a| a.name.clone())
        .filter(|n| n != leader)
        .collect()
}

/// Found by review (2026-12-03): maintenance mode disarms the leader's supervisor, so a leader
/// whose agent died while paused (a new binary that does not start, in the upgrade recipe)
/// kept a writable PostgreSQL with nothing to fence it once its lease lapsed, and `pgha
/// resume` let another member take over beside it: two writers. The paused leader marks its
/// position unfenced before its fencing goes off; resumed, nobody takes over from it (each
/// says why) until its agent is back and has demoted it.
#[test]
fn a_leader_whose_agent_died_while_paused_is_not_replaced_until_its_agent_is_back() {
    let _serial = serial();
    let rt = runtime();
    let mut c = DistCluster::start(&Options::default());
    let leader = c.wait_converged(Duration::from_secs(60));
    let writable = |c: &DistCluster, name: &str| {
        sql(&rt, c.agent(name), "SELECT pg_is_in_recovery()").as_deref() == Some("f")
    };
    pause_until_unfenced(&c, &leader);
    c.agent_mut(&leader).kill();
    std::thread::sleep(TTL + LOOP_WAIT * 2);
    assert!(writable(&c, &leader), "the unfenced primary stopped");
    c.cli_ok(&["resume"]);
    let others = others_than(&c, &leader);
    let until = Instant::now() + TTL * 3;
    while Instant::now() < until {
        for other in &others {
            assert!(
                !writable(&c, other),
                "{other} took over beside the unfenced {leader}:\n{}",
                c.logs(40)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let said = others.iter().any(|o| {
        c.agent(o)
            .log()
            .contains("led while the cluster was paused")
    });
    assert!(said, "nobody said why it waits:\n{}", c.logs(40));
    // Its agent back: it finds its lease gone, demotes, and the cluster has one leader again.
    c.agent_mut(&leader).start();
    let now_leading = c.wait_converged(Duration::from_secs(60));
    let writers: Vec<&String> = c
        .agents
        .iter()
        .map(|a| &a.name)
        .filter(|n| writable(&c, n))
        .collect();
    assert_eq!(writers, [&now_leading], "{}", c.logs(40));
}

/// Review of the unfenced mark (2026-12-03): `pgha stop` of a paused leader whose PostgreSQL
/// takes longer to stop than its lease lasts (its checkpointer stalled: a slow shutdown
/// checkpoint) found its key expired and left the mark behind, with its record deleted: after
/// `pgha resume` nobody took over. It clears the mark whether or not it still holds the key.
#[test]
fn a_paused_leader_stopped_slower_than_its_lease_leaves_no_mark_behind() {
    use nix::sys::signal::Signal;
    use pgha_testkit::{children_of, cmdline, signal};
    let _serial = serial();
    let c = DistCluster::start(&Options::default());
    let leader = c.wait_converged(Duration::from_secs(60));
    pause_until_unfenced(&c, &leader);
    let pm = c
        .agent(&leader)
        .postmaster_pid()
        .expect("leader postmaster");
    let checkpointer = children_of(pm)
        .into_iter()
        .find(|p| cmdline(*p).contains("checkpointer"))
        .expect("the leader's checkpointer");
    assert!(signal(checkpointer, Signal::SIGSTOP));
    let stopped = std::thread::scope(|s| {
        let stop = s.spawn(|| c.cli_as(&leader, &["stop", &leader]));
        std::thread::sleep(TTL + LOOP_WAIT * 2);
        signal(checkpointer, Signal::SIGCONT);
        stop.join().expect("pgha stop")
    });
    assert!(
        stopped.status.success(),
        "pgha stop: {}",
        String::from_utf8_lossy(&stopped.stderr)
    );
    c.cli_ok(&["resume"]);
    let others = others_than(&c, &leader);
    wait_until(
        "another member to take over after the resume",
        Duration::from_secs(30),
        || others.iter().any(|o| c.agent(o).is_primary()).then_some(()),
    );
}

/// SIGHUP to every agent (a logrotate script, a reload habit, the terminal an agent was
/// started from closing): each logs that it reads its configuration file only at start and
/// goes on. Before, the default disposition killed them where they stood: the leader's
/// PostgreSQL was fenced and another member took over.
#[test]
fn a_sighup_is_logged_and_changes_nothing() {
    let _serial = serial();
    let c = DistCluster::start(&Options::default());
    let leader = c.wait_converged(Duration::from_secs(60));
    let pm = c
        .agent(&leader)
        .postmaster_pid()
        .expect("leader postmaster");
    for a in &c.agents {
        let pid = a.pid().expect("agent running");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGHUP,
        )
        .expect("SIGHUP");
    }
    // Two ttls (3 s each): a dead leader's agent would have been replaced by then.
    std::thread::sleep(Duration::from_secs(7));
    let mut c = c;
    for i in 0..c.agents.len() {
        let a = &mut c.agents[i];
        assert_eq!(
            a.exited(),
            None,
            "{} exited on SIGHUP:\n{}",
            a.name,
            a.log()
        );
        assert!(
            a.log().contains("SIGHUP received and ignored"),
            "{}:\n{}",
            a.name,
            a.log()
        );
    }
    assert_eq!(c.wait_converged(Duration::from_secs(10)), leader);
    assert_eq!(
        c.agent(&leader).postmaster_pid(),
        Some(pm),
        "PostgreSQL restarted"
    );
    assert!(
        history_kinds(&c, "failover").is_empty(),
        "no failover: {:?}",
        c.history()
    );
}

/// etcd keeps every revision of every key until it is compacted, and refuses every write once
/// they fill its quota (`faults::etcd_out_of_space`); pgha's members make several revisions
/// a second. With `[etcd] history_retention_ms`, the agents compact what is older: revisions
/// older than it are gone within a few seconds, and the log says so.
#[test]
fn the_agents_compact_etcds_history_older_than_the_retention() {
    let _serial = serial();
    let mut c = DistCluster::prepare(&Options::default());
    for a in &c.agents {
        let config = std::fs::read_to_string(&a.config).unwrap();
        let config = config.replacen("[etcd]\n", "[etcd]\nhistory_retention_ms = 2000\n", 1);
        std::fs::write(&a.config, config).unwrap();
    }
    c.launch();
    c.wait_converged(Duration::from_secs(60));
    let etcd = format!("127.0.0.1:{}", c.etcd.client_port());
    // A range at revision 2 (the first pgha write) once the history before it is compacted.
    let compacted = |revision: u64| {
        let body = format!("{{\"key\":\"L3BnaGE=\",\"revision\":\"{revision}\"}}");
        pgha_testkit::http("POST", &etcd, "/v3/kv/range", None, Some(&body))
            .is_some_and(|(_, answer)| answer.contains("compacted"))
    };
    let gone = pgha_testkit::poll(Duration::from_secs(20), Duration::from_millis(250), || {
        compacted(2).then_some(())
    });
    assert!(
        gone.is_some(),
        "etcd's first revisions are still there\n{}",
        c.logs(20)
    );
    let said = c.whole_logs();
    assert!(
        said.contains("etcd's history older than 2 s compacted"),
        "{}",
        c.logs(20)
    );
    // What was written within the retention is kept.
    let body = "{\"key\":\"L3BnaGE=\"}";
    let (_, now) = pgha_testkit::http("POST", &etcd, "/v3/kv/range", None, Some(body)).unwrap();
    let now: Value = serde_json::from_str(&now).unwrap();
    let now: u64 = now["header"]["revision"].as_str().unwrap().parse().unwrap();
    assert!(!compacted(now), "the current revision was compacted");
}
