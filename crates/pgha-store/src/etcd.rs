//! The etcd v3 backend: leases, compare-and-set transactions and a prefix watch per cluster.
//!
//! Layout below the prefix: `leader` (value: the holder's name, bound to the term's lease),
//! `members/<name>` (bound to that member's lease), `config`, `sync`, `switchover`,
//! `initialize`, and `history/<id>` (the writer's `HistoryId`; ordered by creation revision).
//!
//! Revisions are etcd's: a term is identified by the leader key's `create_revision`, which
//! renewals (lease keep-alives) never change; [`Guard::Revision`] compares `mod_revision`.
//! Lease TTLs are whole seconds in etcd: a TTL is rounded up to the next second.
//!
//! Every request requires an etcd leader (gRPC metadata `hasleader=true`): a member cut off
//! from its quorum answers at once with "no leader" instead of serving what it last knew or
//! waiting, and ends the watches open on it. Reads are linearizable (etcd's default; never
//! `serializable`), so a snapshot is never older than the last write acknowledged anywhere.
//!
//! Here: the connection, key paths, guards and the snapshot read; the `Store` operations are
//! in `operations`, leases in `leases`, the leader key's transactions in `leader_txns`, the
//! watch in `watch`, error and revision conversions in `convert`.

mod access;
mod convert;
mod endpoints;
mod history_trim;
mod leader_txns;
mod leases;
mod operations;
#[cfg(test)]
mod pending_move_tests;
pub mod server_version;
mod watch;

