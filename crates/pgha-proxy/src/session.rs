//! One client's life: startup checks, SSL/GSS negotiation, routing with hold, key capture, splice.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::backend::open_backend;
use crate::cancel::{forward_cancel, CancelGuard, CancelRegistry, CancelRoute, KeyScanner};
use crate::error::ProxyError;
use crate::listener::ListenerCtx;
use crate::route::{connect_held, HoldFailure, HoldMeter, Lease, Role};
use crate::splice::splice;
use crate::startup::{read_first_packet, CancelKey, FirstPacket, StartupPacket};
use crate::wire;

/// SSLRequest as forwarded to the backend.
const SSL_REQUEST_PACKET: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// Reads the client's first packet before `deadline`, answering GSSENCRequest with 'N'; gives
/// up on shutdown.
async fn first_packet(
    ctx: &ListenerCtx,
    client: &mut TcpStream,
    deadline: Instant,
) -> Result<FirstPacket, ProxyError> {
    let cfg = &ctx.shared.config;
    let read = async {
        loop {
            match read_first_packet(client, cfg.max_startup_packet).await? {
                FirstPacket::GssEnc => client.write_all(b"N").await?,
                other => return Ok(other),
            }
        }
    };
    tokio::select! {
        r = tokio::time::timeout_at(deadline, read) => {
            r.map_err(|_| ProxyError::StartupTimeout(cfg.startup_timeout))?
        }
        _ = ctx.shared.shutdown.cancelled() => Err(ProxyError::Shutdown),
    }
}

/// What may follow an 'N' answer to SSLRequest: a StartupMessage, or a CancelRequest (libpq 17
/// and newer send their cancels with the session's sslmode: SSLRequest first).
enum AfterNo {
    Startup(StartupPacket),
    Cancel(CancelKey),
}

/// Reads the packet that must follow an 'N' answer, within a fresh startup timeout.
async fn after_no(ctx: &ListenerCtx, client: &mut TcpStream) -> Result<AfterNo, ProxyError> {
    let deadline = Instant::now() + ctx.shared.config.startup_timeout;
    match first_packet(ctx, client, deadline).await? {
        FirstPacket::Startup(p) => Ok(AfterNo::Startup(p)),
        FirstPacket::Cancel(key) => Ok(AfterNo::Cancel(key)),
        _ => Err(ProxyError::BadStartup(
            "expected a startup message or cancel request",
        )),
    }
}

