//! A listening socket: accepts clients, bounds their number, spawns sessions, enforces targets.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cancel::CancelRegistry;
use crate::config::ProxyConfig;
use crate::error::ProxyError;
use crate::metrics::ListenerMetrics;
use crate::route::Router;
use crate::session;
use crate::terminate::Terminator;
use crate::tls::SslAnswer;
use crate::verifiers::Verifiers;
use crate::wire;

/// State shared by all listeners of one proxy.
pub(crate) struct Shared {
    pub(crate) config: ProxyConfig,
    /// TLS terminated in the proxy, when configured.
    pub(crate) terminator: Option<Terminator>,
    /// Where the proxy reads SCRAM verifiers to authenticate terminated clients itself.
    pub(crate) verifiers: Option<Verifiers>,
    pub(crate) cancels: Arc<CancelRegistry>,
    pub(crate) clients: AtomicUsize,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tasks: TaskTracker,
}

/// What a session needs from its listener.
pub(crate) struct ListenerCtx {
    pub(crate) shared: Arc<Shared>,
    pub(crate) router: Arc<Router>,
    pub(crate) metrics: Arc<ListenerMetrics>,
    /// What this listener's backends answer to SSLRequest.
    pub(crate) ssl: SslAnswer,
    /// When a refusal after `hold_timeout` was last said (at most one line every
    /// [`crate::session::REFUSALS_SAID_EVERY`]; `hold_timeouts_total` counts each).
    pub(crate) refusal_said: std::sync::Mutex<Option<tokio::time::Instant>>,
}

/// Counts a client against `max_client_conn` and its listener's active gauge while alive.
pub(crate) struct ClientSlot(pub(crate) Arc<ListenerCtx>);

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.0.shared.clients.fetch_sub(1, Relaxed);
        self.0.metrics.active.fetch_sub(1, Relaxed);
    }
}

/// Binds `copies` sockets to `addr` with SO_REUSEPORT (one per worker thread, the kernel
/// spreads connections over them) and a deep accept backlog for bursts of clients. With port 0,
/// the first socket picks the port and the others join it. An address some socket already
/// listens on is refused: with SO_REUSEPORT these sockets would join another process's (of
/// the same user), and the kernel would split new sessions between two proxies that may follow
/// different leases, or different clusters (a configuration copied without its port changed).
pub(crate) fn bind(addr: &str, copies: usize) -> Result<Vec<std::net::TcpListener>, ProxyError> {
    let err = |source| ProxyError::Bind {
        addr: addr.to_string(),
        source,
    };
    let mut sa: SocketAddr = addr.parse().map_err(|_| {
        err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "expected ip:port",
        ))
    })?;
    if sa.port() != 0 {
        refuse_if_listened_on(sa).map_err(err)?;
    }
    let mut out = Vec::with_capacity(copies.max(1));
    for _ in 0..copies.max(1) {
        let socket = if sa.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        };
        let socket = socket.map_err(err)?;
        socket.set_reuseaddr(true).map_err(err)?;
        socket.set_reuseport(copies > 1).map_err(err)?;
        socket.bind(sa).map_err(err)?;
        let listener = socket.listen(4096).map_err(err)?;
        sa = listener.local_addr().map_err(err)?;
        out.push(listener.into_std().map_err(err)?);
    }
    Ok(out)
}

/// Binds a socket without SO_REUSEPORT to `sa` and lets it go: that fails while any socket,
/// SO_REUSEPORT or not, listens there (SO_REUSEADDR lets it past connections in TIME_WAIT).
fn refuse_if_listened_on(sa: SocketAddr) -> std::io::Result<()> {
    let probe = if sa.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }?;
    probe.set_reuseaddr(true)?;
    probe.bind(sa).map_err(|e| match e.kind() {
        std::io::ErrorKind::AddrInUse => std::io::Error::new(
            e.kind(),
            "another process listens on it (another pgha proxy, or a PgBouncer?): \
             stop it or choose another port",
        ),
        _ => e,
    })
}

