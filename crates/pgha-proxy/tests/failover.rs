//! A writer through the proxy while the primary is stopped and the standby promoted: the Prober
//! withdraws the old primary, new connections wait, and none is refused.

mod common;

use std::time::{Duration, Instant};

use common::fake::{until_ready, Auth, Fake};
use common::*;
use pgha_proxy::{Candidates, Member, Prober, ProberConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_sees_only_a_bounded_wait_during_failover() {
    let c = start_cluster();
    let member = |b: pgha_proxy::Backend| Member::new(b.name, b.addr);
    let (cands_tx, cands_rx) = tokio::sync::watch::channel(Candidates {
        leader: Some(member(c.primary())),
        standbys: vec![member(c.standby())],
    });
    let p = TestProxy::without_primary(Duration::from_secs(20)).await;
    let mut pcfg = ProberConfig::new("postgres");
    pcfg.interval = Duration::from_millis(100);
    pcfg.check_timeout = Duration::from_millis(500);
    let prober =
        tokio::spawn(Prober::new(pcfg).run(cands_rx, p.targets.clone(), p.shutdown.clone()));

    let setup = connect(p.rw).await.unwrap();
    setup
        .batch_execute("create table w(n int, at_primary text)")
        .await
        .unwrap();
    drop(setup);

    // The writer: a new connection per write, as a pooler-less app after errors would do.
    let rw = p.rw;
    let stop = pgha_proxy::CancellationToken::new();
    let stop2 = stop.clone();
    let writer = tokio::spawn(async move {
        let (mut ok, mut connect_failures, mut query_failures) = (0u32, Vec::new(), 0u32);
        let mut longest = Duration::ZERO;
        let mut n = 0;
        while !stop2.is_cancelled() {
            n += 1;
            let t = Instant::now();
            match connect(rw).await {
                Ok(client) => {
                    longest = longest.max(t.elapsed());
                    let sql = format!("insert into w values ({n}, current_setting('port'))");
                    match client.batch_execute(&sql).await {
                        Ok(()) => ok += 1,
                        Err(_) => query_failures += 1, // session cut by the stop itself
                    }
                }
                Err(e) => connect_failures.push(e.to_string()),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (ok, connect_failures, query_failures, longest)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Stop the primary, promote the standby, then tell the prober who holds the lease now.
    let stop_primary = tokio::task::spawn_blocking({
        let data = c.dir.join("primary");
        let standby = c.dir.join("standby");
        move || {
            let mut s = command("pg_ctl");
            s.args(["-w", "-m", "fast", "stop", "-D"]).arg(&data);
            run(s);
            let mut pr = command("pg_ctl");
            pr.args(["-w", "promote", "-D"]).arg(&standby);
            run(pr);
        }
    });
    stop_primary.await.unwrap();
    cands_tx.send_replace(Candidates {
        leader: Some(member(c.standby())),
        standbys: vec![],
    });
    let standby = c.standby();
    let mut trx = p.targets.subscribe();
    tokio::time::timeout(
        Duration::from_secs(15),
        trx.wait_for(|t| t.rw.as_ref() == Some(&standby)),
    )
    .await
    .expect("new primary confirmed")
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    let (ok, connect_failures, query_failures, longest) = writer.await.unwrap();
    println!(
        "writes ok {ok}, refused connects {}, cut sessions {query_failures}, longest connect {longest:?}",
        connect_failures.len()
    );
    assert!(
        connect_failures.is_empty(),
        "refused connections: {connect_failures:?}"
    );
    assert!(query_failures <= 2, "{query_failures} writes failed");
    assert!(longest < Duration::from_secs(20));
    let check = connect(p.rw).await.unwrap();
    let after: i64 = check
        .query_one(
            &format!(
                "select count(*) from w where at_primary = '{}'",
                c.standby_port
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(after >= 1, "writes continued on the new primary");
    assert!(p.metrics.snapshot().listener("rw").unwrap().held_total >= 1);
    p.shutdown.cancel();
    prober.await.unwrap();
}

/// The primary changes while a new session's startup is under way on the old one (slow to
/// answer): the session goes to the new primary, as one that arrived a moment later would,
/// instead of being handed the old one's answer and closed (before: the client got the old
/// primary's ReadyForQuery, then a dropped connection).
#[tokio::test]
async fn a_session_whose_primary_changes_during_its_startup_goes_to_the_new_one() {
    use std::sync::atomic::Ordering::SeqCst;
    let (old, new) = (
        Fake::start(b'N', Auth::Slow(600)).await,
        Fake::start(b'N', Auth::Ok).await,
    );
    let p = TestProxy::start(targets_of(old.backend(), []), |cfg| {
        cfg.hold_timeout = Duration::from_secs(10);
    })
    .await;
    let rw = p.rw;
    let client = tokio::spawn(async move {
        let mut s = raw_client::startup(rw, &[("user", "app")]).await;
        until_ready(&mut s).await;
        // Still open a while later: not closed as a session of the old primary.
        fake::closed_within(&mut s, Duration::from_millis(500)).await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        old.accepted.load(SeqCst),
        1,
        "the startup went to the old primary"
    );
    p.set(|t| t.rw = Some(new.backend()));
    let closed = tokio::time::timeout(Duration::from_secs(10), client)
        .await
        .expect("the session was ready within 10 s")
        .unwrap();
    assert_eq!(closed, None, "the session was closed");
    assert_eq!(
        new.accepted.load(SeqCst),
        1,
        "the session went to the new primary"
    );
}

/// Found by review: a client opening with direct TLS (`sslnegotiation=direct`) whose primary
/// changed while the proxy's connect to it was under way was closed (its ClientHello sent to
/// the old primary, the session then ended as one of it), where a plaintext or SSLRequest
/// session goes to the new one. Here the old primary's listen queue is full, so the connect
/// waits for the SYN to be sent again; the primary changes meanwhile, then the queue frees.
#[tokio::test]
async fn a_direct_tls_session_whose_primary_changes_during_its_connect_goes_to_the_new_one() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpSocket, TcpStream};
    let old = TcpSocket::new_v4().unwrap();
    old.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let old = old.listen(1).unwrap();
    let old_addr = old.local_addr().unwrap();
    let mut queued = Vec::new();
    while queued.len() < 8 {
        let connect = TcpStream::connect(old_addr);
        match tokio::time::timeout(Duration::from_millis(300), connect).await {
            Ok(Ok(s)) => queued.push(s),
            _ => break,
        }
    }
    assert!(queued.len() < 8, "the listen queue never filled");
    let new = Fake::start(b'S', Auth::Ok).await;
    let p = TestProxy::start(
        targets_of(pgha_proxy::Backend::new("old", old_addr.to_string()), []),
        |cfg| {
            cfg.hold_timeout = Duration::from_secs(10);
            cfg.connect_timeout = Duration::from_secs(8);
        },
    )
    .await;
    let rw = p.rw;
    let client = tokio::spawn(async move {
        let hello = common::fake::tls_record(200);
        let mut s = TcpStream::connect(rw).await.unwrap();
        s.write_all(&hello).await.unwrap();
        let mut echoed = vec![0u8; hello.len()];
        s.read_exact(&mut echoed).await.map(|_| echoed == hello)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    p.set(|t| t.rw = Some(new.backend()));
    for _ in 0..queued.len() {
        let _ = old.accept().await.unwrap();
    }
    let echoed = tokio::time::timeout(Duration::from_secs(10), client)
        .await
        .expect("the session ended within 10 s")
        .unwrap();
    assert!(
        matches!(echoed, Ok(true)),
        "the ClientHello did not reach the new primary: {echoed:?}"
    );
}