use crate::error::StoreError;
use crate::model::{Guard, Key, LeaderRecord, Revision, Snapshot, Versioned};
pub use access::{EtcdAccess, EtcdUser};
use convert::{as_i64, as_u64, bounded, describe_leader, gets, header_revision, map_err};
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, Txn, TxnOp, TxnResponse, WatchOptions,
    WatchStream,
};
use leases::KnownLease;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The default bound on each call to etcd.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// How often the gRPC connection is pinged.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// The etcd backend, scoped to one cluster. Cheap to clone (shared gRPC channels).
#[derive(Clone)]
pub struct EtcdStore {
    endpoints: endpoints::Endpoints,
    prefix: String,
    timeout: Duration,
    member_leases: Arc<Mutex<HashMap<String, KnownLease>>>,
    /// By holder: the lease its leader key was last kept alive on (a renewal then keeps it
    /// alive in the same round trip as it checks the key).
    leader_leases: Arc<Mutex<HashMap<String, KnownLease>>>,
    /// By holder: a lease its leader key was being moved to (a ttl change) by a write whose
    /// answer never came. That write may still land; the next renewal revokes the lease first,
    /// so that it cannot.
    pending_moves: Arc<Mutex<HashMap<String, i64>>>,
    /// By holder: the revision its leader key was last written at, as this process knows it
    /// (see [`crate::Store::release_leader`]).
    leader_writes: Arc<Mutex<HashMap<String, i64>>>,
    /// The revisions seen by [`crate::Store::trim_history`], to compact etcd's history by.
    history_marks: Arc<Mutex<history_trim::HistoryMarks>>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl EtcdStore {
    /// A store for `cluster` on the etcd `endpoints` (`host:port` or `http://host:port`).
    /// Connects lazily: an unreachable etcd shows up as [`StoreError::Unavailable`] on the
    /// first call, not here. Every call is bounded by `timeout`.
    pub async fn connect(
        endpoints: &[String],
        cluster: &str,
        timeout: Duration,
    ) -> Result<Self, StoreError> {
        Self::connect_with(endpoints, cluster, timeout, &EtcdAccess::default()).await
    }

    /// [`EtcdStore::connect`] over TLS.
    pub async fn connect_with(
        endpoints: &[String],
        cluster: &str,
        timeout: Duration,
        access: &EtcdAccess,
    ) -> Result<Self, StoreError> {
        if cluster.is_empty() || cluster.contains('/') || cluster.trim() != cluster {
            return Err(StoreError::Invalid(format!("bad cluster name {cluster:?}")));
        }
        if endpoints.is_empty() {
            return Err(StoreError::Invalid("no etcd endpoints given".into()));
        }
        if timeout.is_zero() {
            return Err(StoreError::Invalid("etcd timeout must be positive".into()));
        }
        // HTTP/2 pings find a dead connection (and fail the watch on it) without waiting for
        // TCP. etcd answers pings more often than `--grpc-keepalive-min-time` (5 s by default)
        // with "too many pings" and drops the connection, so stay well above it.
        //
        // Requiring a leader makes every call (reads, txns, lease keep-alives, watch streams)
        // fail with "no leader" on a member that lost its quorum, and makes that member
        // cancel the watch streams open on it once it has been leaderless for a few election
        // timeouts, instead of serving a stale view or hanging.
        //
        // A token etcd no longer knows (it restarted, or the token idled past
        // `--auth-token-ttl`) is replaced and the call sent again, once.
        let mut options = ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_keep_alive(KEEPALIVE_INTERVAL, timeout.max(Duration::from_secs(3)))
            .with_keep_alive_while_idle(true)
            .with_require_leader(true)
            .with_auto_token_refresh(true);
        if let Some(ca) = &access.ca_pem {
            let mut tls = etcd_client::TlsOptions::new()
                .ca_certificate(etcd_client::Certificate::from_pem(ca));
            if let Some((cert, key)) = &access.client_identity {
                tls = tls.identity(etcd_client::Identity::from_pem(cert, key));
            }
            options = options.with_tls(tls);
        }
        let endpoints = bounded(
            timeout,
            endpoints::Endpoints::connect(endpoints, &options, access.user.clone(), timeout),
        )
        .await?;
        Ok(EtcdStore {
            endpoints,
            prefix: format!("/pgha/{cluster}/"),
            timeout,
            member_leases: Arc::default(),
            leader_leases: Arc::default(),
            pending_moves: Arc::default(),
            leader_writes: Arc::default(),
            history_marks: Arc::default(),
        })
    }

    /// Connects and reads once, retrying every 2 s while etcd is unreachable, for at most
    /// `patience` (forever when `None`); says once that it waits, and once that etcd is back.
    /// An error that no retry can fix (a bad endpoint or cluster name) ends it at once.
    pub async fn connect_patiently(
        endpoints: &[String],
        cluster: &str,
        timeout: Duration,
        access: &EtcdAccess,
        patience: Option<Duration>,
    ) -> Result<Self, StoreError> {
        let started = tokio::time::Instant::now();
        let mut warned = false;
        loop {
            let attempt = async {
                let store = Self::connect_with(endpoints, cluster, timeout, access).await?;
                crate::Store::snapshot(&store).await?;
                Ok::<_, StoreError>(store)
            }
            .await;
            match attempt {
                Ok(store) => {
                    if warned {
                        tracing::info!("etcd answers again");
                    }
                    return Ok(store);
                }
                Err(e) if !e.is_retryable() => return Err(e),
                Err(e) if patience.is_some_and(|p| started.elapsed() > p) => return Err(e),
                Err(e) => {
                    if !warned {
                        tracing::warn!(
                            "etcd at {} is unreachable ({e}); retrying every 2 s (nothing is initialised meanwhile)",
                            endpoints.join(", ")
                        );
                        warned = true;
                    }
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
    }

    /// The key prefix of this cluster, `/pgha/<cluster>/`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn path(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    fn leader_path(&self) -> String {
        self.path("leader")
    }

    fn member_path(&self, name: &str) -> String {
        self.path(&format!("members/{name}"))
    }

    /// Runs `op` within the call timeout, every request of it on the connection of the
    /// endpoint in use (logged in first when an etcd user is configured); when it gets no
    /// answer (its caller gave up on it first, or etcd's member has no leader), the next calls
    /// go to the next endpoint. A request etcd found invalid makes the connection log in again
    /// on its next call: that is how etcd refuses a token issued before its auth store changed.
    async fn call<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, StoreError>>,
    {
        let _ = tokio::time::timeout(self.timeout, self.endpoints.renew_suspect()).await;
        let attempt = self.endpoints.attempt();
        let connection = self.endpoints.connection();
        let op = self.endpoints.pinned(connection.clone(), op);
        let answer = tokio::time::timeout(self.timeout, op).await;
        if let Ok(Err(StoreError::Invalid(_))) = &answer {
            connection.forget_login();
        }
        match answer {
            Ok(Err(StoreError::Unavailable(e))) => {
                attempt.refused();
                Err(StoreError::Unavailable(e))
            }
            Ok(answer) => {
                attempt.answered();
                answer
            }
            // the attempt, dropped unanswered, says the endpoint ran to its bound
            Err(_) => Err(StoreError::Unavailable(format!(
                "etcd did not answer within {:?}",
                self.timeout
            ))),
        }
    }

    /// The client of the endpoint in use.
    fn client(&self) -> Client {
        self.endpoints.client()
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse, StoreError> {
        self.client().kv_client().txn(txn).await.map_err(map_err)
    }

    /// Compares that make `guard` hold for the key at `path`.
    fn compares(&self, path: &str, guard: &Guard) -> Vec<Compare> {
        match guard {
            Guard::Any => vec![],
            Guard::Absent => vec![Compare::create_revision(path, CompareOp::Equal, 0)],
            Guard::Revision(r) => vec![
                Compare::create_revision(path, CompareOp::Greater, 0),
                Compare::mod_revision(path, CompareOp::Equal, as_i64(*r)),
            ],
            Guard::Leader { holder, revision } => self.leader_is(holder, *revision),
            Guard::LeaderAndKey {
                holder,
                revision,
                key_revision,
            } => {
                let mut compares = self.leader_is(holder, *revision);
                compares.push(self.key_at(path, *key_revision));
                compares
            }
        }
    }

    /// Holds while the key at `path` was last written at `revision` (0: absent).
    fn key_at(&self, path: &str, revision: Revision) -> Compare {
        match revision {
            0 => Compare::create_revision(path, CompareOp::Equal, 0),
            r => Compare::mod_revision(path, CompareOp::Equal, as_i64(r)),
        }
    }

    /// Runs `op` on `key` only while `guard` holds; otherwise says who or what is in the way.
    async fn guarded(&self, key: Key, guard: Guard, op: TxnOp) -> Result<Revision, StoreError> {
        let path = self.path(key.name());
        self.call(async {
            let txn = Txn::new()
                .when(self.compares(&path, &guard))
                .and_then([op])
                .or_else([
                    TxnOp::get(path.clone(), None),
                    TxnOp::get(self.leader_path(), None),
                ]);
            let resp = self.txn(txn).await?;
            if !resp.succeeded() {
                return Err(self.conflict(key.name(), &guard, &resp));
            }
            Ok(header_revision(resp.header()))
        })
        .await
    }

    /// Why a guarded write on `key` failed, from the else-branch reads `[key, leader]`.
    fn conflict(&self, key: &str, guard: &Guard, resp: &TxnResponse) -> StoreError {
        let reads = gets(resp);
        let leader = || describe_leader(reads.get(1).and_then(|kvs| kvs.first()));
        let written = || match reads.first().and_then(|kvs| kvs.first()) {
            Some(kv) => format!("{key} is at revision {}", kv.mod_revision()),
            None => format!("{key} is absent"),
        };
        let found = match guard {
            Guard::Leader { .. } => leader(),
            Guard::LeaderAndKey { .. } => format!("{}; {}", written(), leader()),
            _ => written(),
        };
        StoreError::conflict(key, format!("expected {guard:?}, {found}"))
    }

    async fn snapshot_now(&self) -> Result<Snapshot, StoreError> {
        // Linearizable (the default: no `with_serializable`), and refused without a leader.
        let resp = self
            .client()
            .kv_client()
            .get(self.prefix.as_str(), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(map_err)?;
        let mut snap = Snapshot {
            revision: header_revision(resp.header()),
            ..Snapshot::default()
        };
        let mut history = Vec::new();
        for kv in resp.kvs() {
            let Some(rest) = kv.key().strip_prefix(self.prefix.as_bytes()) else {
                continue;
            };
            let rest = String::from_utf8_lossy(rest);
            let value = String::from_utf8_lossy(kv.value()).into_owned();
            let versioned = |value| Versioned {
                value,
                revision: as_u64(kv.mod_revision()),
            };
            if rest == "leader" {
                snap.leader = Some(LeaderRecord {
                    holder: value,
                    revision: as_u64(kv.create_revision()),
                });
            } else if let Some(name) = rest.strip_prefix("members/") {
                snap.members.insert(name.to_string(), versioned(value));
            } else if rest.starts_with("history/") {
                history.push((kv.create_revision(), versioned(value)));
            } else if let Some(key) = Key::ALL.into_iter().find(|k| k.name() == rest) {
                snap.keys.insert(key, versioned(value));
            }
        }
        history.sort_by_key(|(created, _)| *created);
        snap.history = history.into_iter().map(|(_, v)| v).collect();
        Ok(snap)
    }

    async fn current_revision(&self) -> Result<i64, StoreError> {
        let options = GetOptions::new().with_prefix().with_count_only();
        let resp = self
            .client()
            .kv_client()
            .get(self.prefix.as_str(), Some(options))
            .await
            .map_err(map_err)?;
        Ok(as_i64(header_revision(resp.header())))
    }

    async fn open_watch(&self, from: i64) -> Result<WatchStream, StoreError> {
        let options = WatchOptions::new().with_prefix().with_start_revision(from);
        self.client()
            .watch_client()
            .watch(self.prefix.as_str(), Some(options))
            .await
            .map_err(map_err)
    }
}