/// Accepts until shutdown.
pub(crate) async fn accept_loop(ctx: Arc<ListenerCtx>, listener: TcpListener) {
    let shared = Arc::clone(&ctx.shared);
    loop {
        let accepted = tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        let (client, peer) = match accepted {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                ctx.metrics.errors.fetch_add(1, Relaxed);
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            }
        };
        ctx.metrics.total.fetch_add(1, Relaxed);
        let cap = shared.config.max_client_conn;
        let claimed = shared
            .clients
            .fetch_update(Relaxed, Relaxed, |n| (n < cap).then_some(n + 1));
        if claimed.is_err() {
            ctx.metrics.rejected.fetch_add(1, Relaxed);
            refuse_over_cap(client, cap);
            continue;
        }
        ctx.metrics.active.fetch_add(1, Relaxed);
        let slot = ClientSlot(Arc::clone(&ctx));
        shared.tasks.spawn(run_session(slot, client, peer));
    }
}

/// Refuses a client over `max_client_conn` at once, without a task and without waiting: reads
/// what it already sent (usually its startup packet or SSLRequest, so that closing sends a FIN
/// rather than a reset), answers FATAL 53300 (drivers read it after a startup packet and, like
/// PostgreSQL's own answer when it cannot fork, after an SSLRequest), and closes.
fn refuse_over_cap(client: TcpStream, cap: usize) {
    let Ok(mut client) = client.into_std() else {
        return;
    };
    // Non-blocking (tokio's sockets are): stops at the first read that would wait.
    let mut sink = [0u8; 2048];
    for _ in 0..8 {
        match client.read(&mut sink) {
            Ok(n) if n == sink.len() => {}
            _ => break,
        }
    }
    let msg = format!("sorry, too many clients already (max_client_conn {cap})");
    // A fresh socket's send buffer takes these few bytes whole.
    let _ = client.write(&wire::fatal(wire::SQLSTATE_TOO_MANY, &msg));
    let _ = client.shutdown(Shutdown::Write);
}

/// Serves one client and accounts for how its session ended.
pub(crate) async fn run_session(slot: ClientSlot, client: TcpStream, peer: SocketAddr) {
    let ctx = &slot.0;
    match session::serve(Arc::clone(ctx), client).await {
        Ok(()) => {}
        Err(ProxyError::TargetChanged(_) | ProxyError::Shutdown) => {}
        Err(e @ ProxyError::IdleTimeout(_)) => tracing::debug!(%peer, "closed: {e}"),
        Err(e) => {
            ctx.metrics.errors.fetch_add(1, Relaxed);
            tracing::debug!(%peer, error = %e, "client session ended with an error");
        }
    }
}

/// Closes sessions whose backend stopped being a valid target, on every targets change.
pub(crate) async fn enforce_loop(ctx: Arc<ListenerCtx>) {
    let mut rx = ctx.router.targets();
    loop {
        tokio::select! {
            _ = ctx.shared.shutdown.cancelled() => return,
            changed = rx.changed() => if changed.is_err() { return },
        }
        let generation = rx.borrow_and_update().generation;
        let closed = ctx.router.enforce();
        if closed > 0 {
            ctx.metrics.closed_on_change.fetch_add(closed, Relaxed);
            tracing::info!(
                listener = ctx.router.role().as_str(),
                generation,
                closed,
                "targets changed: closed sessions to backends no longer valid"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by review: a second proxy on the same address (same user) joined the first one's
    /// SO_REUSEPORT group, and the kernel split new sessions between the two.
    #[tokio::test]
    async fn an_address_another_socket_listens_on_is_refused() {
        let first = bind("127.0.0.1:0", 2).unwrap();
        let addr = first[0].local_addr().unwrap().to_string();
        let refused = bind(&addr, 2).expect_err("a second proxy bound the same address");
        let said = refused.to_string();
        assert!(
            said.contains(&addr) && said.contains("another process listens on it"),
            "{said}"
        );
        drop(first);
        let again = bind(&addr, 2).expect("the address once free");
        assert_eq!(again.len(), 2);
    }
}
