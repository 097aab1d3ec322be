//! One client's life: startup checks, SSL/GSS negotiation, routing with hold, key capture, splice.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::cancel::{forward_cancel, CancelGuard, KeyScanner};
use crate::error::ProxyError;
use crate::listener::ListenerCtx;
use crate::route::{connect_held, HoldFailure, Lease, Role};
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

/// Reads the StartupMessage that must follow an 'N' answer, within a fresh startup timeout.
async fn startup_after_no(
    ctx: &ListenerCtx,
    client: &mut TcpStream,
) -> Result<StartupPacket, ProxyError> {
    let deadline = Instant::now() + ctx.shared.config.startup_timeout;
    match first_packet(ctx, client, deadline).await? {
        FirstPacket::Startup(p) => Ok(p),
        _ => Err(ProxyError::BadStartup("expected a startup message")),
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
            let Some((mut backend, lease)) = route(&ctx, &mut client, true).await? else {
                return Ok(());
            };
            backend.write_all(&SSL_REQUEST_PACKET).await?;
            let mut answer = [0u8; 1];
            let read = tokio::time::timeout(cfg.connect_timeout, backend.read_exact(&mut answer));
            read.await
                .map_err(|_| ProxyError::StartupTimeout(cfg.connect_timeout))??;
            client.write_all(&answer).await?;
            if answer[0] == b'N' {
                let p = startup_after_no(&ctx, &mut client).await?;
                relay(&ctx, client, backend, lease, Some(p)).await
            } else {
                relay(&ctx, client, backend, lease, None).await
            }
        }
        FirstPacket::Startup(p) => {
            let Some((backend, lease)) = route(&ctx, &mut client, false).await? else {
                return Ok(());
            };
            relay(&ctx, client, backend, lease, Some(p)).await
        }
        FirstPacket::GssEnc => unreachable!("answered in first_packet"),
    }
}

/// Chooses and connects a backend, holding as configured. On failure the client has been told
/// (ErrorResponse; after an SSLRequest, an 'N' first) and `None` is returned.
async fn route(
    ctx: &ListenerCtx,
    client: &mut TcpStream,
    after_ssl_request: bool,
) -> Result<Option<(TcpStream, Lease)>, ProxyError> {
    let cfg = &ctx.shared.config;
    let m = &ctx.metrics;
    let deadline = Instant::now() + cfg.hold_timeout;
    let shutdown = &ctx.shared.shutdown;
    let held = connect_held(&ctx.router, deadline, cfg.connect_timeout, shutdown, m).await;
    let (sqlstate, message) = match held {
        Ok((backend, lease)) => {
            backend.set_nodelay(true)?;
            return Ok(Some((backend, lease)));
        }
        Err(HoldFailure::TimedOut) => {
            m.hold_timeouts.fetch_add(1, Relaxed);
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
        Err(HoldFailure::Shutdown) => (
            wire::SQLSTATE_SHUTDOWN,
            "pgha proxy is shutting down".to_string(),
        ),
    };
    if after_ssl_request {
        client.write_all(b"N").await?;
        startup_after_no(ctx, client).await?;
    }
    client.write_all(&wire::fatal(sqlstate, &message)).await?;
    let _ = client.shutdown().await;
    Ok(None)
}

/// Sends the startup packet (if plaintext), relays the backend's first messages while looking
/// for its BackendKeyData, then splices until either side closes or the lease is revoked.
async fn relay(
    ctx: &ListenerCtx,
    mut client: TcpStream,
    mut backend: TcpStream,
    lease: Lease,
    startup: Option<StartupPacket>,
) -> Result<(), ProxyError> {
    let m = &ctx.metrics;
    let mut _key_guard: Option<CancelGuard> = None;
    let pump = async {
        if let Some(p) = startup {
            let p = if ctx.router.role() == Role::ReadOnly && ctx.shared.config.ro_default_read_only
            {
                p.with_default("default_transaction_read_only", "on")
            } else {
                p
            };
            backend.write_all(&p.raw).await?;
            match scan_until_ready(&mut client, &mut backend, ctx).await? {
                Scan::Closed => return Ok(()),
                Scan::Ready(Some(key)) => {
                    _key_guard = Some(ctx.shared.cancels.register(key, Arc::clone(lease.addr())));
                }
                Scan::Ready(None) => {}
            }
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

enum Scan {
    Ready(Option<CancelKey>),
    Closed,
}

/// Relays both ways until the backend's ReadyForQuery, capturing its BackendKeyData.
async fn scan_until_ready(
    client: &mut TcpStream,
    backend: &mut TcpStream,
    ctx: &ListenerCtx,
) -> Result<Scan, ProxyError> {
    let m = &ctx.metrics;
    let mut scanner = KeyScanner::default();
    let mut cbuf = vec![0u8; 4096];
    let mut bbuf = vec![0u8; 8192];
    loop {
        tokio::select! {
            r = client.read(&mut cbuf) => {
                let n = r?;
                if n == 0 {
                    return Ok(Scan::Closed);
                }
                m.bytes_in.fetch_add(n as u64, Relaxed);
                backend.write_all(&cbuf[..n]).await?;
            }
            r = backend.read(&mut bbuf) => {
                let n = r?;
                if n == 0 {
                    return Ok(Scan::Closed);
                }
                m.bytes_out.fetch_add(n as u64, Relaxed);
                let done = scanner.feed(&bbuf[..n]);
                client.write_all(&bbuf[..n]).await?;
                if done {
                    return Ok(Scan::Ready(scanner.key()));
                }
            }
        }
    }
}

/// Forwards a CancelRequest to the backend that owns `key`, or to every current target.
pub(crate) async fn cancel(ctx: &ListenerCtx, key: CancelKey) {
    ctx.metrics.cancels.fetch_add(1, Relaxed);
    let timeout = ctx.shared.config.connect_timeout;
    let addrs: Vec<String> = match ctx.shared.cancels.lookup(&key) {
        Some(addr) => vec![addr.to_string()],
        None => {
            let t = ctx.shared.targets.borrow();
            let mut all: Vec<String> = t.rw.iter().map(|b| b.addr.clone()).collect();
            all.extend(t.ro.iter().map(|s| s.backend.addr.clone()));
            all.sort();
            all.dedup();
            all
        }
    };
    for addr in addrs {
        if let Err(e) = forward_cancel(&addr, key, timeout).await {
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
            client.write_all(b"N").await.is_ok()
                && startup_after_no(&ctx, &mut client).await.is_ok()
        }
        Ok(_) => true,
        Err(_) => false,
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
