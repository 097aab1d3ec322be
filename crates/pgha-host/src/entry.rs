//! The proxy as `pgha up` and `pgha proxy` run it: one read-write and one read-only address
//! for clients, following the leader lease (confirmed by `pg_is_in_recovery()`, never assumed).

use std::sync::Arc;
use std::time::Duration;

use pgha_core::routing;
use pgha_proxy::{
    CancellationToken, Candidates, Member, MetricsHandle, Prober, ProberConfig, Proxy, ProxyConfig,
    Targets,
};
use pgha_store::Store;
use tokio::sync::watch;

/// Binds the listeners of `config` and starts the proxy, its prober, and the task that feeds
/// the prober with the lease holder and the standbys from `store`.
pub async fn start(
    store: Arc<dyn Store>,
    config: ProxyConfig,
    credentials: &pgha_pg::probe::Credentials,
    shutdown: CancellationToken,
) -> Result<MetricsHandle, pgha_proxy::ProxyError> {
    let (targets_tx, targets_rx) = watch::channel(Targets::none());
    let (candidates_tx, candidates_rx) = watch::channel(Candidates::default());
    let mut prober_config = ProberConfig::new(credentials.user.clone());
    prober_config.password = Some(credentials.password.clone());
    prober_config.interval = Duration::from_millis(500);
    prober_config.tls = credentials.tls.clone();
    // Terminating TLS, the proxy authenticates SCRAM roles itself (verifiers read as the
    // superuser the prober uses), so clients' channel binding works with default settings.
    let superuser = prober_config.clone();
    let proxy = Proxy::bind_authenticating(config, targets_rx, shutdown.clone(), superuser).await?;
    let metrics = proxy.metrics();
    tokio::spawn(Prober::new(prober_config).run(candidates_rx, targets_tx, shutdown.clone()));
    tokio::spawn(feed_candidates(store, candidates_tx, shutdown));
    tokio::spawn(proxy.run());
    Ok(metrics)
}

/// Publishes the candidates whenever the store changes (the policy is the core's
/// `routing`: the lease holder once its record says it is writable; the running standbys).
async fn feed_candidates(
    store: Arc<dyn Store>,
    tx: watch::Sender<Candidates>,
    shutdown: CancellationToken,
) {
    let mut watcher = store.watch().await.ok();
    loop {
        if let Ok(view) = crate::ops::view(store.as_ref()).await {
            let member = |name: &pgha_core::MemberName| {
                let addr = view
                    .members
                    .get(name)?
                    .addresses
                    .get(pgha_agent::spec::POSTGRES_ADDRESS)?;
                Some(Member::new(name.as_str(), addr.as_str()))
            };
            let candidates = Candidates {
                leader: routing::write_candidate(&view).and_then(member),
                standbys: routing::read_candidates(&view)
                    .into_iter()
                    .filter_map(member)
                    .collect(),
            };
            tx.send_if_modified(|current| {
                let changed = *current != candidates;
                *current = candidates;
                changed
            });
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = async {
                match watcher.as_mut() {
                    Some(w) => w.changed().await.map(|_| ()),
                    None => { tokio::time::sleep(Duration::from_millis(500)).await; Ok(()) }
                }
            } => if r.is_err() { watcher = store.watch().await.ok(); },
        }
    }
}
