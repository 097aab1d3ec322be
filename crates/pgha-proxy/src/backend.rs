//! Opens a session's backend: held connect, TLS when the proxy terminates it, startup packet,
//! retry while the server says 57P03.
//!
//! A server shutting down or starting up answers `57P03`; retrying within the hold makes a
//! failover look like a wait to clients, not an error. A member whose certificate does not
//! verify is never sent the startup; it is retried like one that refuses connections.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::error::ProxyError;
use crate::limits::tune_socket;
use crate::listener::ListenerCtx;
use crate::route::{connect_held, pause_before_retry, HoldFailure, HoldMeter, Lease};
use crate::startup::StartupPacket;
use crate::stream::BackendConn;
use crate::wire::SQLSTATE_NO_TARGET;

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
            let first = read_message(&mut stream).await?;
            Ok::<_, ProxyError>((stream, first))
        };
        match tokio::time::timeout(wait, attempt).await {
            Ok(Ok((stream, first))) if !is_cannot_connect_now(&first) => {
                return Ok(Opened {
                    stream,
                    lease,
                    first,
                });
            }
            Ok(Ok(_)) => {
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

/// Whether `msg` is an ErrorResponse with SQLSTATE 57P03.
fn is_cannot_connect_now(msg: &[u8]) -> bool {
    if msg.first() != Some(&b'E') || msg.len() < 6 {
        return false;
    }
    msg[5..]
        .split(|b| *b == 0)
        .any(|field| field.first() == Some(&b'C') && &field[1..] == SQLSTATE_NO_TARGET.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_57p03() {
        let shutting_down = crate::wire::fatal("57P03", "the database system is shutting down");
        assert!(is_cannot_connect_now(&shutting_down));
        assert!(!is_cannot_connect_now(&crate::wire::fatal(
            "28P01", "password"
        )));
        assert!(!is_cannot_connect_now(&[b'R', 0, 0, 0, 8, 0, 0, 0, 0]));
    }
}
