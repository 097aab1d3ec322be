//! One client's life: startup checks, SSL/GSS negotiation, routing with hold, key capture, splice.

use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::backend::open_backend;
use crate::cancel::{cancel, CancelGuard};
use crate::error::ProxyError;
use crate::key_scan::{scan_until_ready, KeyScan};
use crate::limits::tune_socket;
use crate::listener::ListenerCtx;
use crate::proxy_auth::{self, Peer};
use crate::route::{HoldFailure, Lease, Role, Served};
use crate::sasl::SaslFilter;
use crate::splice::{splice, IdleElapsed};
use crate::startup::{read_first_packet, CancelKey, FirstPacket, StartupPacket};
use crate::startup_scan::StartupScanner;
use crate::{terminate, tls, wire};

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
        // Terminated sessions hold TLS state: boxed, so that the others do not pay its size.
        FirstPacket::Ssl => match &ctx.shared.terminator {
            Some(t) => Box::pin(terminate::after_ssl_request(&ctx, client, t)).await,
            None => tls::after_ssl_request(&ctx, client).await,
        },
        FirstPacket::Startup(_) if ctx.shared.terminator.as_ref().is_some_and(|t| t.require) => {
            let msg = "pgha proxy accepts TLS connections only: connect with sslmode=require \
                       or stronger (verify-full)";
            let _ = client
                .write_all(&wire::fatal(wire::SQLSTATE_INVALID_AUTHORIZATION, msg))
                .await;
            Err(ProxyError::TlsRequired)
        }
        FirstPacket::Startup(p) => {
            let deadline = Instant::now() + cfg.hold_timeout;
            let peer = Peer::plain(&client);
            start_plain(&ctx, client, p, deadline, peer).await
        }
        FirstPacket::DirectTls(prefix) => match &ctx.shared.terminator {
            Some(t) => Box::pin(terminate::direct(&ctx, client, prefix, startup_deadline, t)).await,
            None => tls::direct(&ctx, client, prefix, startup_deadline).await,
        },
        FirstPacket::GssEnc => unreachable!("answered in first_packet"),
    }
}

/// Opens the backend for a startup read in the clear (from the client's TCP stream, or inside
/// the proxy's TLS when `peer.tls`), retrying while it cannot take sessions, and relays;
/// refuses the client if no backend could be had before `deadline`.
pub(crate) async fn start_plain<C: AsyncRead + AsyncWrite + Unpin>(
    ctx: &ListenerCtx,
    mut client: C,
    startup: StartupPacket,
    deadline: Instant,
    peer: Peer,
) -> Result<(), ProxyError> {
    let startup = if ctx.router.role() == Role::ReadOnly && ctx.shared.config.ro_default_read_only {
        startup.with_default("default_transaction_read_only", "on")
    } else {
        startup
    };
    match open_backend(ctx, &startup, deadline).await {
        Ok(mut o) => {
            // The proxy authenticates terminated clients itself when it can (boxed: only
            // those sessions pay for the exchange's state).
            let first = match ctx.shared.verifiers {
                Some(_) => {
                    let (stream, lease) = (&mut o.stream, &o.lease);
                    let auth = proxy_auth::authenticate(
                        ctx,
                        &mut client,
                        stream,
                        lease,
                        &startup,
                        o.first,
                        peer,
                    );
                    Box::pin(auth).await?
                }
                None => o.first,
            };
            relay(ctx, client, o.stream, o.lease, Some(first)).await
        }
        Err(failure) => refuse(ctx, client, failure).await,
    }
}

/// How often at most a refusal after `hold_timeout` is said in the log.
pub(crate) const REFUSALS_SAID_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Logs a refusal after `hold_timeout` (`msg`, what the client is told) and why there was no
/// target, at most once every [`REFUSALS_SAID_EVERY`].
fn say_refusal(ctx: &ListenerCtx, msg: &str) {
    let now = Instant::now();
    {
        let mut said = ctx.refusal_said.lock().expect("refusal_said lock");
        if said.is_some_and(|at| now.duration_since(at) < REFUSALS_SAID_EVERY) {
            return;
        }
        *said = Some(now);
    }
    let cfg = &ctx.shared.config;
    let lag = cfg.ro_max_lag_bytes.map_or("streaming".to_string(), |b| {
        format!("within {b} bytes of the primary")
    });
    let why = match ctx.router.role() {
        Role::ReadWrite => "the proxy's lines above say why there is no primary".to_string(),
        Role::ReadOnly if cfg.ro_fallback_to_primary => {
            format!("no standby {lag} (ro_max_lag_bytes), and no primary either")
        }
        Role::ReadOnly => {
            format!("no standby {lag} (ro_max_lag_bytes), and ro_fallback_to_primary is off")
        }
    };
    tracing::warn!(
        listener = ctx.router.role().as_str(),
        generation = ctx.router.targets().borrow().generation,
        "proxy: a session refused: {msg} (SQLSTATE 57P03): {why}; said at most every {} s, \
         hold_timeouts_total counts each",
        REFUSALS_SAID_EVERY.as_secs()
    );
}

