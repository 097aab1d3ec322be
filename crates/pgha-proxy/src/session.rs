//! One client's life: startup checks, SSL/GSS negotiation, routing with hold, key capture, splice.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::backend::open_backend;
use crate::cancel::{forward_cancel, CancelGuard, KeyScanner};
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
                    // The client waits for 'S'/'N': say 'N', take its startup, then refuse.
                    client.write_all(b"N").await?;
                    startup_after_no(&ctx, &mut client).await?;
                    return refuse(&ctx, client, failure).await;
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
                let p = startup_after_no(&ctx, &mut client).await?;
                start_plain(&ctx, client, p, deadline, Some((backend, lease))).await
            } else {
                // TLS from here on (or the server's own error): pass everything through.
                relay(&ctx, client, backend, lease, None).await
            }
        }
        FirstPacket::Startup(p) => {
            let deadline = Instant::now() + cfg.hold_timeout;
            start_plain(&ctx, client, p, deadline, None).await
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
/// lease is revoked.
async fn relay(
    ctx: &ListenerCtx,
    mut client: TcpStream,
    mut backend: TcpStream,
    lease: Lease,
    first: Option<Vec<u8>>,
) -> Result<(), ProxyError> {
    let m = &ctx.metrics;
    let mut _key_guard: Option<CancelGuard> = None;
    let pump = async {
        if let Some(first) = first {
            m.bytes_out.fetch_add(first.len() as u64, Relaxed);
            client.write_all(&first).await?;
            let mut scanner = KeyScanner::default();
            let scan = if scanner.feed(&first) {
                Scan::Ready(scanner.key())
            } else {
                scan_until_ready(&mut client, &mut backend, ctx, &mut scanner).await?
            };
            match scan {
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
    scanner: &mut KeyScanner,
) -> Result<Scan, ProxyError> {
    let m = &ctx.metrics;
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
