//! pgha-proxy: TCP router that sends clients to the confirmed primary or to standbys.
//!
//! Wiring: publish [`Targets`] on a `tokio::sync::watch` channel (from the agent, or from a
//! [`Prober`] run over the lease holder and standby addresses), [`Proxy::bind`] a
//! [`ProxyConfig`] with the receiver and a shutdown token, then `proxy.run().await`.
//!
//! ```no_run
//! # async fn wire() -> Result<(), pgha_proxy::ProxyError> {
//! use pgha_proxy::{Candidates, Member, Prober, ProberConfig, Proxy, ProxyConfig, Targets};
//! use tokio_util::sync::CancellationToken;
//!
//! let shutdown = CancellationToken::new();
//! let (targets_tx, targets_rx) = tokio::sync::watch::channel(Targets::none());
//! let (cands_tx, cands_rx) = tokio::sync::watch::channel(Candidates::default());
//! let prober = Prober::new(ProberConfig::new("postgres"));
//! tokio::spawn(prober.run(cands_rx, targets_tx, shutdown.clone()));
//! // Whenever the lease holder or the member list changes:
//! cands_tx.send_replace(Candidates {
//!     leader: Some(Member::new("node1", "127.0.0.1:5432")),
//!     standbys: vec![Member::new("node2", "127.0.0.1:5433")],
//! });
//! let proxy = Proxy::bind(ProxyConfig::default(), targets_rx, shutdown.clone()).await?;
//! let metrics = proxy.metrics(); // metrics.snapshot() / metrics.render_prometheus()
//! proxy.run().await;
//! # Ok(()) }
//! ```
//!
//! Behaviour, in short:
//! - Routing happens once, at connect time; afterwards bytes are relayed untouched.
//! - With [`Proxy::guard_stalls`] (and the same [`StallWatch`] given to the [`Prober`]), a
//!   primary confirmed before this process stalled (paused, starved) takes no new session
//!   after the stall until a check begun after it confirms the primary again: held meanwhile.
//! - No target: the session is held until one appears or `hold_timeout` passes; then the client
//!   gets `FATAL 57P03 cannot_connect_now` ("no primary available ..."), the code PostgreSQL
//!   uses itself while it cannot accept sessions yet, which drivers treat as retryable. A target
//!   that refuses the TCP connection is retried every 100 ms within the same bound.
//! - A session is bound to its backend *in the role it was chosen for*; when a targets update
//!   makes that invalid (rw address changed or gone, unless only its latest check went
//!   unanswered ([`Targets::unanswered`]); a standby left the list (not one whose latest check
//!   went unanswered, [`Targets::ro_unanswered`]) or became rw; the
//!   primary used as ro fallback changed), the session is closed at once (TCP close: an injected
//!   message could land mid-message). Lag changes alone do not close sessions.
//! - Read-only listener: streaming standbys within `ro_max_lag_bytes` (unknown lag counts as too
//!   much), least connections; optional fallback to the primary. Plaintext startups get
//!   `default_transaction_read_only=on` unless the client set it.
//! - No backend connection before the client's startup is complete: a plaintext StartupMessage,
//!   or the first TLS record (ClientHello) of a TLS session. SSLRequest is answered with what
//!   the listener's backends answered last (learned by one short connection when unknown or
//!   older than 30 s); after 'S' the proxy reads the ClientHello, then connects, sends the
//!   SSLRequest, checks the 'S' and passes TLS through. GSSENCRequest is answered 'N'. After an
//!   'N' the client may send its startup or a CancelRequest (libpq 17+ sends cancels with the
//!   session's sslmode). A client that starts with a TLS handshake (PostgreSQL 17's
//!   `sslnegotiation=direct`) is passed through the same way to a backend chosen as for any new
//!   session (one that accepts direct TLS: PostgreSQL 17+).
//! - Cancel requests (protocol 3.0's 4-byte and 3.2's longer keys): see the `cancel` module
//!   notes — routed to the one backend whose BackendKeyData carried the key; a key the proxy
//!   never saw goes only to backends holding sessions whose key it could not read (TLS), or is
//!   dropped. Cancels sent inside TLS passed through go where the listener routes a new
//!   connection; inside TLS the proxy terminates, they are read and routed by their key.
//! - With [`ProxyConfig::tls`] ([`ProxyTls`]) the proxy terminates TLS itself, so clients
//!   verify one name for the cluster: SSLRequest is answered 'S' by the proxy, direct TLS is
//!   accepted with ALPN "postgresql", and the startup or CancelRequest is read inside TLS (the
//!   read-only default applies to those startups too). Every backend connection, forwarded
//!   cancels included, is TLS that verifies the member's certificate against the cluster CA by
//!   the member's name (at an IP address) or host name; a member that cannot prove it gets
//!   nothing and is retried like one that refuses connections. Bound with
//!   [`Proxy::bind_authenticating`], the proxy authenticates clients of roles with a
//!   SCRAM-SHA-256 verifier itself (read from `pg_authid` as the superuser given, cached for
//!   10 s): SCRAM-SHA-256-PLUS is bound to its own certificate, so libpq's default
//!   `channel_binding=prefer` and `require` work; then it logs in to the member as that role
//!   with the ClientKey the client's proof revealed (see the `proxy_auth` module). Otherwise
//!   (trust, md5, no verifier, a failed lookup, or [`Proxy::bind`]) the authentication is
//!   relayed: SCRAM-SHA-256-PLUS is removed from the backend's offer, and a client that says it
//!   could bind (which PostgreSQL would reject as a downgrade) is refused with FATAL 28000
//!   naming `channel_binding=disable` (see the `sasl` module). `require` refuses plaintext startups
//!   with FATAL 28000; plaintext cancels are still served (libpq's legacy cancel).
//! - Startup packets must be 8..=`max_startup_packet` bytes, protocol 3, and arrive within
//!   `startup_timeout`; otherwise the client is dropped (08P01 when it is worth telling). A
//!   plaintext session must reach ReadyForQuery within `auth_timeout` of the backend's first
//!   answer.
//! - `max_client_conn` is a hard cap over all listeners: a client beyond it gets `FATAL 53300`
//!   and is closed at once, by the accept loop itself (no task, no wait for its startup; a
//!   cancel request over the cap is refused too).
//! - Both sockets of every session get TCP keepalives (`tcp_keepalive_*`); a session in which
//!   no byte moved for `idle_timeout` (off by default) is closed.
//! - [`Proxy::bind`] raises the open-files soft limit to the hard limit and warns, naming
//!   RLIMIT_NOFILE, when that is below 2 × `max_client_conn` + 100.

mod backend;
mod binding;
mod cancel;
mod config;
mod error;
mod key_scan;
mod limits;
mod listener;
mod metrics;
mod prober;
mod proxy;
mod proxy_auth;
mod route;
mod sasl;
mod scram;
mod scram_client;
mod scram_server;
mod session;
mod splice;
mod stall;
mod startup;
mod startup_scan;
mod stream;
mod targets;
mod terminate;
mod tls;
mod verifiers;
pub mod wire;
mod workers;

pub use cancel::{CancelGuard, CancelRegistry, CancelRoute, Owner};
pub use config::{duration, ProxyConfig, ProxyTls};
pub use error::{ProbeError, ProxyError};
pub use metrics::{ListenerSnapshot, MetricsSnapshot};
pub use prober::{Candidates, Member, ProbeResult, Prober, ProberConfig};
pub use proxy::{MetricsHandle, Proxy};
pub use route::Role;
pub use scram::ScramError;
pub use splice::{splice, IdleElapsed, Splice};
pub use stall::StallWatch;
pub use startup::{read_first_packet, CancelKey, FirstPacket, StartupPacket};
pub use startup_scan::StartupScanner;
pub use targets::{Backend, Standby, Targets};
pub use tokio_util::sync::CancellationToken;
