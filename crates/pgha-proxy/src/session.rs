//! One client's life: startup checks, SSL/GSS negotiation, routing with hold, key capture, splice.

use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::backend::open_backend;
use crate::cancel::{forward_cancel, CancelGuard, CancelRegistry, CancelRoute, KeyScanner};
use crate::error::ProxyError;
use crate::limits::tune_socket;
use crate::listener::ListenerCtx;
use crate::route::{HoldFailure, Lease, Role};
use crate::splice::{splice, IdleElapsed};
use crate::startup::{read_first_packet, CancelKey, FirstPacket, StartupPacket};
use crate::tls;
use crate::wire;

/// Runs `read` (a client's part of the startup) until `deadline` (then: startup timeout);
/// gives up on shutdown.
pub(crate) async fn before_deadline<T>(
    ctx: &ListenerCtx,
    deadline: Instant,
    read: impl Future<Output = Result<T, ProxyError>>,
) -> Result<T, ProxyError> {
    let cfg = &ctx.shared.config;
    tokio::select! {
        r = tokio::time::timeout_at(deadline, read) => {
            r.map_err(|_| ProxyError::StartupTimeout(cfg.startup_timeout))?
        }
        _ = ctx.shared.shutdown.cancelled() => Err(ProxyError::Shutdown),
    }
}

/// Reads the client's first packet before `deadline`, answering GSSENCRequest with 'N'.
async fn first_packet(
    ctx: &ListenerCtx,
    client: &mut TcpStream,
    deadline: Instant,
) -> Result<FirstPacket, ProxyError> {
    let max = ctx.shared.config.max_startup_packet;
    let read = async {
        loop {
            match read_first_packet(client, max).await? {
                FirstPacket::GssEnc => client.write_all(b"N").await?,
                other => return Ok(other),
            }
        }
    };
    before_deadline(ctx, deadline, read).await
}

/// What may follow an 'N' answer to SSLRequest: a StartupMessage, or a CancelRequest (libpq 17
/// and newer send their cancels with the session's sslmode: SSLRequest first).
pub(crate) enum AfterNo {
    Startup(StartupPacket),
    Cancel(CancelKey),
}

/// Reads the packet that must follow an 'N' answer, within a fresh startup timeout.
pub(crate) async fn after_no(
    ctx: &ListenerCtx,
    client: &mut TcpStream,
) -> Result<AfterNo, ProxyError> {
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
    tune_socket(&client, cfg);
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
        FirstPacket::Ssl => tls::after_ssl_request(&ctx, client).await,
        FirstPacket::Startup(p) => {
            let deadline = Instant::now() + cfg.hold_timeout;
            start_plain(&ctx, client, p, deadline).await
        }
        FirstPacket::DirectTls(prefix) => tls::direct(&ctx, client, prefix, startup_deadline).await,
        FirstPacket::GssEnc => unreachable!("answered in first_packet"),
    }
}

/// Opens the backend for a plaintext startup (retrying while it cannot take sessions) and
/// relays; refuses the client if no backend could be had before `deadline`.
pub(crate) async fn start_plain(
    ctx: &ListenerCtx,
    client: TcpStream,
    startup: StartupPacket,
    deadline: Instant,
) -> Result<(), ProxyError> {
    let startup = if ctx.router.role() == Role::ReadOnly && ctx.shared.config.ro_default_read_only {
        startup.with_default("default_transaction_read_only", "on")
    } else {
        startup
    };
    match open_backend(ctx, &startup, deadline).await {
        Ok(o) => relay(ctx, client, o.stream, o.lease, Some(o.first)).await,
        Err(failure) => refuse(ctx, client, failure).await,
    }
}

/// Tells a client that no backend could be had: FATAL 57P03 after `hold_timeout`, 57P01 on
/// shutdown.
pub(crate) async fn refuse(
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
/// the startup while looking for BackendKeyData (within `auth_timeout`), then splices until
/// either side closes, the session idles past `idle_timeout` or the lease is revoked. The
/// session's key is registered before the client can have it; a session
/// whose key cannot be read (TLS) is registered as such.
pub(crate) async fn relay(
    ctx: &ListenerCtx,
    mut client: TcpStream,
    mut backend: TcpStream,
    lease: Lease,
    first: Option<Vec<u8>>,
) -> Result<(), ProxyError> {
    let m = &ctx.metrics;
    let cfg = &ctx.shared.config;
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
            if !done {
                let scan = scan_until_ready(&mut client, &mut backend, ctx, &mut scan);
                let scan = tokio::time::timeout(cfg.auth_timeout, scan).await;
                if scan.map_err(|_| ProxyError::AuthTimeout(cfg.auth_timeout))?? {
                    return Ok(());
                }
            }
            if key_guard.is_none() {
                // No BackendKeyData before ReadyForQuery (or too much to scan).
                key_guard = Some(registry.register_unreadable(Arc::clone(lease.addr())));
            }
        } else {
            key_guard = Some(registry.register_unreadable(Arc::clone(lease.addr())));
        }
        splice(&mut client, &mut backend, &m.bytes_in, &m.bytes_out)
            .idle_timeout(cfg.idle_timeout)
            .await
            .map_err(|e| match IdleElapsed::of(&e) {
                Some(IdleElapsed(after)) => ProxyError::IdleTimeout(after),
                None => ProxyError::Io(e),
            })
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
