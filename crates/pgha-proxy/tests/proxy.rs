//! End-to-end tests of the proxy against a real PostgreSQL primary and standby.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::clients::{psql_run, stdout_of_success};
use common::prober_run::{member, ProberRun};
use common::*;
use pgha_proxy::{wire, Candidates, Member, Prober, ProberConfig, Targets};
use pgha_testkit::{eventually, free_port};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_postgres::error::SqlState;

/// A session through each listener of `p`: read-write on the primary, read-only on the standby.
async fn rw_and_ro_sessions(p: &TestProxy) -> (tokio_postgres::Client, tokio_postgres::Client) {
    let rw = connect(p.rw).await.unwrap();
    assert!(!in_recovery(&rw).await, "rw reaches the primary");
    let ro = connect(p.ro).await.unwrap();
    assert!(in_recovery(&ro).await, "ro reaches the standby");
    (rw, ro)
}

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
    let _ = cluster();
    let p = TestProxy::without_primary(Duration::from_millis(400)).await;
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
    let stalls = p.stalls.clone().expect("guarded");
    let mut cfg = ProberConfig::new("postgres");
    cfg.interval = Duration::from_secs(30);
    let (_candidates, candidates) = tokio::sync::watch::channel(Candidates {
        leader: Some(member(c.primary())),
        standbys: vec![member(c.standby())],
    });
    let prober = Prober::new(cfg).with_stalls(stalls);
    tokio::spawn(prober.run(candidates, p.targets.clone(), p.shutdown.clone()));
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

#[tokio::test]
async fn cancel_reaches_the_owning_backend() {
    let c = cluster();
    let p = TestProxy::start(c.targets(), |_| {}).await;
    for addr in [p.rw, p.ro] {
        let client = connect(addr).await.unwrap();
        let token = client.cancel_token();
        let started = Instant::now();
        let sleeper = tokio::spawn(async move { client.simple_query("select pg_sleep(30)").await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        token.cancel_query(tokio_postgres::NoTls).await.unwrap();
        let err = sleeper.await.unwrap().expect_err("query must be cancelled");
        assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED));
        assert!(started.elapsed() < Duration::from_secs(10));
    }
    assert_eq!(p.metrics.snapshot().listener("rw").unwrap().cancels, 1);
}

async fn closed_by_proxy(mut s: TcpStream, secs: u64) -> Vec<u8> {
    let mut got = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(secs), s.read_to_end(&mut got)).await;
    assert!(r.is_ok(), "proxy did not close the connection");
    got
}

#[tokio::test]
async fn bad_clients_are_dropped_without_affecting_others() {
    let c = cluster();
    let p = TestProxy::start(c.targets(), |cfg| {
        cfg.startup_timeout = Duration::from_millis(500);
    })
    .await;
    let good = connect(p.rw).await.unwrap();
    // Garbage.
    let mut g = TcpStream::connect(p.rw).await.unwrap();
    g.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // Oversized startup packet.
    let mut o = TcpStream::connect(p.rw).await.unwrap();
    o.write_all(&1_000_000u32.to_be_bytes()).await.unwrap();
    o.write_all(&196_608u32.to_be_bytes()).await.unwrap();
    // Too short.
    let mut t = TcpStream::connect(p.rw).await.unwrap();
    t.write_all(&[0, 0, 0, 4]).await.unwrap();
    // Slowloris: half a startup packet, then silence.
    let mut s = TcpStream::connect(p.rw).await.unwrap();
    s.write_all(&[0, 0, 0, 40, 0, 3]).await.unwrap();
    let started = Instant::now();
    let (gr, or, tr) = tokio::join!(
        closed_by_proxy(g, 5),
        closed_by_proxy(o, 5),
        closed_by_proxy(t, 5)
    );
    for reply in [gr, or, tr] {
        assert!(reply.is_empty() || reply[0] == b'E', "{reply:?}");
    }
    for _ in 0..20 {
        let n: i32 = good.query_one("select 1", &[]).await.unwrap().get(0);
        assert_eq!(n, 1);
    }
    closed_by_proxy(s, 5).await;
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert!(!in_recovery(&connect(p.rw).await.unwrap()).await);
    assert!(p.metrics.snapshot().listener("rw").unwrap().errors >= 4);
}

