//! TLS passthrough with no backend before the client's first TLS record is complete.
//!
//! A client's SSLRequest is answered from what the listener's backends answered last (asked by
//! one short connection when that is unknown or older than [`ANSWER_TTL`], however many clients
//! ask at once): 'N' leads to a plaintext startup like any other; after 'S' the proxy reads the
//! client's first TLS record (its ClientHello), and only then connects, sends SSLRequest,
//! checks the 'S' and passes the record and the rest through. A direct TLS handshake
//! (PostgreSQL 17's `sslnegotiation=direct`) is read to the end of its first record the same
//! way. So a client that sends 8 bytes and stalls costs PostgreSQL nothing.

use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::cancel::cancel;
use crate::error::ProxyError;
use crate::limits::tune_socket;
use crate::listener::ListenerCtx;
use crate::proxy_auth::Peer;
use crate::route::{connect_held, pause_before_retry, HoldFailure, HoldMeter};
use crate::session::{after_no, before_deadline, refuse, relay, start_plain, AfterNo};
use crate::wire::TLS_HANDSHAKE;

/// SSLRequest as sent to a backend.
const SSL_REQUEST_PACKET: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
/// How long a learned answer is used without a backend saying it again (every TLS session
/// confirms an 'S'; an 'N' is asked again after this long).
const ANSWER_TTL: Duration = Duration::from_secs(30);
/// Longest first TLS record accepted: 2^14 bytes of plaintext (RFC 8446, 5.1).
const MAX_TLS_RECORD: usize = 1 << 14;

/// What one listener's backends answered to SSLRequest, and when.
#[derive(Default)]
pub(crate) struct SslAnswer {
    seen: Mutex<Option<(u8, Instant)>>,
    /// Held while a backend is being asked, so that a burst of clients makes one connection.
    asking: tokio::sync::Mutex<()>,
}

impl SslAnswer {
    fn fresh(&self) -> Option<u8> {
        let seen = *self.seen.lock().expect("ssl answer poisoned");
        seen.filter(|(_, at)| at.elapsed() < ANSWER_TTL)
            .map(|(a, _)| a)
    }

    fn learn(&self, answer: u8) {
        *self.seen.lock().expect("ssl answer poisoned") = Some((answer, Instant::now()));
    }

    /// The answer, learned or asked of a backend chosen as a new session's would be (waiting
    /// for one until `deadline`).
    async fn get(
        &self,
        ctx: &ListenerCtx,
        deadline: Instant,
        meter: &mut HoldMeter<'_>,
    ) -> Result<u8, HoldFailure> {
        if let Some(a) = self.fresh() {
            return Ok(a);
        }
        let cfg = &ctx.shared.config;
        let shutdown = &ctx.shared.shutdown;
        let _asking = tokio::select! {
            g = tokio::time::timeout_at(deadline, self.asking.lock()) => {
                g.map_err(|_| HoldFailure::TimedOut)?
            }
            _ = shutdown.cancelled() => return Err(HoldFailure::Shutdown),
        };
        loop {
            if let Some(a) = self.fresh() {
                return Ok(a);
            }
            let (mut backend, lease) =
                connect_held(&ctx.router, deadline, cfg.connect_timeout, shutdown, meter).await?;
            match ask(&mut backend, within(deadline, cfg.connect_timeout)).await {
                Ok(a) => {
                    self.learn(a);
                    return Ok(a);
                }
                Err(e) => {
                    tracing::debug!(backend = %lease.addr(), error = %e, "SSLRequest not answered")
                }
            }
            drop((backend, lease));
            pause_before_retry(deadline, shutdown, meter).await?;
        }
    }
}

/// Sends SSLRequest and reads the answer, 'S' or 'N' (anything else is an error).
pub(crate) async fn ask(backend: &mut TcpStream, within: Duration) -> std::io::Result<u8> {
    backend.write_all(&SSL_REQUEST_PACKET).await?;
    let mut answer = [0u8; 1];
    tokio::time::timeout(within, backend.read_exact(&mut answer))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    match answer[0] {
        a @ (b'S' | b'N') => Ok(a),
        other => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("answer {other:#04x} to SSLRequest"),
        )),
    }
}

/// Serves a client whose first packet was SSLRequest.
pub(crate) async fn after_ssl_request(
    ctx: &ListenerCtx,
    mut client: TcpStream,
) -> Result<(), ProxyError> {
    let cfg = &ctx.shared.config;
    let deadline = Instant::now() + cfg.hold_timeout;
    let mut meter = HoldMeter::new(&ctx.metrics);
    let answer = ctx.ssl.get(ctx, deadline, &mut meter).await;
    drop(meter);
    if answer == Ok(b'S') {
        client.write_all(b"S").await?;
        let hello = first_record(ctx, &mut client, Vec::new()).await?;
        return passthrough(ctx, client, hello, deadline, true).await;
    }
    // 'N', or no backend to ask: the client may go on in plaintext, or send a cancel (libpq 17+
    // sends its cancels with the session's sslmode).
    client.write_all(b"N").await?;
    match after_no(ctx, &mut client).await? {
        AfterNo::Startup(p) => match answer {
            Ok(_) => {
                let peer = Peer::plain(&client);
                start_plain(ctx, client, p, deadline, peer).await
            }
            Err(failure) => refuse(ctx, client, failure).await,
        },
        AfterNo::Cancel(key) => {
            cancel(ctx, key).await;
            Ok(())
        }
    }
}

