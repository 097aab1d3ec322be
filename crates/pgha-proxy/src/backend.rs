//! Opens a session's backend: held connect, TLS when the proxy terminates it, startup packet,
//! retry while the server cannot take the session.
//!
//! A server shutting down or starting up answers `57P03`; retrying within the hold makes a
//! failover look like a wait to clients, not an error. A server that needs nothing from the
//! client (trust) runs its startup on to ReadyForQuery: that is read before anything is
//! relayed, so a fast shutdown that ends the session meanwhile (`57P01`) is retried too. A
//! member whose certificate does not verify is never sent the startup; it is retried like one
//! that refuses connections.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::error::ProxyError;
use crate::limits::tune_socket;
use crate::listener::ListenerCtx;
use crate::route::{connect_held, pause_before_retry, HoldFailure, HoldMeter, Lease};
use crate::startup::StartupPacket;
use crate::stream::BackendConn;
use crate::wire::{SQLSTATE_NO_TARGET, SQLSTATE_SHUTDOWN};

/// Largest first backend message read whole before being relayed.
const MAX_FIRST_MESSAGE: usize = 64 * 1024;

/// A backend connection whose startup was sent and whose first answer is not a refusal.
pub(crate) struct Opened {
    pub(crate) stream: BackendConn,
    pub(crate) lease: Lease,
    /// The backend's first message (authentication request, usually), to relay to the client.
    pub(crate) first: Vec<u8>,
}

/// Connects, sends `startup`, and reads the first answer; until `deadline`, a `57P03` answer or
/// a broken connection means: wait, retry.
pub(crate) async fn open_backend(
    ctx: &ListenerCtx,
    startup: &StartupPacket,
    deadline: Instant,
) -> Result<Opened, HoldFailure> {
    let cfg = &ctx.shared.config;
    let shutdown = &ctx.shared.shutdown;
    let mut meter = HoldMeter::new(&ctx.metrics);
    loop {
        let connect = connect_held(
            &ctx.router,
            deadline,
            cfg.connect_timeout,
            shutdown,
            &mut meter,
        );
        let (tcp, lease) = connect.await?;
        tune_socket(&tcp, cfg);
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .min(cfg.connect_timeout);
        let attempt = async {
            let mut stream = match &ctx.shared.terminator {
                // Boxed: the handshake's state would otherwise size every session's task.
                Some(t) => {
                    BackendConn::Tls(Box::new(Box::pin(t.connect(tcp, &lease, wait)).await?))
                }
                None => BackendConn::Plain(tcp),
            };
            stream.write_all(&startup.raw).await?;
            let first = read_answer(&mut stream).await?;
            Ok::<_, ProxyError>((stream, first))
        };
        match tokio::time::timeout(wait, attempt).await {
            // The target changed while it answered: nothing reached the client yet, so the
            // session goes to the current target, as one arriving now would.
            Ok(Ok((_, Some(_)))) if lease.token.is_cancelled() => {
                tracing::debug!(backend = %lease.addr(), "target changed during the startup")
            }
            Ok(Ok((stream, Some(first)))) => {
                return Ok(Opened {
                    stream,
                    lease,
                    first,
                });
            }
            Ok(Ok((_, None))) => {
                tracing::debug!(backend = %lease.addr(), "backend cannot take sessions now")
            }
            Ok(Err(e @ ProxyError::BackendTls { .. })) => {
                tracing::warn!(backend = %lease.addr(), error = %e, "backend not used")
            }
            Ok(Err(e)) => {
                tracing::debug!(backend = %lease.addr(), error = %e, "backend startup failed")
            }
            Err(_) => tracing::debug!(backend = %lease.addr(), "backend startup timed out"),
        }
        drop(lease);
        pause_before_retry(deadline, shutdown, &mut meter).await?;
    }
}

/// Reads one whole message (type, length, body) of at most 64 KiB.
pub(crate) async fn read_message<S: AsyncRead + Unpin>(stream: &mut S) -> std::io::Result<Vec<u8>> {
    let mut head = [0u8; 5];
    stream.read_exact(&mut head).await?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if !(4..=MAX_FIRST_MESSAGE).contains(&len) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "bad message length",
        ));
    }
    let mut msg = vec![0u8; len + 1];
    msg[..5].copy_from_slice(&head);
    stream.read_exact(&mut msg[5..]).await?;
    Ok(msg)
}