#[tokio::test]
async fn max_client_conn_is_enforced() {
    let c = cluster();
    let p = TestProxy::start(c.targets(), |cfg| cfg.max_client_conn = 2).await;
    let a = connect(p.rw).await.unwrap();
    let b = connect(p.ro).await.unwrap();
    let err = connect(p.rw).await.expect_err("third client refused");
    assert_eq!(err.code(), Some(&SqlState::TOO_MANY_CONNECTIONS));
    // libpq (sslmode=prefer) reads the refusal as the answer to its SSLRequest, as it would
    // PostgreSQL's when it cannot fork; libpq 15.10/17.2 and newer hide the server's text then.
    let info = format!("{} sslmode=prefer", conninfo(p.rw));
    let psql = tokio::task::spawn_blocking(move || {
        std::process::Command::new(format!("{PG_BIN}/psql"))
            .args([&info, "-Atc", "select 1"])
            .output()
            .unwrap()
    });
    let stderr = String::from_utf8_lossy(&psql.await.unwrap().stderr).to_string();
    assert!(
        stderr.contains("too many clients already")
            || stderr.contains("server sent an error response during SSL exchange"),
        "{stderr}"
    );
    drop(b);
    let deadline = Instant::now() + Duration::from_secs(5);
    let d = loop {
        match connect(p.rw).await {
            Ok(d) => break d,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("slot not released: {e}"),
        }
    };
    assert!(!in_recovery(&a).await && !in_recovery(&d).await);
    assert!(p.metrics.snapshot().listener("rw").unwrap().rejected >= 1);
}

#[tokio::test]
async fn ssl_request_relayed_and_gssenc_refused() {
    let c = cluster();
    let p = TestProxy::start(c.targets(), |_| {}).await;
    let mut s = TcpStream::connect(p.rw).await.unwrap();
    s.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30])
        .await
        .unwrap(); // GSSENCRequest
    let mut b = [0u8; 1];
    s.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"N");
    s.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
        .await
        .unwrap(); // SSLRequest
    s.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"N", "server has ssl=off: its answer is relayed");
    // libpq with sslmode=prefer: SSLRequest, 'N', plaintext startup through the proxy.
    let info = conninfo(p.rw);
    let psql = |mode: &str| {
        let dsn = format!("{info} sslmode={mode}");
        async move {
            psql_run(
                Path::new(PG_BIN),
                &dsn,
                &["-Atc", "select pg_is_in_recovery()"],
            )
            .await
        }
    };
    let (prefer, require) = tokio::join!(psql("prefer"), psql("require"));
    assert_eq!(stdout_of_success(&prefer).trim(), "f");
    assert!(
        !require.status.success(),
        "server without SSL cannot satisfy sslmode=require"
    );
}

#[tokio::test]
async fn shutdown_tells_held_clients_and_stops() {
    let _ = cluster();
    // Sessions on the caller's runtime (no worker threads) for this one.
    let mut p = TestProxy::start(Targets::none(), |cfg| cfg.worker_threads = 0).await;
    let pending = tokio::spawn(connect(p.rw));
    eventually("held", Duration::from_secs(10), || {
        p.metrics.snapshot().listener("rw").unwrap().held == 1
    })
    .await;
    p.shutdown.cancel();
    let err = pending
        .await
        .unwrap()
        .expect_err("shutdown refuses held clients");
    assert_eq!(err.code(), Some(&SqlState::ADMIN_SHUTDOWN));
    tokio::time::timeout(Duration::from_secs(5), p.task.take().unwrap())
        .await
        .unwrap()
        .unwrap();
}

