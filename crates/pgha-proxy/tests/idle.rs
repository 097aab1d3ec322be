//! 2 000 idle client sessions through the proxy, against an in-process minimal backend, with the
//! test process's resident memory measured before and after.

use std::time::Duration;

use pgha_proxy::{Backend, CancellationToken, Proxy, ProxyConfig, Targets};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const CLIENTS: usize = 2000;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    assert!(
        lim.rlim_cur as usize > CLIENTS * 4 + 100,
        "need {} fds",
        CLIENTS * 4 + 100
    );
}

/// Answers any startup with AuthenticationOk, BackendKeyData, ReadyForQuery, then idles.
async fn fake_backend(listener: TcpListener) {
    let mut pid = 1000u32;
    loop {
        let (mut s, _) = listener.accept().await.unwrap();
        pid += 1;
        tokio::spawn(async move {
            let mut len = [0u8; 4];
            s.read_exact(&mut len).await?;
            let mut body = vec![0u8; u32::from_be_bytes(len) as usize - 4];
            s.read_exact(&mut body).await?;
            let mut reply = vec![b'R', 0, 0, 0, 8, 0, 0, 0, 0, b'K', 0, 0, 0, 12];
            reply.extend_from_slice(&pid.to_be_bytes());
            reply.extend_from_slice(&7u32.to_be_bytes());
            reply.extend_from_slice(&[b'Z', 0, 0, 0, 5, b'I']);
            s.write_all(&reply).await?;
            let mut rest = [0u8; 64];
            while s.read(&mut rest).await? > 0 {}
            Ok::<_, std::io::Error>(())
        });
    }
}

fn startup_packet() -> Vec<u8> {
    let mut p = vec![0, 0, 0, 0, 0, 3, 0, 0];
    p.extend_from_slice(b"user\0app\0database\0db\0\0");
    let len = p.len() as u32;
    p[..4].copy_from_slice(&len.to_be_bytes());
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_idle_sessions_with_bounded_memory() {
    raise_fd_limit();
    let backend = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend_addr = backend.local_addr().unwrap();
    tokio::spawn(fake_backend(backend));
    let (_tx, rx) = tokio::sync::watch::channel(Targets::primary(Backend::new(
        "fake",
        backend_addr.to_string(),
    )));
    let cfg = ProxyConfig {
        rw_listen: Some("127.0.0.1:0".into()),
        ro_listen: None,
        max_client_conn: CLIENTS + 10,
        ..ProxyConfig::default()
    };
    let shutdown = CancellationToken::new();
    let proxy = Proxy::bind(cfg, rx, shutdown.clone()).await.unwrap();
    let addr = proxy.rw_addr().unwrap();
    let metrics = proxy.metrics();
    let task = tokio::spawn(proxy.run());

    let one = |startup: Vec<u8>| async move {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&startup).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        while !got.ends_with(&[b'Z', 0, 0, 0, 5, b'I']) {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before ReadyForQuery");
            got.extend_from_slice(&buf[..n]);
        }
        s
    };
    // Warm up allocator and runtime before the baseline.
    let warm: Vec<TcpStream> = {
        let mut v = Vec::new();
        for _ in 0..20 {
            v.push(one(startup_packet()).await);
        }
        v
    };
    drop(warm);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = rss_kib();
    let mut clients = Vec::with_capacity(CLIENTS);
    for chunk in 0..(CLIENTS / 100) {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..100 {
            set.spawn(one(startup_packet()));
        }
        while let Some(s) = set.join_next().await {
            clients.push(s.unwrap());
        }
        let _ = chunk;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while metrics.snapshot().listener("rw").unwrap().active != CLIENTS as u64 {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            metrics.snapshot()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let after = rss_kib();
    let per_conn = (after.saturating_sub(before)) * 1024 / CLIENTS as u64;
    println!("RSS before {before} KiB, after {after} KiB with {CLIENTS} idle sessions: {per_conn} B/session (client, proxy and fake backend ends together)");
    // Budget: everything in this process (test client, proxy, fake backend) under 8 KiB a
    // session; the proxy's own share is a small fraction (no buffers while idle).
    assert!(
        per_conn < 8 * 1024,
        "memory per idle session too high: {per_conn} B"
    );
    assert!(after < 48 * 1024, "RSS too high: {after} KiB");
    drop(clients);
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
}