/// Serves one accepted client until it disconnects or its backend stops being a target.
pub async fn serve(ctx: Arc<ListenerCtx>, mut client: TcpStream) -> Result<(), ProxyError> {
    let cfg = &ctx.shared.config;
    client.set_nodelay(true)?;
    let startup_deadline = Instant::now() + cfg.startup_timeout;
    let first = first_packet(&ctx, &mut client, startup_deadline).await;
    let first = match first {
        Ok(p) => p,
        Err(e @ ProxyError::BadStartup(_)) => {
            let _ = client
                .write_all(&wire::fatal(wire::SQLSTATE_PROTOCOL, &e.to_string()))
                .await;
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    match first {
        FirstPacket::Cancel(key) => {
            cancel(&ctx, key).await;
            Ok(())
        }
        FirstPacket::Ssl => {
            let deadline = Instant::now() + cfg.hold_timeout;
            let mut meter = HoldMeter::new(&ctx.metrics);
            let shutdown = &ctx.shared.shutdown;
            let held = connect_held(
                &ctx.router,
                deadline,
                cfg.connect_timeout,
                shutdown,
                &mut meter,
            );
            let held = held.await;
            drop(meter);
            let (mut backend, lease) = match held {
                Ok(pair) => pair,
                Err(failure) => {
                    // The client waits for 'S'/'N': say 'N', then refuse its startup (or
                    // forward its cancel: its owner need not be a target any more).
                    client.write_all(b"N").await?;
                    return match after_no(&ctx, &mut client).await? {
                        AfterNo::Startup(_) => refuse(&ctx, client, failure).await,
                        AfterNo::Cancel(key) => {
                            cancel(&ctx, key).await;
                            Ok(())
                        }
                    };
                }
            };
            backend.set_nodelay(true)?;
            backend.write_all(&SSL_REQUEST_PACKET).await?;
            let mut answer = [0u8; 1];
            let read = tokio::time::timeout(cfg.connect_timeout, backend.read_exact(&mut answer));
            read.await
                .map_err(|_| ProxyError::StartupTimeout(cfg.connect_timeout))??;
            client.write_all(&answer).await?;
            if answer[0] == b'N' {
                match after_no(&ctx, &mut client).await? {
                    AfterNo::Startup(p) => {
                        start_plain(&ctx, client, p, deadline, Some((backend, lease))).await
                    }
                    AfterNo::Cancel(key) => {
                        // That backend was chosen as a new session's would be, not by the key:
                        // let it go and route the request by its key.
                        drop((backend, lease));
                        cancel(&ctx, key).await;
                        Ok(())
                    }
                }
            } else {
                // TLS from here on (or the server's own error): pass everything through. A
                // cancel inside TLS goes to this backend, chosen as a new session's would be.
                relay(&ctx, client, backend, lease, None).await
            }
        }
        FirstPacket::Startup(p) => {
            let deadline = Instant::now() + cfg.hold_timeout;
            start_plain(&ctx, client, p, deadline, None).await
        }
        FirstPacket::DirectTls(prefix) => {
            // TLS from the first byte: pass it through to a backend chosen as for a new session
            // (which must accept direct TLS: PostgreSQL 17+). A client in a TLS handshake cannot
            // read an ErrorResponse: without a backend it is just closed.
            let deadline = Instant::now() + cfg.hold_timeout;
            let mut meter = HoldMeter::new(&ctx.metrics);
            let shutdown = &ctx.shared.shutdown;
            let held = connect_held(
                &ctx.router,
                deadline,
                cfg.connect_timeout,
                shutdown,
                &mut meter,
            );
            let held = held.await;
            drop(meter);
            let Ok((mut backend, lease)) = held else {
                return Ok(());
            };
            backend.set_nodelay(true)?;
            backend.write_all(&prefix).await?;
            relay(&ctx, client, backend, lease, None).await
        }
        FirstPacket::GssEnc => unreachable!("answered in first_packet"),
    }
}

/// Opens the backend for a plaintext startup (retrying while it cannot take sessions) and
/// relays; refuses the client if no backend could be had before `deadline`.
async fn start_plain(
    ctx: &ListenerCtx,
    client: TcpStream,
    startup: StartupPacket,
    deadline: Instant,
    existing: Option<(TcpStream, Lease)>,
) -> Result<(), ProxyError> {
    let startup = if ctx.router.role() == Role::ReadOnly && ctx.shared.config.ro_default_read_only {
        startup.with_default("default_transaction_read_only", "on")
    } else {
        startup
    };
    match open_backend(ctx, &startup, deadline, existing).await {
        Ok(o) => relay(ctx, client, o.stream, o.lease, Some(o.first)).await,
        Err(failure) => refuse(ctx, client, failure).await,
    }
}

/// Tells a client that no backend could be had: FATAL 57P03 after `hold_timeout`, 57P01 on
/// shutdown.
async fn refuse(
    ctx: &ListenerCtx,
    mut client: TcpStream,
    failure: HoldFailure,
) -> Result<(), ProxyError> {
    let cfg = &ctx.shared.config;
    let (sqlstate, message) = match failure {
        HoldFailure::TimedOut => {
            ctx.metrics.hold_timeouts.fetch_add(1, Relaxed);
            let what = match ctx.router.role() {
                Role::ReadWrite => "no primary",
                Role::ReadOnly => "no read-only target",
            };
            let msg = format!(
                "{what} available: pgha proxy waited {:.1}s (hold_timeout) for one",
                cfg.hold_timeout.as_secs_f64()
            );
            (wire::SQLSTATE_NO_TARGET, msg)
        }
        HoldFailure::Shutdown => (
            wire::SQLSTATE_SHUTDOWN,
            "pgha proxy is shutting down".into(),
        ),
    };
    client.write_all(&wire::fatal(sqlstate, &message)).await?;
    let _ = client.shutdown().await;
    Ok(())
}

/// Relays the backend's first message (if the startup went through the proxy) and the rest of
/// the startup while looking for BackendKeyData, then splices until either side closes or the
/// lease is revoked. The session's key is registered before the client can have it; a session
/// whose key cannot be read (TLS) is registered as such.
async fn relay(
    ctx: &ListenerCtx,
    mut client: TcpStream,
    mut backend: TcpStream,
    lease: Lease,
    first: Option<Vec<u8>>,
) -> Result<(), ProxyError> {
    let m = &ctx.metrics;
    let registry = &ctx.shared.cancels;
    let mut key_guard: Option<CancelGuard> = None;
    let pump = async {
        if let Some(first) = first {
            let mut scan = KeyScan {
                scanner: KeyScanner::default(),
                registry,
                addr: lease.addr(),
                guard: &mut key_guard,
            };
            let done = scan.feed(&first);
            m.bytes_out.fetch_add(first.len() as u64, Relaxed);
            client.write_all(&first).await?;
            if !done && scan_until_ready(&mut client, &mut backend, ctx, &mut scan).await? {
                return Ok(());
            }
            if key_guard.is_none() {
                // No BackendKeyData before ReadyForQuery (or too much to scan).
                key_guard = Some(registry.register_unreadable(Arc::clone(lease.addr())));
            }
        } else {
            key_guard = Some(registry.register_unreadable(Arc::clone(lease.addr())));
        }
        splice(&mut client, &mut backend, &m.bytes_in, &m.bytes_out).await?;
        Ok::<(), ProxyError>(())
    };
    tokio::select! {
        biased;
        r = pump => r,
        _ = lease.token.cancelled() => {
            tracing::info!(backend = %lease.addr(), listener = ctx.router.role().as_str(),
                "closing session: backend is no longer a valid target");
            Err(ProxyError::TargetChanged(lease.addr().to_string()))
        }
        _ = ctx.shared.shutdown.cancelled() => Err(ProxyError::Shutdown),
    }
}

/// A startup's key scan: registers the key as soon as it is complete, before it is relayed.
struct KeyScan<'a> {
    scanner: KeyScanner,
    registry: &'a Arc<CancelRegistry>,
    addr: &'a Arc<str>,
    guard: &'a mut Option<CancelGuard>,
}

impl KeyScan<'_> {
    /// Feeds backend bytes about to be relayed; true once the startup is over.
    fn feed(&mut self, data: &[u8]) -> bool {
        let done = self.scanner.feed(data);
        if self.guard.is_none() {
            if let Some(key) = self.scanner.key() {
                *self.guard = Some(self.registry.register(key, Arc::clone(self.addr)));
            }
        }
        done
    }
}