/// The task that feeds the prober is gone (it ended or panicked): nobody can tell the proxy
/// of a leader change any more, so it routes to nobody rather than to the last primary for
/// good (before: the targets froze as last published).
#[tokio::test]
async fn without_its_feed_the_prober_leaves_no_target() {
    let c = cluster();
    let mut run = ProberRun::start(
        Candidates {
            leader: Some(member(c.primary())),
            standbys: vec![member(c.standby())],
        },
        Duration::from_secs(2),
    );
    let primary = c.primary();
    let limit = Duration::from_secs(10);
    let is_primary = |t: &Targets| t.rw.as_ref() == Some(&primary);
    assert!(run.within(limit, is_primary).await.is_some());
    let ProberRun {
        candidates,
        mut targets,
        task,
        ..
    } = run;
    drop(candidates);
    let nothing = |t: &Targets| t.rw.is_none() && t.ro.is_empty();
    let emptied = tokio::time::timeout(limit, targets.wait_for(|t| nothing(t)))
        .await
        .is_ok();
    assert!(emptied, "targets stayed {:?}", *targets.borrow());
    task.await.unwrap();
}

/// A standby that accepts connections and never answers (a host blackholed after the
/// handshake, or a hung postmaster) makes every round last the whole check timeout. That must
/// delay neither the withdrawal of a leader the store no longer names, nor the confirmation
/// of the one it names; nor may standbys that keep changing keep the leader unconfirmed
/// (before: both waited for the round, and a round whose standbys changed was thrown away).
#[tokio::test]
async fn a_hung_standby_delays_neither_the_leader_nor_its_withdrawal() {
    let c = cluster();
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hung = Member::new("hung", hung.local_addr().unwrap().to_string());
    let primary = c.primary();
    let led = Candidates {
        leader: Some(member(primary.clone())),
        standbys: vec![member(c.standby()), hung.clone()],
    };
    let mut run = ProberRun::start(led.clone(), Duration::from_secs(5));
    let is_primary = |t: &Targets| t.rw.as_ref() == Some(&primary);
    let confirmed = run.within(Duration::from_secs(10), is_primary).await;
    assert!(
        confirmed.is_some_and(|d| d < Duration::from_secs(2)),
        "leader confirmed after {confirmed:?}"
    );
    // The store names no leader any more.
    run.candidates.send_replace(Candidates {
        leader: None,
        ..led.clone()
    });
    let withdrawn = run
        .within(Duration::from_secs(10), |t| t.rw.is_none())
        .await;
    assert!(
        withdrawn.is_some_and(|d| d < Duration::from_millis(500)),
        "rw withdrawn after {withdrawn:?}"
    );
    // The leader back, while the standbys change every second.
    run.candidates.send_replace(led.clone());
    let churn = {
        let candidates = run.candidates.clone();
        let led = led.clone();
        tokio::spawn(async move {
            for round in 0.. {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let mut next = led.clone();
                if round % 2 == 0 {
                    next.standbys.pop();
                }
                candidates.send_replace(next);
            }
        })
    };
    let reconfirmed = run.within(Duration::from_secs(12), is_primary).await;
    churn.abort();
    run.stop.cancel();
    run.task.await.unwrap();
    eprintln!("confirmed after {confirmed:?}, withdrawn after {withdrawn:?}, confirmed again with standbys changing after {reconfirmed:?}");
    assert!(
        reconfirmed.is_some_and(|d| d < Duration::from_secs(2)),
        "with standbys changing, leader confirmed after {reconfirmed:?}"
    );
}

