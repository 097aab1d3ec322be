//! Limits that hold under attack (issue 11): no backend before a complete startup, bounded
//! startup and authentication, a hard `max_client_conn`. Against in-process fake backends.

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use common::fake::*;
use common::TestProxy;
use pgha_proxy::Targets;
use pgha_testkit::eventually;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Connects to `addr` and sends `bytes`.
async fn send(addr: std::net::SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    s
}

/// Sends an SSLRequest and returns the connection with the one-byte answer.
async fn ssl_request(addr: std::net::SocketAddr) -> (TcpStream, u8) {
    let mut s = send(addr, &SSL_REQUEST).await;
    let mut answer = [0u8; 1];
    s.read_exact(&mut answer).await.unwrap();
    (s, answer[0])
}

/// A TLS session through `addr` whose backend answers SSLRequest with 'S' and echoes (as
/// [`Fake`] does): its first record comes back. Teaches the proxy its backends' answer.
async fn tls_session_echoes(addr: std::net::SocketAddr) {
    let (mut s, answer) = ssl_request(addr).await;
    assert_eq!(answer, b'S');
    let hello = tls_record(300);
    s.write_all(&hello).await.unwrap();
    let mut echoed = vec![0u8; hello.len()];
    s.read_exact(&mut echoed).await.unwrap();
    assert_eq!(echoed, hello, "TLS passthrough");
}

#[tokio::test]
async fn no_backend_connection_before_a_complete_startup() {
    // rw: backends that accept TLS; ro: backends without it.
    let (tls, plain) = (
        Fake::start(b'S', Auth::Ok).await,
        Fake::start(b'N', Auth::Ok).await,
    );
    let p = TestProxy::start(
        common::targets_of(tls.backend(), [plain.backend()]),
        |cfg| {
            cfg.startup_timeout = Duration::from_secs(30);
        },
    )
    .await;
    let ro = p.ro;
    // One complete session of each kind first, so that the proxy knows its backends' answer
    // to SSLRequest.
    tls_session_echoes(p.rw).await;
    let (mut s, answer) = ssl_request(ro).await;
    assert_eq!(answer, b'N');
    s.write_all(&startup_packet()).await.unwrap();
    until_ready(&mut s).await;
    let (tls_before, plain_before) = (tls.accepted.load(SeqCst), plain.accepted.load(SeqCst));

    let startup = startup_packet();
    let half = &startup[..startup.len() / 2];
    let hello = tls_record(200);
    let mut stalled = Vec::new();
    for addr in [p.rw, ro] {
        stalled.push(("nothing", send(addr, &[]).await));
        stalled.push(("half a startup packet", send(addr, half).await));
    }
    let (s, _) = ssl_request(p.rw).await;
    stalled.push(("SSLRequest answered 'S', no ClientHello", s));
    let (mut s, _) = ssl_request(p.rw).await;
    s.write_all(&hello[..100]).await.unwrap();
    stalled.push(("SSLRequest, then half a ClientHello", s));
    let (mut s, _) = ssl_request(ro).await;
    s.write_all(half).await.unwrap();
    stalled.push(("SSLRequest answered 'N', then half a startup packet", s));
    stalled.push(("direct TLS, a record header", send(p.rw, &hello[..5]).await));
    stalled.push((
        "direct TLS, half a ClientHello",
        send(p.rw, &hello[..120]).await,
    ));

    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        (tls.accepted.load(SeqCst), plain.accepted.load(SeqCst)),
        (tls_before, plain_before),
        "a backend connection was opened for a client that had not completed its startup \
         (clients: {:?})",
        stalled.iter().map(|(what, _)| *what).collect::<Vec<_>>()
    );
    // Completing them opens their backends: the counts above do see connections.
    for (what, s) in &mut stalled[1..] {
        match *what {
            "half a startup packet" | "SSLRequest answered 'N', then half a startup packet" => {
                s.write_all(&startup[half.len()..]).await.unwrap();
                until_ready(s).await;
            }
            "SSLRequest, then half a ClientHello" => s.write_all(&hello[100..]).await.unwrap(),
            "direct TLS, half a ClientHello" => s.write_all(&hello[120..]).await.unwrap(),
            _ => continue,
        }
    }
    eventually(
        "completed startups to reach their backends",
        Duration::from_secs(5),
        || {
            tls.accepted.load(SeqCst) == tls_before + 3
                && plain.accepted.load(SeqCst) == plain_before + 2
        },
    )
    .await;
}

