//! Clients: cancel requests, bad or too many clients, SSL and GSS requests, shutdown.

use super::*;

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
