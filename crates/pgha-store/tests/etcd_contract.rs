//! The store contract run against a real etcd (one throwaway server per test), plus the etcd
//! backend's own behaviour: key layout, leases, several clients, an unreachable server.

use async_trait::async_trait;
use pgha_core::Ttl;
use pgha_store::contract::Harness;
use pgha_store::{EtcdStore, Guard, HistoryId, Key, Store, StoreError};
use pgha_testkit::{free_port, EtcdCluster, EtcdServer, Latency, TcpLink};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "etcd_contract/auth.rs"]
mod auth;
#[path = "etcd_contract/layout.rs"]
mod layout;
#[path = "etcd_contract/outages.rs"]
mod outages;

const TIMEOUT: Duration = Duration::from_secs(2);

struct Etcd {
    server: EtcdServer,
    stores: AtomicUsize,
}

impl Etcd {
    fn start() -> Self {
        Etcd {
            server: EtcdServer::start_free(),
            stores: AtomicUsize::new(0),
        }
    }

    async fn store(&self, cluster: &str) -> EtcdStore {
        EtcdStore::connect(&[self.server.endpoint()], cluster, TIMEOUT)
            .await
            .expect("connect to etcd")
    }

    /// A store of `cluster` whose every call is bounded by `bound`, reaching etcd through a
    /// [`TcpLink`] the test can slow down.
    async fn through_link(&self, cluster: &str, bound: Duration) -> (TcpLink, EtcdStore) {
        let target = format!("127.0.0.1:{}", self.server.client_port());
        let link = TcpLink::start("127.0.0.1:0".parse().unwrap(), target.parse().unwrap())
            .expect("a link to etcd");
        let store = EtcdStore::connect(&[format!("http://{}", link.addr())], cluster, bound)
            .await
            .expect("connect through the link");
        (link, store)
    }
}

#[async_trait]
impl Harness for Etcd {
    async fn fresh_store(&self) -> Arc<dyn Store> {
        let n = self.stores.fetch_add(1, Ordering::Relaxed);
        Arc::new(self.store(&format!("contract-{n}")).await)
    }
    /// etcd expires leases on its own clock: really wait.
    async fn pass(&self, by: Duration) {
        tokio::time::sleep(by).await;
    }
    /// etcd's TTLs are whole seconds; 2 s keeps the suite short and clear of timing noise.
    fn ttl(&self) -> Duration {
        Duration::from_secs(2)
    }
    /// etcd's lessor looks for expired leases every 500 ms, then revokes them through raft.
    fn expiry_grace(&self) -> Duration {
        Duration::from_millis(1500)
    }
}

pgha_store::store_contract_tests!(Etcd::start());

/// Reads the raw keys (and their leases) under `prefix`, straight from etcd.
async fn raw_keys(endpoint: &str, prefix: &str) -> Vec<(String, i64)> {
    let mut client = etcd_client::Client::connect([endpoint], None)
        .await
        .unwrap();
    let options = etcd_client::GetOptions::new().with_prefix();
    let resp = client.get(prefix, Some(options)).await.unwrap();
    resp.kvs()
        .iter()
        .map(|kv| (kv.key_str().unwrap().to_string(), kv.lease()))
        .collect()
}