#[tokio::test]
async fn stalled_startup_and_authentication_are_closed_after_their_bounds() {
    let fake = Fake::start(b'N', Auth::Stall).await;
    let bound = Duration::from_millis(400);
    let p = TestProxy::start(Targets::primary(fake.backend()), |cfg| {
        cfg.startup_timeout = bound;
        cfg.auth_timeout = bound;
    })
    .await;
    let startup = startup_packet();
    let started = Instant::now();
    let mut silent = send(p.rw, &[]).await;
    let mut half = send(p.rw, &startup[..10]).await;
    // A complete startup whose client never answers the password request.
    let mut mute = send(p.rw, &startup).await;
    let mut request = [0u8; 9];
    mute.read_exact(&mut request).await.unwrap();
    assert_eq!(
        request,
        [b'R', 0, 0, 0, 8, 0, 0, 0, 3],
        "password requested"
    );
    assert_eq!(fake.open.load(SeqCst), 1);
    for (what, s) in [
        ("silent", &mut silent),
        ("half a startup", &mut half),
        ("mute during authentication", &mut mute),
    ] {
        let got = closed_within(s, Duration::from_secs(5)).await;
        assert!(got.is_some(), "{what} client still open after 5 s");
    }
    assert!(started.elapsed() >= bound - Duration::from_millis(50));
    eventually(
        "the backend connection closed",
        Duration::from_secs(5),
        || fake.open.load(SeqCst) == 0,
    )
    .await;
}

const CAP: usize = 50;
const BURST: usize = 2000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_client_conn_is_a_hard_cap_under_a_burst() {
    raise_fd_limit(BURST * 3 + 200);
    let fake = Fake::start(b'N', Auth::Ok).await;
    let p = TestProxy::start(Targets::primary(fake.backend()), |cfg| {
        cfg.max_client_conn = CAP;
        cfg.startup_timeout = Duration::from_secs(30);
        // Sessions on this test's runtime, where its tasks can be counted.
        cfg.worker_threads = 0;
    })
    .await;
    let addr = p.rw;
    // A burst of complete startups: exactly CAP sessions, the others refused at once.
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..BURST {
        set.spawn(async move {
            let mut s = send(addr, &startup_packet()).await;
            let mut got = Vec::new();
            let mut buf = [0u8; 256];
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return (None, got),
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
                if got.ends_with(&READY) {
                    return (Some(s), got);
                }
            }
        });
    }
    let mut sessions = Vec::new();
    let mut refused = 0;
    while let Some(r) = set.join_next().await {
        match r.unwrap() {
            (Some(s), _) => sessions.push(s),
            (None, got) => {
                let text = String::from_utf8_lossy(&got);
                assert!(got.is_empty() || text.contains("53300"), "{text}");
                refused += 1;
            }
        }
    }
    assert_eq!((sessions.len(), refused), (CAP, BURST - CAP));
    assert!(
        fake.peak.load(SeqCst) <= CAP,
        "backend saw more than the cap"
    );
    let rw = p.metrics.snapshot().listener("rw").unwrap().clone();
    assert_eq!((rw.active, rw.rejected), (CAP as u64, (BURST - CAP) as u64));

    // A burst of clients that send nothing while the proxy is full: each is closed at once
    // (well before startup_timeout), and none keeps a task.
    let tasks_before = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    let mut silent = Vec::with_capacity(BURST);
    for _ in 0..BURST {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    let tasks = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    assert!(
        tasks <= tasks_before + 5,
        "{tasks} tasks alive with {BURST} refused clients connected (before: {tasks_before})"
    );
    let started = Instant::now();
    for s in &mut silent {
        let got = closed_within(s, Duration::from_secs(5)).await;
        let got = got.expect("a client over max_client_conn was kept open");
        let text = String::from_utf8_lossy(&got);
        assert!(got.is_empty() || text.contains("53300"), "{text}");
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    let rw = p.metrics.snapshot().listener("rw").unwrap().clone();
    assert_eq!(rw.active, CAP as u64);
    assert_eq!(rw.rejected, (2 * BURST - CAP) as u64);
    drop(sessions);
}

/// A TLS client's backend accepts the connection and never answers the SSLRequest: the
/// session waits no longer than its hold bound (before: the backend's connect timeout, 3 s,
/// past a 0.5 s bound, then an error instead of a try at the next target).
#[tokio::test]
async fn a_backend_silent_to_the_ssl_request_is_waited_for_within_the_hold_bound() {
    let (tls, mute) = (
        Fake::start(b'S', Auth::Ok).await,
        Fake::start(MUTE, Auth::Ok).await,
    );
    let p = TestProxy::start(common::targets_of(tls.backend(), []), |cfg| {
        cfg.hold_timeout = Duration::from_millis(500);
    })
    .await;
    // A first session teaches the proxy its backends' 'S'.
    tls_session_echoes(p.rw).await;
    p.set(|t| t.rw = Some(mute.backend()));
    let hello = tls_record(300);
    let started = Instant::now();
    let (mut s, answer) = ssl_request(p.rw).await;
    assert_eq!(answer, b'S', "answered from what the proxy learned");
    s.write_all(&hello).await.unwrap();
    let closed = closed_within(&mut s, Duration::from_secs(10)).await;
    let after = started.elapsed();
    assert!(closed.is_some(), "the session was never closed");
    assert!(
        after < Duration::from_millis(1500),
        "closed {after:?} after the SSLRequest, with a 0.5 s hold bound"
    );
    assert!(mute.accepted.load(SeqCst) >= 1);
}