/// Tells a client that no backend could be had: FATAL 57P03 after `hold_timeout`, 57P01 on
/// shutdown.
pub(crate) async fn refuse<C: AsyncWrite + Unpin>(
    ctx: &ListenerCtx,
    mut client: C,
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
            say_refusal(ctx, &msg);
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
/// whose key cannot be read (TLS passed through) is registered as such. With a TLS backend
/// (the proxy terminates TLS), the startup goes through a [`SaslFilter`].
pub(crate) async fn relay<C, B>(
    ctx: &ListenerCtx,
    mut client: C,
    mut backend: B,
    lease: Lease,
    first: Option<Vec<u8>>,
) -> Result<(), ProxyError>
where
    C: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let m = &ctx.metrics;
    let cfg = &ctx.shared.config;
    let registry = &ctx.shared.cancels;
    let mut key_guard: Option<CancelGuard> = None;
    let owner = lease.owner();
    let pump = async {
        if let Some(first) = first {
            let mut scan = KeyScan {
                scanner: StartupScanner::default(),
                must_be: match (ctx.router.role(), lease.served()) {
                    (Role::ReadWrite, _) => Some(Served::Primary),
                    (Role::ReadOnly, Served::Standby) => Some(Served::Standby),
                    // the primary as a read-only fallback: a standby would serve as well
                    (Role::ReadOnly, Served::Primary) => None,
                },
                registry,
                owner: &owner,
                guard: &mut key_guard,
                sasl: ctx.shared.terminator.is_some().then(SaslFilter::default),
            };
            m.bytes_out.fetch_add(first.len() as u64, Relaxed);
            let (first, done) = match scan.feed(&first) {
                Ok(fed) => fed,
                Err(e) => return refuse_in_startup(&mut client, ctx, e).await,
            };
            client.write_all(&first).await?;
            if !done {
                let scan = scan_until_ready(&mut client, &mut backend, ctx, &mut scan);
                let scan = tokio::time::timeout(cfg.auth_timeout, scan).await;
                match scan.map_err(|_| ProxyError::AuthTimeout(cfg.auth_timeout))? {
                    Ok(true) => return Ok(()),
                    Ok(false) => {}
                    Err(e) => return refuse_in_startup(&mut client, ctx, e).await,
                }
            }
            if key_guard.is_none() {
                // No BackendKeyData before ReadyForQuery (or too much to scan).
                key_guard = Some(registry.register_unreadable(owner.clone()));
            }
        } else {
            key_guard = Some(registry.register_unreadable(owner.clone()));
        }
        splice(&mut client, &mut backend, &m.bytes_in, &m.bytes_out)
            .idle_timeout(cfg.idle_timeout)
            .await
            .map_err(|e| match IdleElapsed::of(&e) {
                Some(IdleElapsed(after)) => ProxyError::IdleTimeout(after),
                None => ProxyError::Io(e),
            })
    };
    // A revoked target first: not one more byte of a session that must close.
    tokio::select! {
        biased;
        _ = lease.token.cancelled() => {
            tracing::info!(backend = %lease.addr(), listener = ctx.router.role().as_str(),
                "closing session: backend is no longer a valid target");
            Err(ProxyError::TargetChanged(lease.addr().to_string()))
        }
        _ = ctx.shared.shutdown.cancelled() => Err(ProxyError::Shutdown),
        r = pump => r,
    }
}

/// Ends a startup the scan refused, telling the client why in an ErrorResponse when the client
/// can act on it; answers the error.
async fn refuse_in_startup<C>(
    client: &mut C,
    ctx: &ListenerCtx,
    e: ProxyError,
) -> Result<(), ProxyError>
where
    C: AsyncWrite + Unpin,
{
    let (sqlstate, message) = match &e {
        ProxyError::ChannelBinding => (
            wire::SQLSTATE_INVALID_AUTHORIZATION,
            "pgha proxy terminates TLS and relays this role's SCRAM to PostgreSQL (it could not \
             read its SCRAM verifier), so channel binding cannot reach PostgreSQL: connect with \
             channel_binding=disable (sslmode=verify-full authenticates the proxy)"
                .to_string(),
        ),
        ProxyError::BackendInRecovery(addr) => {
            tracing::warn!(backend = %addr, "read-write session refused in its startup: the \
                backend answered in recovery (the primary changed since it was last confirmed); \
                new sessions wait for the primary to be checked again");
            ctx.router.met_a_standby();
            (
                wire::SQLSTATE_NO_TARGET,
                format!(
                    "pgha proxy: the primary changed while this session started ({addr} is in \
                     recovery now); connect again"
                ),
            )
        }
        ProxyError::BackendNotInRecovery(addr) => {
            tracing::warn!(backend = %addr, "read-only session refused in its startup: the \
                standby it was sent to answered as a primary (promoted since it was last \
                checked); the targets are checked again now");
            ctx.router.met_a_primary();
            (
                wire::SQLSTATE_NO_TARGET,
                format!(
                    "pgha proxy: the standby {addr} was promoted while this session started; \
                     connect again"
                ),
            )
        }
        _ => return Err(e),
    };
    let _ = client.write_all(&wire::fatal(sqlstate, &message)).await;
    let _ = client.shutdown().await;
    Err(e)
}
