//! 2 000 idle client sessions through the proxy, against an in-process minimal backend, with the
//! test process's resident memory measured before and after.

mod common;

use std::time::Duration;

use common::fake::{raise_fd_limit, startup_packet, until_ready, Auth, Fake};
use common::TestProxy;
use pgha_proxy::Targets;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const CLIENTS: usize = 2000;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_idle_sessions_with_bounded_memory() {
    raise_fd_limit(CLIENTS * 4 + 100);
    let fake = Fake::start(b'N', Auth::Ok).await;
    let mut p = TestProxy::start(Targets::primary(fake.backend()), |cfg| {
        cfg.max_client_conn = CLIENTS + 10
    })
    .await;
    let addr = p.rw;

    let one = |startup: Vec<u8>| async move {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&startup).await.unwrap();
        until_ready(&mut s).await;
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
    while p.metrics.snapshot().listener("rw").unwrap().active != CLIENTS as u64 {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            p.metrics.snapshot()
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
    p.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), p.task.take().unwrap())
        .await
        .unwrap()
        .unwrap();
}
