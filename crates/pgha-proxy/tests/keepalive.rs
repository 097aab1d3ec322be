//! TCP keepalives on both sockets of plain and TLS-passthrough sessions, and the idle bound
//! (issue 11). The proxy runs in this process, so its sockets are read from /proc/self/fd.

mod common;

use std::net::SocketAddr;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use common::fake::*;
use common::TestProxy;
use pgha_proxy::Targets;
use socket2::SockRef;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Keepalive settings of one socket: (on, idle, interval, count).
type Keepalive = (bool, Duration, Duration, u32);

/// This process's TCP sockets for which `pick(local, peer)` holds, with their keepalive settings.
fn sockets(
    pick: impl Fn(SocketAddr, SocketAddr) -> bool,
) -> Vec<(SocketAddr, SocketAddr, Keepalive)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|t| t.to_string_lossy().starts_with("socket:"));
        let Ok(raw) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if !is_socket {
            continue;
        }
        // Only read: the fd stays owned by whoever opened it.
        let fd = unsafe { BorrowedFd::borrow_raw(raw) };
        let s = SockRef::from(&fd);
        let addr = |a: std::io::Result<socket2::SockAddr>| a.ok().and_then(|a| a.as_socket());
        let (Some(local), Some(peer)) = (addr(s.local_addr()), addr(s.peer_addr())) else {
            continue;
        };
        if !pick(local, peer) {
            continue;
        }
        let ka = (
            s.keepalive().unwrap_or(false),
            s.tcp_keepalive_time().unwrap_or_default(),
            s.tcp_keepalive_interval().unwrap_or_default(),
            s.tcp_keepalive_retries().unwrap_or_default(),
        );
        out.push((local, peer, ka));
    }
    out
}

#[tokio::test]
async fn sessions_have_keepalives_and_an_idle_bound() {
    let fake = Fake::start(b'S', Auth::Ok).await;
    let idle = Duration::from_millis(500);
    let p = TestProxy::start(Targets::primary(fake.backend()), |cfg| {
        cfg.tcp_keepalive_idle = Some(Duration::from_secs(7));
        cfg.tcp_keepalive_interval = Duration::from_secs(3);
        cfg.tcp_keepalive_count = 4;
        cfg.idle_timeout = Some(idle);
    })
    .await;
    // A plaintext session and a TLS-passthrough one (SSLRequest, 'S', then opaque records).
    let mut plain = TcpStream::connect(p.rw).await.unwrap();
    plain.write_all(&startup_packet()).await.unwrap();
    until_ready(&mut plain).await;
    let mut tls = TcpStream::connect(p.rw).await.unwrap();
    tls.write_all(&SSL_REQUEST).await.unwrap();
    let mut answer = [0u8; 1];
    tls.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"S");
    let record = tls_record(64);
    let mut echoed = vec![0u8; record.len()];
    tls.write_all(&record).await.unwrap();
    tls.read_exact(&mut echoed).await.unwrap();
    let started = Instant::now();

    // The proxy's ends: accepted on its listener (client side), connected to the fake backend
    // (backend side); not the test's own client sockets, nor the fake's accepted ones.
    let ours = [plain.local_addr().unwrap(), tls.local_addr().unwrap()];
    let client_side = sockets(|local, peer| local == p.rw && ours.contains(&peer));
    let backend_side = sockets(|_, peer| peer == fake.addr);
    assert_eq!(client_side.len(), 2, "{client_side:?}");
    // A connection the proxy used only to learn the backend's SSLRequest answer may still be
    // closing: at least the two sessions' backend sockets.
    assert!(backend_side.len() >= 2, "{backend_side:?}");
    let want = (true, Duration::from_secs(7), Duration::from_secs(3), 4);
    for (local, peer, ka) in client_side.iter().chain(&backend_side) {
        assert_eq!(*ka, want, "socket {local} -> {peer}");
    }

    // The TLS session keeps talking for three idle bounds; the plaintext one stays quiet.
    let mut byte = [0u8; 1];
    while started.elapsed() < idle * 3 {
        tls.write_all(b"x").await.unwrap();
        tls.read_exact(&mut byte).await.unwrap();
        tokio::time::sleep(idle / 5).await;
    }
    let plain_closed = closed_within(&mut plain, Duration::from_millis(100)).await;
    assert!(
        plain_closed.is_some(),
        "quiet session open after 3 idle bounds"
    );
    let tls_closed = closed_within(&mut tls, idle * 4).await;
    assert!(
        tls_closed.is_some(),
        "TLS session open long after it fell quiet"
    );
}
