//! Where sessions go: each listener's targets, holds without a primary, leader changes, standbys.

use super::*;

#[tokio::test]
async fn queries_through_rw_and_ro_listeners() {
    let c = cluster();
    let p = TestProxy::start(c.targets(), |_| {}).await;
    let (rw, _ro) = rw_and_ro_sessions(&p).await;
    rw.batch_execute("create temp table t(x int); insert into t values (1)")
        .await
        .unwrap();
    let snap = p.metrics.snapshot();
    let rws = snap.listener("rw").unwrap();
    assert_eq!(rws.active, 1);
    assert!(rws.bytes_in > 0 && rws.bytes_out > 0);
    assert_eq!(snap.listener("ro").unwrap().total, 1);
    let text = p.metrics.render_prometheus();
    assert!(
        text.contains("pgha_proxy_connections_active{listener=\"rw\"} 1\n"),
        "{text}"
    );
}

#[tokio::test]
async fn holds_while_no_primary_then_releases() {
    let c = cluster();
    let p = TestProxy::without_primary(Duration::from_secs(20)).await;
    let started = Instant::now();
    let pending = tokio::spawn(connect(p.rw));
    eventually("a held connection", Duration::from_secs(10), || {
        p.metrics.snapshot().listener("rw").unwrap().held == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !pending.is_finished(),
        "must wait while there is no primary"
    );
    p.set(|t| t.rw = Some(c.primary()));
    let client = pending
        .await
        .unwrap()
        .expect("released once a primary appears");
    assert!(!in_recovery(&client).await);
    assert!(started.elapsed() < Duration::from_secs(10));
    let s = p.metrics.snapshot();
    let rw = s.listener("rw").unwrap();
    assert_eq!((rw.held, rw.held_total), (0, 1));
    assert!(rw.hold_seconds_total >= 0.2, "{rw:?}");
}

#[tokio::test]
async fn hold_timeout_gives_error_response() {
    let logs = pgha_testkit::CapturedLogs::start();
    let _ = cluster();
    // sessions on this thread: their log lines are captured
    let p = TestProxy::start(Targets::none(), |cfg| {
        cfg.hold_timeout = Duration::from_millis(400);
        cfg.worker_threads = 0;
    })
    .await;
    let started = Instant::now();
    let err = connect(p.rw).await.expect_err("no primary: must fail");
    let db = err.as_db_error().expect("an ErrorResponse, not a reset");
    assert_eq!(db.code(), &SqlState::CANNOT_CONNECT_NOW);
    assert_eq!(db.code().code(), wire::SQLSTATE_NO_TARGET);
    assert!(
        db.message().contains("no primary available"),
        "{}",
        db.message()
    );
    assert_eq!(db.severity(), "FATAL");
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(
        p.metrics.snapshot().listener("rw").unwrap().hold_timeouts,
        1
    );
    // said in the log, at most every 10 s (each one counted)
    connect(p.rw).await.expect_err("still no primary");
    assert_eq!(
        p.metrics.snapshot().listener("rw").unwrap().hold_timeouts,
        2
    );
    let out = logs.take();
    assert_eq!(
        out.matches("a session refused: no primary available")
            .count(),
        1,
        "{out}"
    );
}

#[tokio::test]
async fn leader_change_closes_old_sessions() {
    let c = cluster();
    let p = TestProxy::start(c.targets(), |_| {}).await;
    let (old, ro) = rw_and_ro_sessions(&p).await;
    // Pretend the standby became the leader.
    p.set(|t| {
        t.rw = Some(c.standby());
        t.ro.clear();
    });
    eventually("old rw session closed", Duration::from_secs(5), || {
        old.is_closed()
    })
    .await;
    assert!(old.simple_query("select 1").await.is_err());
    // The ro session was on the standby, which is now the rw target: closed too.
    eventually(
        "ro session on the promoted standby closed",
        Duration::from_secs(5),
        || ro.is_closed(),
    )
    .await;
    // A standby it is, in fact: new read-write sessions there are refused (see
    // `a_read_write_session_that_reaches_a_standby_is_refused_in_its_startup`). Another change:
    let err = connect(p.rw)
        .await
        .expect_err("a read-write session on a standby");
    assert_eq!(err.code(), Some(&SqlState::CANNOT_CONNECT_NOW), "{err}");
    p.set(|t| t.rw = Some(c.primary()));
    let new = connect(p.rw).await.unwrap();
    assert!(
        !in_recovery(&new).await,
        "new sessions go to the new target"
    );
    // Primary withdrawn: sessions to it close as well.
    p.set(|t| t.rw = None);
    eventually(
        "session closed when rw becomes None",
        Duration::from_secs(5),
        || new.is_closed(),
    )
    .await;
    assert!(
        p.metrics
            .snapshot()
            .listener("rw")
            .unwrap()
            .closed_on_change
            >= 2
    );
}

/// I2 at the session itself: the read-write target the proxy routes by may be stale (the
/// primary was demoted since it was last confirmed, and the news has not arrived). PostgreSQL
/// 14+ reports `in_hot_standby` in its answer to the startup: the proxy refuses a read-write
/// session whose backend says `on` before the client can use it (57P03, "connect again"), for
/// tokio-postgres and psql alike; the read-only listener still serves that standby.
#[tokio::test]
async fn a_read_write_session_that_reaches_a_standby_is_refused_in_its_startup() {
    let c = cluster();
    let p = TestProxy::start(c.targets(), |_| {}).await;
    p.set(|t| t.rw = Some(c.standby()));
    let err = connect(p.rw)
        .await
        .expect_err("a read-write session on a standby");
    let db = err.as_db_error().expect("an ErrorResponse");
    assert_eq!(db.code(), &SqlState::CANNOT_CONNECT_NOW, "{db:?}");
    assert!(db.message().contains("in recovery"), "{}", db.message());
    let out = psql_run(&c.bin, &conninfo(p.rw), &["-Atc", "select 1"]).await;
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "psql got a session: {said}");
    assert!(said.contains("the primary changed"), "{said}");
    let ro = connect(p.ro).await.unwrap();
    assert!(in_recovery(&ro).await, "the standby still serves reads");
    // Once the routing is right again, sessions go through.
    p.set(|t| t.rw = Some(c.primary()));
    let rw = connect(p.rw).await.unwrap();
    assert!(!in_recovery(&rw).await);
}

