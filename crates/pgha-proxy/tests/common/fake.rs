//! Stand-ins for the tests that need no PostgreSQL: a fake backend counting its connections,
//! raw packets, the open-files limit.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use pgha_proxy::{wire, Backend};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the fake backend answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// AuthenticationOk, BackendKeyData, ReadyForQuery, then echo.
    Ok,
    /// AuthenticationCleartextPassword, then wait for a password that is never checked.
    Stall,
    /// As `Ok`, after this many milliseconds (a member slow to take a session).
    Slow(u64),
}

/// What a [`Fake`] started with it answers to SSLRequest: nothing, ever (a hung backend).
pub const MUTE: u8 = 0;

/// A fake PostgreSQL: answers SSLRequest with `ssl` ('S': then echoes bytes, standing in for
/// TLS; [`MUTE`]: never), direct TLS by echoing, a startup as `auth` says. Counts connections.
pub struct Fake {
    pub addr: SocketAddr,
    /// Connections accepted since start.
    pub accepted: Arc<AtomicUsize>,
    /// Connections open now.
    pub open: Arc<AtomicUsize>,
    /// Most connections open at once.
    pub peak: Arc<AtomicUsize>,
}

impl Fake {
    pub async fn start(ssl: u8, auth: Auth) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = Fake {
            addr: listener.local_addr().unwrap(),
            accepted: Arc::default(),
            open: Arc::default(),
            peak: Arc::default(),
        };
        let (accepted, open, peak) = (fake.accepted.clone(), fake.open.clone(), fake.peak.clone());
        tokio::spawn(async move {
            let mut pid = 1000u32;
            loop {
                let (s, _) = listener.accept().await.unwrap();
                pid += 1;
                accepted.fetch_add(1, SeqCst);
                let now = open.fetch_add(1, SeqCst) + 1;
                peak.fetch_max(now, SeqCst);
                let open = open.clone();
                tokio::spawn(async move {
                    let _ = serve(s, ssl, auth, pid).await;
                    open.fetch_sub(1, SeqCst);
                });
            }
        });
        fake
    }

    pub fn backend(&self) -> Backend {
        Backend::new("fake", self.addr.to_string())
    }
}

async fn serve(mut s: TcpStream, ssl: u8, auth: Auth, pid: u32) -> std::io::Result<()> {
    loop {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).await?;
        if len[0] == wire::TLS_HANDSHAKE {
            s.write_all(&len).await?;
            return echo(s).await;
        }
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize - 4];
        s.read_exact(&mut body).await?;
        if body[..4] != wire::SSL_REQUEST.to_be_bytes() {
            break;
        }
        if ssl == MUTE {
            let mut sink = [0u8; 256];
            while s.read(&mut sink).await? > 0 {}
            return Ok(());
        }
        s.write_all(&[ssl]).await?;
        if ssl == b'S' {
            return echo(s).await;
        }
    }
    if let Auth::Slow(ms) = auth {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    match auth {
        Auth::Ok | Auth::Slow(_) => {
            let mut reply = vec![b'R', 0, 0, 0, 8, 0, 0, 0, 0, b'K', 0, 0, 0, 12];
            reply.extend_from_slice(&pid.to_be_bytes());
            reply.extend_from_slice(&7u32.to_be_bytes());
            reply.extend_from_slice(&READY);
            s.write_all(&reply).await?;
            echo(s).await
        }
        Auth::Stall => {
            s.write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3]).await?;
            let mut sink = [0u8; 256];
            while s.read(&mut sink).await? > 0 {}
            Ok(())
        }
    }
}

/// Sends back what it reads (with a small buffer: idle.rs measures memory per session).
async fn echo(mut s: TcpStream) -> std::io::Result<()> {
    let mut buf = [0u8; 256];
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        s.write_all(&buf[..n]).await?;
    }
}

/// ReadyForQuery (idle).
pub const READY: [u8; 6] = [b'Z', 0, 0, 0, 5, b'I'];
/// An SSLRequest packet.
pub const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// A protocol 3 StartupMessage for user `app`.
pub fn startup_packet() -> Vec<u8> {
    let mut p = vec![0, 0, 0, 0, 0, 3, 0, 0];
    p.extend_from_slice(b"user\0app\0database\0db\0\0");
    let len = p.len() as u32;
    p[..4].copy_from_slice(&len.to_be_bytes());
    p
}

/// A TLS handshake record (header and `len` bytes of body), as a ClientHello would come.
pub fn tls_record(len: u16) -> Vec<u8> {
    let mut r = vec![wire::TLS_HANDSHAKE, 3, 1];
    r.extend_from_slice(&len.to_be_bytes());
    r.extend(std::iter::repeat_n(0x42, len as usize));
    r
}

/// Reads until ReadyForQuery; panics if the connection closes first.
pub async fn until_ready(s: &mut TcpStream) {
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    while !got.ends_with(&READY) {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before ReadyForQuery: {got:?}");
        got.extend_from_slice(&buf[..n]);
    }
}

/// What the peer sent until it closed (a reset counts as closed), or `None` if it is still
/// open after `within`.
pub async fn closed_within(s: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    let read_all = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(within, read_all).await.ok()?;
    Some(got)
}

/// Raises this process's open-files soft limit to its hard limit; panics below `need`.
pub fn raise_fd_limit(need: usize) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    assert!(lim.rlim_cur as usize >= need, "need {need} open files");
}
