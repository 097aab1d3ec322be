//! (a) Bootstrap in any order, then the REST API, `pgha status` and a second start.

use super::*;

use rand::seq::SliceRandom;
use rand::Rng;

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