/// Found by review: the read-only listener's standbys may be stale too (one was promoted since
/// it was last checked, and the prober's round that drops it is still under way): such a
/// session was served by the new primary, writable, even with `ro_fallback_to_primary` off.
/// A read-only session sent to a standby whose startup answer says `in_hot_standby = off` is
/// refused before the client can use it (57P03, "connect again"), for tokio-postgres and psql
/// alike; the same primary still serves a read-only session chosen as the fallback, and a real
/// standby read-only sessions.
#[tokio::test]
async fn a_read_only_session_sent_to_a_standby_that_became_a_primary_is_refused_in_its_startup() {
    let c = cluster();
    let p = TestProxy::start(c.targets(), |cfg| cfg.ro_fallback_to_primary = false).await;
    let promoted = pgha_proxy::Standby {
        backend: c.primary(),
        lag_bytes: Some(0),
        streaming: true,
    };
    // The leader changed: the write target is withdrawn, the read-only list not yet redone.
    p.set(|t| {
        t.rw = None;
        t.ro = vec![promoted.clone()];
    });
    let err = connect(p.ro)
        .await
        .expect_err("a read-only session on a primary");
    let db = err.as_db_error().expect("an ErrorResponse");
    assert_eq!(db.code(), &SqlState::CANNOT_CONNECT_NOW, "{db:?}");
    assert!(db.message().contains("was promoted"), "{}", db.message());
    let out = psql_run(&c.bin, &conninfo(p.ro), &["-Atc", "select 1"]).await;
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "psql got a session: {said}");
    assert!(said.contains("was promoted"), "{said}");
    // Chosen as the fallback, the primary serves read-only sessions as before.
    let f = TestProxy::start(Targets::primary(c.primary()), |cfg| {
        cfg.ro_fallback_to_primary = true
    })
    .await;
    assert!(!in_recovery(&connect(f.ro).await.unwrap()).await);
    // Once the routing is right again, sessions go through.
    p.set(|t| t.ro = vec![c.standby_target(Some(0))]);
    assert!(in_recovery(&connect(p.ro).await.unwrap()).await);
}

/// Starts a prober of `p`'s targets, guarded by `p`'s stall watch, checking `c`'s primary and
/// standby every 30 s: after its first round only a check asked for comes sooner. Keep the
/// sender it answers (the candidates) for as long as the prober should run.
fn probe_every_30_s(p: &TestProxy, c: &Cluster) -> tokio::sync::watch::Sender<Candidates> {
    let stalls = p.stalls.clone().expect("guarded");
    let mut cfg = ProberConfig::new("postgres");
    cfg.interval = Duration::from_secs(30);
    let (sender, candidates) = tokio::sync::watch::channel(Candidates {
        leader: Some(member(c.primary())),
        standbys: vec![member(c.standby())],
    });
    let prober = Prober::new(cfg).with_stalls(stalls);
    tokio::spawn(prober.run(candidates, p.targets.clone(), p.shutdown.clone()));
    sender
}