/// Serves a client that started a TLS handshake with no SSLRequest (`prefix`: its first bytes).
pub(crate) async fn direct(
    ctx: &ListenerCtx,
    mut client: TcpStream,
    prefix: Vec<u8>,
    startup_deadline: Instant,
) -> Result<(), ProxyError> {
    let read = read_tls_record(&mut client, prefix);
    let hello = before_deadline(ctx, startup_deadline, read).await?;
    let deadline = Instant::now() + ctx.shared.config.hold_timeout;
    passthrough(ctx, client, hello, deadline, false).await
}

/// The client's first TLS record, within a fresh startup timeout.
async fn first_record(
    ctx: &ListenerCtx,
    client: &mut TcpStream,
    prefix: Vec<u8>,
) -> Result<Vec<u8>, ProxyError> {
    let deadline = Instant::now() + ctx.shared.config.startup_timeout;
    before_deadline(ctx, deadline, read_tls_record(client, prefix)).await
}

/// Connects a backend for a TLS session whose first record is `hello` (sending SSLRequest
/// first, and requiring 'S', when `ssl_request`), forwards the record and relays. A client in
/// a TLS handshake cannot read an ErrorResponse: without a backend it is just closed. Until
/// the record is forwarded nothing reached the backend: a backend that does not answer the
/// SSLRequest in time, or stops being the target meanwhile, is left for the current target,
/// all within the hold `deadline`.
async fn passthrough(
    ctx: &ListenerCtx,
    client: TcpStream,
    hello: Vec<u8>,
    deadline: Instant,
    ssl_request: bool,
) -> Result<(), ProxyError> {
    let cfg = &ctx.shared.config;
    let mut meter = HoldMeter::new(&ctx.metrics);
    let shutdown = &ctx.shared.shutdown;
    let (mut backend, lease) = loop {
        let held = connect_held(
            &ctx.router,
            deadline,
            cfg.connect_timeout,
            shutdown,
            &mut meter,
        );
        let Ok((mut backend, lease)) = held.await else {
            return Ok(());
        };
        tune_socket(&backend, cfg);
        if !ssl_request {
            break (backend, lease);
        }
        match ask(&mut backend, within(deadline, cfg.connect_timeout)).await {
            Ok(_) if lease.token.is_cancelled() => {
                tracing::debug!(backend = %lease.addr(), "target changed during the SSLRequest")
            }
            Ok(answer) => {
                ctx.ssl.learn(answer);
                if answer != b'S' {
                    return Err(ProxyError::BackendRefusedTls(lease.addr().to_string()));
                }
                break (backend, lease);
            }
            Err(e) => {
                tracing::debug!(backend = %lease.addr(), error = %e, "SSLRequest not answered")
            }
        }
        drop((backend, lease));
        if pause_before_retry(deadline, shutdown, &mut meter)
            .await
            .is_err()
        {
            return Ok(());
        }
    };
    drop(meter);
    backend.write_all(&hello).await?;
    relay(ctx, client, backend, lease, None).await
}

/// What is left of `deadline`, at most `bound`.
fn within(deadline: Instant, bound: Duration) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .min(bound)
}

/// Completes the TLS handshake record whose first bytes are `record` (possibly none): its
/// 5-byte header, then as many bytes as the header says.
pub(crate) async fn read_tls_record<R: AsyncRead + Unpin>(
    r: &mut R,
    mut record: Vec<u8>,
) -> Result<Vec<u8>, ProxyError> {
    let have = record.len();
    if have < 5 {
        record.resize(5, 0);
        r.read_exact(&mut record[have..]).await?;
    }
    if record[0] != TLS_HANDSHAKE || record[1] != 3 {
        return Err(ProxyError::BadStartup("not a TLS handshake record"));
    }
    let len = u16::from_be_bytes([record[3], record[4]]) as usize;
    if len == 0 || len > MAX_TLS_RECORD || record.len() > 5 + len {
        return Err(ProxyError::BadStartup("bad TLS record length"));
    }
    let have = record.len();
    record.resize(5 + len, 0);
    r.read_exact(&mut record[have..]).await?;
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(bytes: &[u8], prefix: usize) -> Result<Vec<u8>, ProxyError> {
        let mut rest = &bytes[prefix..];
        read_tls_record(&mut rest, bytes[..prefix].to_vec()).await
    }

    #[tokio::test]
    async fn reads_one_whole_record() {
        let mut record = vec![0x16, 3, 1, 0, 3, 7, 8, 9];
        for prefix in [0, 4, 5, 6] {
            assert_eq!(
                read(&record, prefix).await.unwrap(),
                record,
                "prefix {prefix}"
            );
        }
        record.push(10);
        assert_eq!(read(&record, 0).await.unwrap(), record[..8]);
        assert!(read(&record[..7], 4).await.is_err(), "cut short");
        assert!(
            read(&[0x17, 3, 1, 0, 1, 0], 0).await.is_err(),
            "not a handshake"
        );
        assert!(read(&[0x16, 3, 1, 0, 0], 0).await.is_err(), "empty");
        assert!(read(&[0x16, 3, 1, 0x40, 1], 0).await.is_err(), "over 2^14");
    }
}
