//! The proxy as `pgha up` and `pgha proxy` run it: one read-write and one read-only address
//! for clients, following the leader lease (confirmed by `pg_is_in_recovery()`, never assumed).

use std::sync::Arc;
use std::time::Duration;

use pgha_core::routing;
use pgha_proxy::{
    CancellationToken, Candidates, Member, MetricsHandle, Prober, ProberConfig, Proxy, ProxyConfig,
    StallWatch, Targets,
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
    // After this process stalls (paused, starved), the primary confirmed before is not routed
    // to until a check begun after the stall confirms it again (I2).
    let stalls = StallWatch::new();
    proxy.guard_stalls(&stalls);
    tokio::spawn(stalls.clone().run(shutdown.clone()));
    let prober = Prober::new(prober_config).with_stalls(stalls);
    tokio::spawn(prober.run(candidates_rx, targets_tx, shutdown.clone()));
    tokio::spawn(feed_candidates(store, candidates_tx, shutdown));
    tokio::spawn(proxy.run());
    Ok(metrics)
}

/// How soon a failed read of the store is tried again.
const REREAD_AFTER: Duration = Duration::from_millis(500);

/// Publishes the candidates whenever the store changes (the policy is the core's
/// `routing`: the lease holder once its record says it is writable; the running standbys),
/// from the leader key and the member records alone (`pgha_store::routing_view`: a key
/// routing does not read, unreadable to this version, does not stop it following the lease).
/// A read that fails is tried again until one succeeds: the change that woke it may be the
/// last one for a long while (a settled cluster whose writes the proxy holds changes nothing).
/// A watch that failed, or could not be opened, is opened again once the store answers; until
/// then the store is read every [`REREAD_AFTER`].
async fn feed_candidates(
    store: Arc<dyn Store>,
    tx: watch::Sender<Candidates>,
    shutdown: CancellationToken,
) {
    let mut watcher = store.watch().await.ok();
    let mut failing = false;
    let mut left_out: Vec<String> = Vec::new();
    loop {
        let read = store.snapshot().await;
        let fresh = read.is_ok();
        if fresh && watcher.is_none() {
            watcher = store.watch().await.ok();
            if watcher.is_some() {
                // Read again: a change between that read and the watch's start is not missed.
                continue;
            }
        }
        match read {
            Ok(snapshot) => {
                if std::mem::take(&mut failing) {
                    tracing::info!("proxy: the store answers again; routing follows it");
                }
                let (view, unreadable) = pgha_store::routing_view(&snapshot);
                report_left_out(&unreadable, &mut left_out);
                publish_candidates(&view, &tx);
            }
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(
                    "proxy: cannot read the store ({e}): routing stays as last read (each \
                     target still confirmed by PostgreSQL) until a read succeeds"
                );
            }
            Err(e) => tracing::debug!("proxy: the store still does not answer: {e}"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = async {
                match watcher.as_mut().filter(|_| fresh) {
                    Some(w) => w.changed().await.map(|_| ()),
                    None => { tokio::time::sleep(REREAD_AFTER).await; Ok(()) }
                }
            } => if r.is_err() { watcher = None; },
        }
    }
}

/// Says which member records routing leaves out, when that changes: their members take no
/// sessions until their records read again.
fn report_left_out(unreadable: &[pgha_store::Unreadable], reported: &mut Vec<String>) {
    let keys: Vec<String> = unreadable.iter().map(pgha_store::Unreadable::key).collect();
    if keys == *reported {
        return;
    }
    for e in unreadable {
        tracing::warn!("proxy: no sessions for this member until its record reads: {e}");
    }
    if unreadable.is_empty() {
        tracing::info!("proxy: every member record reads again");
    }
    *reported = keys;
}