/// After a read-write session met a standby where the confirmed primary was (demoted since
/// its last check), the next sessions wait for a check begun after that, which the prober
/// makes at once, and reach the primary; before, each was refused like the first until the
/// prober's next round (here 30 s away).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_session_met_a_standby_the_next_ones_wait_for_a_fresh_check() {
    let c = cluster();
    let p = TestProxy::start_guarded(Targets::none(), |cfg| {
        cfg.hold_timeout = Duration::from_secs(20);
    })
    .await;
    let _candidates = probe_every_30_s(&p, c);
    let primary = c.primary();
    let mut targets = p.targets.subscribe();
    // The prober's first round over: the primary and the standby both checked.
    tokio::time::timeout(
        Duration::from_secs(10),
        targets.wait_for(|t| t.rw.as_ref() == Some(&primary) && !t.ro.is_empty()),
    )
    .await
    .expect("the primary confirmed")
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A stale confirmation: the read-write target is a standby now.
    p.set(|t| t.rw = Some(c.standby()));
    let err = connect(p.rw).await.expect_err("a session on a standby");
    assert_eq!(
        err.as_db_error().map(|e| e.code()),
        Some(&SqlState::CANNOT_CONNECT_NOW),
        "{err:?}"
    );
    let started = Instant::now();
    let rw = connect(p.rw)
        .await
        .expect("the next session waits for a fresh check, then reaches the primary");
    assert!(!in_recovery(&rw).await);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// After a read-only session met a primary where a standby was published (promoted since its
/// check), the prober checks the targets again at once, and the next read-only sessions reach
/// the real standby; before, each was refused like the first until the prober's next round
/// (here 30 s away).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_read_only_session_met_a_primary_the_targets_are_checked_again_at_once() {
    let c = cluster();
    let p = TestProxy::start_guarded(Targets::none(), |cfg| {
        cfg.ro_fallback_to_primary = false;
    })
    .await;
    let _candidates = probe_every_30_s(&p, c);
    let standby = c.standby();
    let mut targets = p.targets.subscribe();
    let checked = |t: &Targets| t.ro.len() == 1 && t.ro[0].backend == standby;
    tokio::time::timeout(Duration::from_secs(10), targets.wait_for(checked))
        .await
        .expect("the standby checked")
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A stale check: the read-only target is a primary now (promoted: the write target
    // withdrawn, the read-only list not redone yet).
    p.set(|t| {
        t.rw = None;
        t.ro[0].backend = c.primary();
    });
    let err = connect(p.ro)
        .await
        .expect_err("a read-only session on a primary");
    assert_eq!(
        err.as_db_error().map(|e| e.code()),
        Some(&SqlState::CANNOT_CONNECT_NOW),
        "{err:?}"
    );
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), targets.wait_for(checked))
        .await
        .unwrap_or_else(|_| panic!("not checked again within 5 s ({:?})", started.elapsed()))
        .unwrap();
    assert!(in_recovery(&connect(p.ro).await.unwrap()).await);
}

#[tokio::test]
async fn ro_listener_avoids_primary_unless_fallback() {
    let c = cluster();
    let only_primary = Targets::primary(c.primary());
    let p = TestProxy::start(only_primary.clone(), |cfg| {
        cfg.ro_fallback_to_primary = false;
        cfg.hold_timeout = Duration::from_millis(300);
    })
    .await;
    let err = connect(p.ro).await.expect_err("no standby and no fallback");
    assert_eq!(err.code(), Some(&SqlState::CANNOT_CONNECT_NOW));
    // A standby lagging beyond the bound is not eligible either.
    p.set(|t| t.ro = vec![c.standby_target(Some(1 << 40))]);
    let err = connect(p.ro).await.expect_err("standby lags too much");
    assert_eq!(err.code(), Some(&SqlState::CANNOT_CONNECT_NOW));
    p.set(|t| t.ro = vec![c.standby_target(Some(10))]);
    assert!(in_recovery(&connect(p.ro).await.unwrap()).await);

    let f = TestProxy::start(only_primary, |cfg| cfg.ro_fallback_to_primary = true).await;
    let client = connect(f.ro).await.unwrap();
    assert!(!in_recovery(&client).await, "fallback goes to the primary");
    let ro: String = client
        .query_one("show default_transaction_read_only", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(ro, "on");
    let err = client
        .batch_execute("create temp table w(x int)")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::READ_ONLY_SQL_TRANSACTION));
}