#[tokio::test]
async fn prober_confirms_primary_and_standbys() {
    let c = cluster();
    let mut prober = Prober::new(ProberConfig::new("postgres"));
    let cands = Candidates {
        leader: Some(member(c.primary())),
        standbys: vec![member(c.standby())],
    };
    let t = prober.probe(&cands).await;
    assert_eq!(t.rw, Some(c.primary()));
    assert_eq!(t.ro.len(), 1);
    assert!(t.ro[0].lag_bytes.is_some());
    // The lease holder in recovery is not a primary; nor is an unreachable one.
    let wrong = Candidates {
        leader: Some(member(c.standby())),
        standbys: vec![],
    };
    assert_eq!(prober.probe(&wrong).await.rw, None);
    let dead = Member::new("dead", format!("127.0.0.1:{}", free_port()));
    let gone = Candidates {
        leader: Some(dead),
        standbys: vec![member(c.standby())],
    };
    let t = prober.probe(&gone).await;
    assert_eq!(t.rw, None);
    assert_eq!(t.ro[0].lag_bytes, None, "no primary: lag unknown");

    // The run loop publishes, and withdraws rw at once when the lease holder changes.
    let mut run = ProberRun::start(cands, Duration::from_secs(2));
    let primary = c.primary();
    let limit = Duration::from_secs(10);
    let is_primary = |t: &Targets| t.rw.as_ref() == Some(&primary);
    assert!(run.within(limit, is_primary).await.is_some());
    run.candidates.send_replace(gone);
    assert!(run.within(limit, |t| t.rw.is_none()).await.is_some());
    assert!(run.targets.borrow().generation >= 2);
    run.stop.cancel();
    run.task.await.unwrap();
}

/// The lease holder misses a check while the store still names it (the prober's backend on it
/// paused: a probe stuck behind load, as when its connection is lost with `max_connections`
/// full): new read-write sessions wait for its next answer, but the sessions open to it are
/// not closed, for nothing says it stopped being the primary (before: one late probe closed
/// every read-write session).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_that_misses_a_check_keeps_its_sessions() {
    let c = cluster();
    let primary = c.primary();
    // A role of its own, so that its backend is told from the probers of the other tests.
    let direct = connect(primary.addr.parse().unwrap()).await.unwrap();
    direct
        .batch_execute(
            "DO $$ BEGIN CREATE ROLE missed_check_prober LOGIN; \
             EXCEPTION WHEN duplicate_object THEN NULL; END $$",
        )
        .await
        .unwrap();
    let mut run = ProberRun::start_as(
        "missed_check_prober",
        Candidates {
            leader: Some(member(primary.clone())),
            standbys: vec![member(c.standby())],
        },
        Duration::from_millis(500),
    );
    let limit = Duration::from_secs(10);
    let is_primary = |t: &Targets| t.rw.as_ref() == Some(&primary);
    assert!(run.within(limit, is_primary).await.is_some());
    let p = TestProxy::start(run.targets.borrow().clone(), |_| {}).await;
    let forward = {
        let (mut from, to) = (run.targets.clone(), p.targets.clone());
        tokio::spawn(async move {
            while from.changed().await.is_ok() {
                let t = from.borrow_and_update().clone();
                to.send_replace(t);
            }
        })
    };
    let session = connect(p.rw).await.unwrap();
    assert!(!in_recovery(&session).await);
    let row = direct
        .query_one(
            "select pid from pg_stat_activity where usename = 'missed_check_prober'",
            &[],
        )
        .await
        .unwrap();
    let prober_backend = nix::unistd::Pid::from_raw(row.get::<_, i32>(0));
    nix::sys::signal::kill(prober_backend, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let missed = run
        .within(limit, |t| t.rw.is_none() && t.unanswered.is_some())
        .await;
    nix::sys::signal::kill(prober_backend, nix::sys::signal::Signal::SIGCONT).unwrap();
    assert!(missed.is_some(), "the check never went unanswered");
    let still = session.simple_query("select 1").await;
    assert!(
        still.is_ok(),
        "the session closed on one unanswered check: {still:?}"
    );
    assert!(run.within(limit, is_primary).await.is_some());
    assert!(session.simple_query("select 1").await.is_ok());
    let closed = p
        .metrics
        .snapshot()
        .listener("rw")
        .unwrap()
        .closed_on_change;
    assert_eq!(closed, 0, "sessions closed on a targets change");
    forward.abort();
    run.stop.cancel();
}