/// The candidates `view` names, sent on when they changed.
fn publish_candidates(view: &pgha_core::ClusterView, tx: &watch::Sender<Candidates>) {
    let member = |name: &pgha_core::MemberName| {
        let addr = view
            .members
            .get(name)?
            .addresses
            .get(pgha_agent::spec::POSTGRES_ADDRESS)?;
        Some(Member::new(name.as_str(), addr.as_str()))
    };
    let candidates = Candidates {
        leader: routing::write_candidate(view).and_then(member),
        standbys: routing::read_candidates(view)
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

#[cfg(test)]
mod tests {
    use super::*;
    use pgha_core::{MemberRecord, Ttl};
    use pgha_store::{MemoryStore, TokioClock};

    async fn publish(store: &MemoryStore, name: &str, writable: bool) {
        let record = MemberRecord {
            running: true,
            in_recovery: !writable,
            addresses: [(
                pgha_agent::spec::POSTGRES_ADDRESS.to_string(),
                format!("{name}:5432"),
            )]
            .into(),
            ..MemberRecord::default()
        };
        let json = serde_json::to_string(&record).unwrap();
        store
            .put_member(name, &json, Ttl::from_secs(60))
            .await
            .unwrap();
    }

    async fn leader_becomes(rx: &mut watch::Receiver<Candidates>, name: &str) -> bool {
        let wanted = |c: &Candidates| c.leader.as_ref().is_some_and(|l| l.name == name);
        let wait = rx.wait_for(|c| wanted(c));
        tokio::time::timeout(Duration::from_secs(3), wait)
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// A store where n1 leads (its term returned) and n2 is a standby.
    async fn n1_leading() -> (MemoryStore, u64) {
        let store = MemoryStore::new(Arc::new(TokioClock::new()));
        publish(&store, "n1", true).await;
        publish(&store, "n2", false).await;
        let first = store
            .acquire_leader("n1", Ttl::from_secs(60))
            .await
            .unwrap();
        (store, first)
    }

    /// The lease moves from n1 (its term `first`) to n2, and their records say so.
    async fn n2_takes_over(store: &MemoryStore, first: u64) {
        store.release_leader("n1", first).await.unwrap();
        store
            .acquire_leader("n2", Ttl::from_secs(60))
            .await
            .unwrap();
        publish(store, "n1", false).await;
        publish(store, "n2", true).await;
    }

    /// `feed_candidates` on `store`: what it publishes, how to stop it, its task.
    fn feed(
        store: &MemoryStore,
    ) -> (
        watch::Receiver<Candidates>,
        CancellationToken,
        tokio::task::JoinHandle<()>,
    ) {
        let (tx, rx) = watch::channel(Candidates::default());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(feed_candidates(
            Arc::new(store.clone()),
            tx,
            shutdown.clone(),
        ));
        (rx, shutdown, task)
    }

    /// The store changed hands (n1 → n2) and the read that the change woke up failed: the
    /// feed must read again, not wait for a next change that a settled cluster may never
    /// make (before: the proxy kept offering the old leader, and held writes for good).
    #[tokio::test]
    async fn a_failed_read_after_a_leader_change_is_retried() {
        let (store, first) = n1_leading().await;
        let (mut rx, shutdown, feed) = feed(&store);
        assert!(leader_becomes(&mut rx, "n1").await, "{:?}", *rx.borrow());
        // The change and the outage together, before the feed task runs again.
        n2_takes_over(&store, first).await;
        store.set_reachable(false);
        tokio::time::sleep(Duration::from_millis(200)).await;
        store.set_reachable(true);
        let followed = leader_becomes(&mut rx, "n2").await;
        shutdown.cancel();
        let _ = feed.await;
        assert!(followed, "candidates stayed {:?}", *rx.borrow());
    }

    /// A key routing does not read holds what this version cannot decode (a configuration a
    /// newer agent wrote in a rolling upgrade), and the lease moves: the proxy follows it
    /// (before: every read failed on the configuration, and the proxy offered the old leader
    /// for good). A holder whose own record does not decode is offered nothing.
    #[tokio::test]
    async fn routing_follows_the_lease_past_a_key_it_does_not_read() {
        let (store, first) = n1_leading().await;
        let newer = r#"{"ttl_ms": {"from_a": "newer version"}}"#;
        store
            .put(pgha_store::Key::Config, newer, pgha_store::Guard::Any)
            .await
            .unwrap();
        let (mut rx, shutdown, feed) = feed(&store);
        assert!(leader_becomes(&mut rx, "n1").await, "{:?}", *rx.borrow());
        n2_takes_over(&store, first).await;
        let followed = leader_becomes(&mut rx, "n2").await;
        let json = r#"{"running": "a newer type"}"#;
        store
            .put_member("n2", json, Ttl::from_secs(60))
            .await
            .unwrap();
        let none = rx.wait_for(|c| c.leader.is_none());
        let withdrawn = tokio::time::timeout(Duration::from_secs(3), none).await;
        let withdrawn = withdrawn.is_ok_and(|r| r.is_ok());
        shutdown.cancel();
        let _ = feed.await;
        assert!(followed, "candidates stayed {:?}", *rx.borrow());
        assert!(withdrawn, "candidates stayed {:?}", *rx.borrow());
    }

    /// The watch could not be opened (the store did not answer): once the store answers again
    /// the feed opens it, and a change of leader is published as it happens, not at the next
    /// poll (before: the feed read the store every 500 ms for the rest of its life). Tokio's
    /// clock is paused, so "as it happens" is exact: no time passes.
    #[tokio::test(start_paused = true)]
    async fn a_watch_that_could_not_be_opened_is_opened_once_the_store_answers() {
        let (store, first) = n1_leading().await;
        store.set_reachable(false);
        let (mut rx, shutdown, feed) = feed(&store);
        tokio::time::sleep(Duration::from_millis(1_250)).await;
        store.set_reachable(true);
        assert!(leader_becomes(&mut rx, "n1").await, "{:?}", *rx.borrow());
        tokio::time::sleep(Duration::from_millis(1_250)).await;
        let changed_at = tokio::time::Instant::now();
        n2_takes_over(&store, first).await;
        let followed = leader_becomes(&mut rx, "n2").await;
        let took = changed_at.elapsed();
        shutdown.cancel();
        let _ = feed.await;
        assert!(followed, "candidates stayed {:?}", *rx.borrow());
        assert_eq!(took, Duration::ZERO, "the change waited for a poll");
    }
}
