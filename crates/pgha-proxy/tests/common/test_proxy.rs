//! A proxy started per test on free ports, relaying or authenticating SCRAM roles itself.

use std::sync::Arc;
use std::time::Duration;

use pgha_proxy::{
    Backend, CancellationToken, MetricsHandle, ProberConfig, Proxy, ProxyConfig, StallWatch,
    Standby, Targets,
};
use tokio::sync::watch;

/// `rw` read-write and each of `ro` a streaming standby with no lag (generation 1).
pub fn targets_of(rw: Backend, ro: impl IntoIterator<Item = Backend>) -> Targets {
    Targets {
        rw: Some(rw),
        unanswered: None,
        ro: ro
            .into_iter()
            .map(|backend| Standby {
                backend,
                lag_bytes: Some(0),
                streaming: true,
            })
            .collect(),
        ro_unanswered: Vec::new(),
        generation: 1,
    }
}

/// A running proxy bound to free ports; stopped when dropped.
pub struct TestProxy {
    pub rw: std::net::SocketAddr,
    pub ro: std::net::SocketAddr,
    pub targets: watch::Sender<Targets>,
    pub metrics: MetricsHandle,
    pub shutdown: CancellationToken,
    pub task: Option<tokio::task::JoinHandle<()>>,
    /// The watch its routers trust confirmations by (`start_guarded`), running.
    pub stalls: Option<Arc<StallWatch>>,
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestProxy {
    pub async fn start(targets: Targets, tweak: impl FnOnce(&mut ProxyConfig)) -> TestProxy {
        Self::launch(targets, None, false, tweak).await
    }

    /// [`TestProxy::start`], its routers guarded by a running [`StallWatch`] (`stalls`), as
    /// `pgha proxy` runs them: give it to the prober that feeds `targets`.
    pub async fn start_guarded(
        targets: Targets,
        tweak: impl FnOnce(&mut ProxyConfig),
    ) -> TestProxy {
        Self::launch(targets, None, true, tweak).await
    }

    /// A proxy that knows no primary yet: it holds read-write sessions up to `hold_timeout`.
    pub async fn without_primary(hold_timeout: Duration) -> TestProxy {
        Self::start(Targets::none(), |cfg| cfg.hold_timeout = hold_timeout).await
    }

    /// A proxy that authenticates SCRAM roles itself when it terminates TLS, reading their
    /// verifiers as `superuser`.
    pub async fn start_authenticating(
        targets: Targets,
        superuser: ProberConfig,
        tweak: impl FnOnce(&mut ProxyConfig),
    ) -> TestProxy {
        Self::launch(targets, Some(superuser), false, tweak).await
    }

    async fn launch(
        targets: Targets,
        superuser: Option<ProberConfig>,
        guarded: bool,
        tweak: impl FnOnce(&mut ProxyConfig),
    ) -> TestProxy {
        let mut cfg = ProxyConfig {
            rw_listen: Some("127.0.0.1:0".into()),
            ro_listen: Some("127.0.0.1:0".into()),
            ..ProxyConfig::default()
        };
        tweak(&mut cfg);
        let (tx, rx) = watch::channel(targets);
        let shutdown = CancellationToken::new();
        let proxy = match superuser {
            Some(su) => Proxy::bind_authenticating(cfg, rx, shutdown.clone(), su).await,
            None => Proxy::bind(cfg, rx, shutdown.clone()).await,
        }
        .expect("bind proxy");
        let (rw, ro) = (proxy.rw_addr().unwrap(), proxy.ro_addr().unwrap());
        let metrics = proxy.metrics();
        let stalls = guarded.then(|| {
            let stalls = StallWatch::new();
            proxy.guard_stalls(&stalls);
            tokio::spawn(Arc::clone(&stalls).run(shutdown.clone()));
            stalls
        });
        let task = tokio::spawn(proxy.run());
        TestProxy {
            rw,
            ro,
            targets: tx,
            metrics,
            shutdown,
            task: Some(task),
            stalls,
        }
    }

    pub fn set(&self, f: impl FnOnce(&mut Targets)) {
        self.targets.send_modify(|t| {
            f(t);
            t.generation += 1;
        });
    }
}