/// The backend's answer to the startup, as far as it goes without the client: one message
/// while the client has a request to answer, else through ReadyForQuery (or an error, or
/// 64 KiB). `None`: the server cannot take this session now (it is starting or shutting down,
/// or ended the session before it was ready); nothing has been relayed, so it is retried.
async fn read_answer<S: AsyncRead + Unpin>(stream: &mut S) -> std::io::Result<Option<Vec<u8>>> {
    let mut answer = Vec::new();
    let mut authenticated = false;
    loop {
        let msg = read_message(stream).await?;
        if ends_session_before_ready(&msg) {
            return Ok(None);
        }
        authenticated |= is_authentication_ok(&msg);
        answer.extend_from_slice(&msg);
        let ready_or_failed = matches!(msg[0], b'Z' | b'E');
        if !authenticated || ready_or_failed || answer.len() > MAX_FIRST_MESSAGE {
            return Ok(Some(answer));
        }
    }
}

/// SQLSTATEs of a server that cannot take a session now: starting up or shutting down
/// (`57P03`), or ending sessions for a fast shutdown (`57P01`) or another process's crash
/// (`57P02`).
const NOT_NOW: [&str; 3] = [SQLSTATE_NO_TARGET, SQLSTATE_SHUTDOWN, "57P02"];

/// Whether `msg` is an ErrorResponse with one of the [`NOT_NOW`] SQLSTATEs.
fn ends_session_before_ready(msg: &[u8]) -> bool {
    if msg.first() != Some(&b'E') || msg.len() < 6 {
        return false;
    }
    msg[5..].split(|b| *b == 0).any(|field| {
        field.first() == Some(&b'C') && NOT_NOW.iter().any(|code| &field[1..] == code.as_bytes())
    })
}

/// Whether `msg` is AuthenticationOk: the server needs nothing more from the client.
fn is_authentication_ok(msg: &[u8]) -> bool {
    msg.len() == 9 && msg[0] == b'R' && msg[5..9] == [0, 0, 0, 0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_a_server_that_cannot_take_sessions_now() {
        for code in ["57P03", "57P01", "57P02"] {
            let refused = crate::wire::fatal(code, "the database system is shutting down");
            assert!(ends_session_before_ready(&refused), "{code}");
        }
        assert!(!ends_session_before_ready(&crate::wire::fatal(
            "28P01", "password"
        )));
        assert!(!ends_session_before_ready(&AUTH_OK));
    }

    const AUTH_OK: [u8; 9] = [b'R', 0, 0, 0, 8, 0, 0, 0, 0];
    const READY: [u8; 6] = [b'Z', 0, 0, 0, 5, b'I'];

    fn message(kind: u8, body: &[u8]) -> Vec<u8> {
        let len = u32::try_from(body.len() + 4).unwrap().to_be_bytes();
        [&[kind][..], &len, body].concat()
    }

    /// The answer `read_answer` makes of `sent`, with the server's side left open (more
    /// could come: it must not wait for it).
    async fn answer_to(sent: &[u8]) -> Option<Vec<u8>> {
        let (mut server, mut proxy) = tokio::io::duplex(1 << 16);
        server.write_all(sent).await.unwrap();
        let answer =
            tokio::time::timeout(std::time::Duration::from_secs(5), read_answer(&mut proxy));
        let answer = answer.await.expect("read_answer waited for more").unwrap();
        drop(server);
        answer
    }

    /// Found by pgha-proxy's failover test (one run in the whole suite): a trusted session
    /// opened just before the primary's fast shutdown got AuthenticationOk, then FATAL 57P01
    /// before ReadyForQuery, and the client's connect failed instead of waiting for the new
    /// primary.
    #[tokio::test]
    async fn a_session_ended_before_ready_is_retried_not_relayed() {
        let param = message(b'S', b"server_version\x0017\x00");
        let ended = crate::wire::fatal(
            "57P01",
            "terminating connection due to administrator command",
        );
        assert_eq!(
            answer_to(&[&AUTH_OK[..], &param, &ended].concat()).await,
            None
        );
        // A server that gets ready is relayed whole, through ReadyForQuery.
        let ready = [&AUTH_OK[..], &param, &READY].concat();
        assert_eq!(answer_to(&ready).await, Some(ready));
        // Another error (no such database) is the client's to see.
        let no_db = [
            &AUTH_OK[..],
            &crate::wire::fatal("3D000", "no such database"),
        ]
        .concat();
        assert_eq!(answer_to(&no_db).await, Some(no_db));
    }

    #[tokio::test]
    async fn a_request_for_the_client_is_relayed_at_once() {
        let sasl = message(b'R', b"\x00\x00\x00\x0aSCRAM-SHA-256\x00\x00");
        assert_eq!(answer_to(&sasl).await, Some(sasl));
        let refused = crate::wire::fatal("57P03", "the database system is starting up");
        assert_eq!(answer_to(&refused).await, None);
    }
}
