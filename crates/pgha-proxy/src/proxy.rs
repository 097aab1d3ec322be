//! The proxy as a whole: binds the configured listeners, runs them until shutdown, exposes metrics.

use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cancel::CancelRegistry;
use crate::config::ProxyConfig;
use crate::error::ProxyError;
use crate::limits::raise_open_files;
use crate::listener::{accept_loop, bind, enforce_loop, ListenerCtx, Shared};
use crate::metrics::{ListenerMetrics, MetricsSnapshot};
use crate::prober::ProberConfig;
use crate::route::{Role, RoutePolicy, Router};
use crate::targets::Targets;
use crate::terminate::Terminator;
use crate::verifiers::Verifiers;
use crate::workers::{spawn_worker, WorkerSockets};

/// A bound, not yet running proxy. Build it with [`Proxy::bind`], read its addresses and
/// metrics handle, then drive it with [`Proxy::run`].
pub struct Proxy {
    shared: Arc<Shared>,
    /// Per listener: its context, one socket per worker (or one), its bound address.
    listeners: Vec<(Arc<ListenerCtx>, Vec<std::net::TcpListener>, SocketAddr)>,
}

/// Cheap, cloneable access to a running proxy's counters.
#[derive(Clone)]
pub struct MetricsHandle {
    listeners: Vec<(Role, Arc<ListenerMetrics>)>,
}

impl MetricsHandle {
    /// Current counters of every listener.
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            listeners: self
                .listeners
                .iter()
                .map(|(r, m)| m.snapshot(r.as_str()))
                .collect(),
        }
    }

    /// Current counters in Prometheus text format.
    pub fn render_prometheus(&self) -> String {
        self.snapshot().render_prometheus()
    }
}

impl Proxy {
    /// Binds the listeners named in `config` (port 0 picks a free port); routing follows
    /// `targets`. The shutdown token given to [`Proxy::run`] stops everything. First raises the
    /// process's open-files soft limit to its hard limit, with a warning naming the limit when
    /// that is too low for `max_client_conn`. With `config.tls`, reads the proxy's certificate,
    /// key and the cluster CA (an error names the file that could not be used).
    pub async fn bind(
        config: ProxyConfig,
        targets: watch::Receiver<Targets>,
        shutdown: CancellationToken,
    ) -> Result<Proxy, ProxyError> {
        Self::bind_with(config, targets, shutdown, None).await
    }

    /// [`Proxy::bind`] for a proxy that, when it terminates TLS, authenticates clients of
    /// roles with a SCRAM-SHA-256 verifier itself (SCRAM-SHA-256-PLUS bound to its own
    /// certificate, so libpq's default `channel_binding=prefer` and `require` work), reading
    /// verifiers from `pg_authid` as `superuser` (a superuser; its `tls` should be set as
    /// for the prober), then logs in to the member as the client's role without its password.
    /// Other roles' authentication is relayed to PostgreSQL as [`Proxy::bind`] does.
    pub async fn bind_authenticating(
        config: ProxyConfig,
        targets: watch::Receiver<Targets>,
        shutdown: CancellationToken,
        superuser: ProberConfig,
    ) -> Result<Proxy, ProxyError> {
        Self::bind_with(config, targets, shutdown, Some(superuser)).await
    }