/// Relays both ways until the backend's ReadyForQuery, capturing its BackendKeyData; true if
/// either side closed first.
async fn scan_until_ready(
    client: &mut TcpStream,
    backend: &mut TcpStream,
    ctx: &ListenerCtx,
    scan: &mut KeyScan<'_>,
) -> Result<bool, ProxyError> {
    let m = &ctx.metrics;
    let mut cbuf = vec![0u8; 4096];
    let mut bbuf = vec![0u8; 8192];
    loop {
        tokio::select! {
            r = client.read(&mut cbuf) => {
                let n = r?;
                if n == 0 {
                    return Ok(true);
                }
                m.bytes_in.fetch_add(n as u64, Relaxed);
                backend.write_all(&cbuf[..n]).await?;
            }
            r = backend.read(&mut bbuf) => {
                let n = r?;
                if n == 0 {
                    return Ok(true);
                }
                m.bytes_out.fetch_add(n as u64, Relaxed);
                let done = scan.feed(&bbuf[..n]);
                client.write_all(&bbuf[..n]).await?;
                if done {
                    return Ok(false);
                }
            }
        }
    }
}

/// Forwards a CancelRequest to the backend that owns `key`; for a key the proxy never saw, only
/// to the backends holding sessions whose key it could not read (TLS), else nowhere.
pub(crate) async fn cancel(ctx: &ListenerCtx, key: CancelKey) {
    ctx.metrics.cancels.fetch_add(1, Relaxed);
    let timeout = ctx.shared.config.connect_timeout;
    let addrs = match ctx.shared.cancels.route(&key) {
        CancelRoute::Owner(addr) => vec![addr],
        CancelRoute::Unreadable(addrs) => {
            ctx.metrics.cancels_unmatched.fetch_add(1, Relaxed);
            addrs
        }
        CancelRoute::Nowhere => {
            ctx.metrics.cancels_unmatched.fetch_add(1, Relaxed);
            tracing::debug!(
                pid = key.pid,
                listener = ctx.router.role().as_str(),
                "cancel request for a session the proxy does not know: dropped"
            );
            Vec::new()
        }
    };
    for addr in addrs {
        ctx.metrics.cancel_forwards.fetch_add(1, Relaxed);
        if let Err(e) = forward_cancel(&addr, &key, timeout).await {
            tracing::debug!(backend = %addr, error = %e, "cancel forward failed");
        }
    }
}

/// Answers a client over `max_client_conn`: completes its startup (so it reads the reply
/// instead of a reset), forwards a cancel request if that is what it sent, else sends 53300.
pub async fn reject_too_many(ctx: Arc<ListenerCtx>, mut client: TcpStream) {
    let cfg = &ctx.shared.config;
    let deadline = Instant::now() + cfg.startup_timeout;
    let first = first_packet(&ctx, &mut client, deadline).await;
    let ok = match first {
        Ok(FirstPacket::Cancel(key)) => return cancel(&ctx, key).await,
        Ok(FirstPacket::Ssl) => {
            if client.write_all(b"N").await.is_err() {
                return;
            }
            match after_no(&ctx, &mut client).await {
                Ok(AfterNo::Cancel(key)) => return cancel(&ctx, key).await,
                Ok(AfterNo::Startup(_)) => true,
                Err(_) => false,
            }
        }
        Ok(FirstPacket::DirectTls(_)) | Err(_) => false,
        Ok(_) => true,
    };
    if ok {
        let msg = format!(
            "sorry, too many clients already (max_client_conn {})",
            cfg.max_client_conn
        );
        let _ = client
            .write_all(&wire::fatal(wire::SQLSTATE_TOO_MANY, &msg))
            .await;
        let _ = client.shutdown().await;
    }
}