    async fn bind_with(
        config: ProxyConfig,
        targets: watch::Receiver<Targets>,
        shutdown: CancellationToken,
        superuser: Option<ProberConfig>,
    ) -> Result<Proxy, ProxyError> {
        raise_open_files(config.max_client_conn);
        let terminator = config.tls.as_ref().map(Terminator::load).transpose()?;
        let verifiers = superuser
            .filter(|_| terminator.is_some())
            .map(Verifiers::new);
        let tasks = TaskTracker::new();
        let shared = Arc::new(Shared {
            config: config.clone(),
            terminator,
            verifiers,
            cancels: Arc::new(CancelRegistry::default()),
            clients: AtomicUsize::new(0),
            shutdown,
            tasks,
        });
        let mut listeners = Vec::new();
        for (role, addr) in [
            (Role::ReadWrite, &config.rw_listen),
            (Role::ReadOnly, &config.ro_listen),
        ] {
            let Some(addr) = addr else { continue };
            let sockets = bind(addr, config.worker_threads)?;
            let local = sockets[0].local_addr()?;
            let policy = RoutePolicy {
                role,
                max_lag_bytes: config.ro_max_lag_bytes,
                fallback_to_primary: config.ro_fallback_to_primary,
            };
            let ctx = Arc::new(ListenerCtx {
                shared: Arc::clone(&shared),
                router: Router::new(policy, targets.clone()),
                metrics: Arc::new(ListenerMetrics::default()),
                ssl: Default::default(),
                refusal_said: Default::default(),
            });
            listeners.push((ctx, sockets, local));
        }
        Ok(Proxy { shared, listeners })
    }

    fn addr_of(&self, role: Role) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|(c, _, _)| c.router.role() == role)
            .map(|(_, _, a)| *a)
    }

    /// Bound address of the read-write listener.
    pub fn rw_addr(&self) -> Option<SocketAddr> {
        self.addr_of(Role::ReadWrite)
    }

    /// Bound address of the read-only listener.
    pub fn ro_addr(&self) -> Option<SocketAddr> {
        self.addr_of(Role::ReadOnly)
    }

    /// New sessions go to the primary only while `stalls` (run, and shared with the
    /// [`crate::Prober`] that confirms the primary) trusts its confirmation: after this
    /// process stalled, only once a check begun after the stall confirmed it again.
    pub fn guard_stalls(&self, stalls: &Arc<crate::StallWatch>) {
        for (ctx, _, _) in &self.listeners {
            ctx.router.guard_stalls(Arc::clone(stalls));
        }
    }

    /// Handle to the counters, usable while and after the proxy runs.
    pub fn metrics(&self) -> MetricsHandle {
        MetricsHandle {
            listeners: self
                .listeners
                .iter()
                .map(|(c, _, _)| (c.router.role(), Arc::clone(&c.metrics)))
                .collect(),
        }
    }

    /// Serves until the shutdown token is cancelled; then stops accepting, tells held clients
    /// (57P01), closes open sessions and returns once every session task has ended.
    ///
    /// With `worker_threads` > 0 the sessions run on that many dedicated threads; otherwise on
    /// the runtime that polls this future.
    pub async fn run(self) {
        let mut enforcers = Vec::new();
        let mut per_worker: Vec<WorkerSockets> = Vec::new();
        let mut local_loops = Vec::new();
        for (ctx, sockets, addr) in self.listeners {
            tracing::info!(listener = ctx.router.role().as_str(), %addr, "proxy listening");
            enforcers.push(tokio::spawn(enforce_loop(Arc::clone(&ctx))));
            if self.shared.config.worker_threads == 0 {
                for s in sockets {
                    match TcpListener::from_std(s) {
                        Ok(l) => local_loops.push(tokio::spawn(accept_loop(Arc::clone(&ctx), l))),
                        Err(e) => tracing::error!(error = %e, "cannot register listener"),
                    }
                }
            } else {
                for (i, s) in sockets.into_iter().enumerate() {
                    if per_worker.len() <= i {
                        per_worker.push(Vec::new());
                    }
                    per_worker[i].push((Arc::clone(&ctx), s));
                }
            }
        }
        let mut workers = Vec::new();
        for (i, sockets) in per_worker.into_iter().enumerate() {
            match spawn_worker(i, sockets) {
                Ok(done) => workers.push(done),
                Err(e) => tracing::error!(error = %e, "cannot start proxy worker thread"),
            }
        }
        for l in local_loops.into_iter().chain(enforcers) {
            let _ = l.await;
        }
        for done in workers {
            let _ = done.await;
        }
        self.shared.tasks.close();
        self.shared.tasks.wait().await;
    }
}
