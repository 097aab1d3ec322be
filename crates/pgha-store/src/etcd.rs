//! The etcd v3 backend: leases, compare-and-set transactions and a prefix watch under `/pgha/<cluster>/`.
//!
//! Layout below the prefix: `leader` (value: the holder's name, bound to the term's lease),
//! `members/<name>` (bound to that member's lease), `config`, `sync`, `switchover`,
//! `initialize`, and `history/<unique id>` (ordered by creation revision).
//!
//! Revisions are etcd's: a term is identified by the leader key's `create_revision`, which
//! renewals (lease keep-alives) never change; [`Guard::Revision`] compares `mod_revision`.
//! Lease TTLs are whole seconds in etcd: a TTL is rounded up to the next second.
//!
//! Every request requires an etcd leader (gRPC metadata `hasleader=true`): a member cut off
//! from its quorum answers at once with "no leader" instead of serving what it last knew or
//! waiting, and ends the watches open on it. Reads are linearizable (etcd's default; never
//! `serializable`), so a snapshot is never older than the last write acknowledged anywhere.

use crate::error::StoreError;
use crate::model::{Guard, Key, LeaderRecord, Revision, Snapshot, Versioned};
use crate::store::{Store, Watch};
use async_trait::async_trait;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, KeyValue, PutOptions,
    Txn, TxnOp, TxnOpResponse, TxnResponse, WatchOptions, WatchResponse, WatchStream,
};
use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// The default bound on each call to etcd.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// How often the gRPC connection is pinged.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// A member's lease as this process granted it (reused by keep-alive while the TTL is unchanged).
#[derive(Clone, Copy, Debug)]
struct MemberLease {
    id: i64,
    ttl: i64,
}

/// The etcd backend, scoped to one cluster. Cheap to clone (one shared gRPC channel).
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    prefix: String,
    timeout: Duration,
    member_leases: Arc<Mutex<HashMap<String, MemberLease>>>,
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
        let options = ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_keep_alive(KEEPALIVE_INTERVAL, timeout.max(Duration::from_secs(3)))
            .with_keep_alive_while_idle(true)
            .with_require_leader(true);
        let client = bounded(timeout, Client::connect(endpoints, Some(options))).await?;
        Ok(EtcdStore {
            client,
            prefix: format!("/pgha/{cluster}/"),
            timeout,
            member_leases: Arc::default(),
        })
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

    /// Runs `op` within the call timeout.
    async fn call<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, StoreError>>,
    {
        tokio::time::timeout(self.timeout, op)
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::Unavailable(format!(
                    "etcd did not answer within {:?}",
                    self.timeout
                )))
            })
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse, StoreError> {
        self.client.kv_client().txn(txn).await.map_err(map_err)
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
        }
    }

    fn leader_is(&self, holder: &str, revision: Revision) -> Vec<Compare> {
        let leader = self.leader_path();
        vec![
            Compare::value(leader.clone(), CompareOp::Equal, holder),
            Compare::create_revision(leader, CompareOp::Equal, as_i64(revision)),
        ]
    }

    /// Why a guarded write on `key` failed, from the else-branch reads `[key, leader]`.
    fn conflict(&self, key: &str, guard: &Guard, resp: &TxnResponse) -> StoreError {
        let reads = gets(resp);
        let found = match guard {
            Guard::Leader { .. } => describe_leader(reads.get(1).and_then(|kvs| kvs.first())),
            _ => match reads.first().and_then(|kvs| kvs.first()) {
                Some(kv) => format!("{key} is at revision {}", kv.mod_revision()),
                None => format!("{key} is absent"),
            },
        };
        StoreError::conflict(key, format!("expected {guard:?}, {found}"))
    }

    /// Restarts lease `id`; `Ok(false)` when etcd no longer knows it (expired or revoked).
    async fn keep_alive(&self, id: i64) -> Result<bool, StoreError> {
        match self.client.lease_client().keep_alive(id).await {
            Ok(_) => Ok(true),
            Err(etcd_client::Error::LeaseKeepAliveError(msg)) if msg.contains("not found") => {
                Ok(false)
            }
            Err(e) => Err(map_err(e)),
        }
    }

    /// Restarts lease `id` and returns the TTL (s) it was granted with; `Ok(None)` when etcd
    /// no longer knows it.
    async fn keep_alive_ttl(&self, id: i64) -> Result<Option<i64>, StoreError> {
        // The first keep-alive (inside `keep_alive`) restarts the lease; the second one's
        // answer carries the granted TTL.
        let (mut keeper, mut responses) = match self.client.lease_client().keep_alive(id).await {
            Ok(pair) => pair,
            Err(etcd_client::Error::LeaseKeepAliveError(msg)) if msg.contains("not found") => {
                return Ok(None)
            }
            Err(e) => return Err(map_err(e)),
        };
        keeper.keep_alive().await.map_err(map_err)?;
        match responses.message().await.map_err(map_err)? {
            Some(resp) if resp.ttl() > 0 => Ok(Some(resp.ttl())),
            _ => Ok(None),
        }
    }

    async fn grant(&self, ttl: i64) -> Result<i64, StoreError> {
        let resp = self
            .client
            .lease_client()
            .grant(ttl, None)
            .await
            .map_err(map_err)?;
        Ok(resp.id())
    }

    /// Revokes a lease, ignoring one that is already gone.
    async fn revoke(&self, id: i64) -> Result<(), StoreError> {
        match self.client.lease_client().revoke(id).await {
            Ok(_) => Ok(()),
            Err(e) if is_lease_not_found(&e) => Ok(()),
            Err(e) => Err(map_err(e)),
        }
    }

    fn lock_leases(&self) -> std::sync::MutexGuard<'_, HashMap<String, MemberLease>> {
        self.member_leases.lock().expect("member lease lock")
    }

    /// Puts `members/<name>` on this member's lease: the known one restarted by a keep-alive,
    /// or a new one (then the old lease, of another TTL, is revoked once nothing uses it).
    async fn put_member_leased(
        &self,
        name: &str,
        value: &str,
        ttl: i64,
    ) -> Result<u64, StoreError> {
        for _ in 0..2 {
            let known = self.lock_leases().get(name).copied();
            let (lease, stale) = match known {
                Some(l) if l.ttl == ttl && self.keep_alive(l.id).await? => (l.id, None),
                Some(l) if l.ttl == ttl => (self.grant(ttl).await?, None),
                Some(l) => (self.grant(ttl).await?, Some(l.id)),
                None => (self.grant(ttl).await?, None),
            };
            self.lock_leases()
                .insert(name.to_string(), MemberLease { id: lease, ttl });
            let put = self
                .client
                .kv_client()
                .put(
                    self.member_path(name),
                    value,
                    Some(PutOptions::new().with_lease(lease)),
                )
                .await;
            match put {
                Ok(resp) => {
                    if let Some(old) = stale {
                        // Best effort: an old lease nothing is bound to expires by itself.
                        let _ = self.revoke(old).await;
                    }
                    return Ok(header_revision(resp.header()));
                }
                // Expired between the keep-alive and the put: grant a new one.
                Err(e) if is_lease_not_found(&e) => {
                    self.lock_leases().remove(name);
                }
                Err(e) => return Err(map_err(e)),
            }
        }
        Err(StoreError::Unavailable(format!(
            "the lease of member {name} expired twice while writing it"
        )))
    }

    async fn snapshot_now(&self) -> Result<Snapshot, StoreError> {
        // Linearizable (the default: no `with_serializable`), and refused without a leader.
        let resp = self
            .client
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
            .client
            .kv_client()
            .get(self.prefix.as_str(), Some(options))
            .await
            .map_err(map_err)?;
        Ok(as_i64(header_revision(resp.header())))
    }

    async fn open_watch(&self, from: i64) -> Result<WatchStream, StoreError> {
        let options = WatchOptions::new().with_prefix().with_start_revision(from);
        self.client
            .watch_client()
            .watch(self.prefix.as_str(), Some(options))
            .await
            .map_err(map_err)
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        self.call(self.snapshot_now()).await
    }

    async fn acquire_leader(&self, holder: &str, ttl: Duration) -> Result<Revision, StoreError> {
        let ttl = ttl_secs(ttl)?;
        if holder.is_empty() {
            return Err(StoreError::Invalid("empty leader name".into()));
        }
        let leader = self.leader_path();
        self.call(async {
            let lease = self.grant(ttl).await?;
            let txn = Txn::new()
                .when([Compare::create_revision(
                    leader.clone(),
                    CompareOp::Equal,
                    0,
                )])
                .and_then([TxnOp::put(
                    leader.clone(),
                    holder,
                    Some(PutOptions::new().with_lease(lease)),
                )])
                .or_else([TxnOp::get(leader.clone(), None)]);
            let resp = self.txn(txn).await?;
            if resp.succeeded() {
                return Ok(header_revision(resp.header()));
            }
            // Best effort: an unused lease expires by itself.
            let _ = self.revoke(lease).await;
            let held = describe_leader(gets(&resp).first().and_then(|kvs| kvs.first()));
            Err(StoreError::conflict("leader", held))
        })
        .await
    }

    async fn renew_leader(
        &self,
        holder: &str,
        revision: Revision,
        ttl: Duration,
    ) -> Result<Duration, StoreError> {
        let wanted = ttl_secs(ttl)?;
        let leader = self.leader_path();
        self.call(async {
            let txn = Txn::new()
                .when(self.leader_is(holder, revision))
                .and_then([TxnOp::get(leader.clone(), None)])
                .or_else([TxnOp::get(leader.clone(), None)]);
            let resp = self.txn(txn).await?;
            let reads = gets(&resp);
            let current = reads.first().and_then(|kvs| kvs.first());
            if !resp.succeeded() {
                return Err(StoreError::conflict("leader", describe_leader(current)));
            }
            let lease = current.map_or(0, KeyValue::lease);
            let granted = match lease {
                0 => None,
                id => self.keep_alive_ttl(id).await?,
            };
            let Some(granted) = granted else {
                return Err(StoreError::conflict("leader", "absent (lease expired)"));
            };
            if granted == wanted {
                return Ok(Duration::from_secs(granted as u64));
            }
            // The configured ttl changed: move the key (same term) to a lease of the new TTL.
            // Until this succeeds the holder trusts the old lease's TTL, which etcd keeps.
            let fresh = self.grant(wanted).await?;
            let txn = Txn::new()
                .when(self.leader_is(holder, revision))
                .and_then([TxnOp::put(
                    leader.clone(),
                    holder,
                    Some(PutOptions::new().with_lease(fresh)),
                )])
                .or_else([TxnOp::get(leader.clone(), None)]);
            let resp = self.txn(txn).await?;
            if !resp.succeeded() {
                let _ = self.revoke(fresh).await;
                let found = describe_leader(gets(&resp).first().and_then(|kvs| kvs.first()));
                return Err(StoreError::conflict("leader", found));
            }
            let _ = self.revoke(lease).await;
            Ok(Duration::from_secs(wanted as u64))
        })
        .await
    }

    async fn release_leader(&self, holder: &str, revision: Revision) -> Result<(), StoreError> {
        let leader = self.leader_path();
        self.call(async {
            let txn = Txn::new()
                .when(self.leader_is(holder, revision))
                .and_then([
                    TxnOp::get(leader.clone(), None),
                    TxnOp::delete(leader.clone(), None),
                ])
                .or_else([TxnOp::get(leader.clone(), None)]);
            let resp = self.txn(txn).await?;
            let reads = gets(&resp);
            let current = reads.first().and_then(|kvs| kvs.first());
            if !resp.succeeded() {
                let found = describe_leader(current);
                return Err(StoreError::conflict(
                    "leader",
                    format!("not held by {holder} at revision {revision}: {found}"),
                ));
            }
            match current.map_or(0, KeyValue::lease) {
                0 => Ok(()),
                lease => self.revoke(lease).await,
            }
        })
        .await
    }

    async fn put_member(
        &self,
        name: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<Revision, StoreError> {
        let ttl = ttl_secs(ttl)?;
        if name.is_empty() || name.contains('/') {
            return Err(StoreError::Invalid(format!("bad member name {name:?}")));
        }
        self.call(self.put_member_leased(name, value, ttl)).await
    }

    async fn delete_member(&self, name: &str) -> Result<(), StoreError> {
        let path = self.member_path(name);
        self.call(async {
            let resp = self
                .client
                .kv_client()
                .delete(path, Some(DeleteOptions::new().with_prev_key()))
                .await
                .map_err(map_err)?;
            let known = self.lock_leases().remove(name).map(|l| l.id);
            let bound = resp.prev_kvs().iter().map(KeyValue::lease);
            let mut leases: Vec<i64> = bound.chain(known).filter(|id| *id != 0).collect();
            leases.dedup();
            for lease in leases {
                self.revoke(lease).await?;
            }
            Ok(())
        })
        .await
    }

    async fn put(&self, key: Key, value: &str, guard: Guard) -> Result<Revision, StoreError> {
        let path = self.path(key.name());
        self.call(async {
            let txn = Txn::new()
                .when(self.compares(&path, &guard))
                .and_then([TxnOp::put(path.clone(), value, None)])
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

    async fn delete(&self, key: Key, guard: Guard) -> Result<(), StoreError> {
        let path = self.path(key.name());
        self.call(async {
            let txn = Txn::new()
                .when(self.compares(&path, &guard))
                .and_then([TxnOp::delete(path.clone(), None)])
                .or_else([
                    TxnOp::get(path.clone(), None),
                    TxnOp::get(self.leader_path(), None),
                ]);
            let resp = self.txn(txn).await?;
            if !resp.succeeded() {
                return Err(self.conflict(key.name(), &guard, &resp));
            }
            Ok(())
        })
        .await
    }

    async fn append_history(&self, entry: &str, guard: Guard) -> Result<Revision, StoreError> {
        if !matches!(guard, Guard::Any | Guard::Leader { .. }) {
            return Err(StoreError::Invalid(
                "history appends take Guard::Any or Guard::Leader".into(),
            ));
        }
        self.call(async {
            // The entry's key only has to be new: order comes from its creation revision.
            for _ in 0..3 {
                let path = self.path(&format!("history/{}", unique_id()));
                let mut compares = self.compares(&path, &guard);
                compares.push(Compare::create_revision(path.clone(), CompareOp::Equal, 0));
                let txn = Txn::new()
                    .when(compares)
                    .and_then([TxnOp::put(path.clone(), entry, None)])
                    .or_else([
                        TxnOp::get(path.clone(), None),
                        TxnOp::get(self.leader_path(), None),
                    ]);
                let resp = self.txn(txn).await?;
                if resp.succeeded() {
                    return Ok(header_revision(resp.header()));
                }
                let reads = gets(&resp);
                let leader = reads.get(1).and_then(|kvs| kvs.first());
                if let Guard::Leader { holder, revision } = &guard {
                    let held = leader.is_some_and(|kv| {
                        kv.value() == holder.as_bytes() && as_u64(kv.create_revision()) == *revision
                    });
                    if !held {
                        return Err(StoreError::conflict(
                            "history",
                            format!("{holder} is not leader: {}", describe_leader(leader)),
                        ));
                    }
                }
                // Otherwise the generated key already existed: try another one.
            }
            Err(StoreError::Unavailable(
                "could not find a fresh history key".into(),
            ))
        })
        .await
    }

    async fn watch(&self) -> Result<Box<dyn Watch>, StoreError> {
        self.call(async {
            let from = self.current_revision().await? + 1;
            let stream = self.open_watch(from).await?;
            Ok(Box::new(EtcdWatch {
                store: self.clone(),
                next: from,
                stream: Some(stream),
                heard: Instant::now(),
                probed: None,
            }) as Box<dyn Watch>)
        })
        .await
    }
}

/// A prefix watch that reopens itself (from the next unseen revision) after a failure.
///
/// A stream that stays silent for a call timeout is asked for a progress report
/// (`WatchProgressRequest`, answered by etcd ≥ 3.4 with an empty response); when that gets no
/// answer within another call timeout, the watch fails: the connection or the member is dead,
/// which HTTP/2 keep-alive pings would only notice much later. Etcd itself ends the stream
/// with "no leader" when its member loses its quorum (see [`EtcdStore::connect`]).
struct EtcdWatch {
    store: EtcdStore,
    /// The first revision not reported yet.
    next: i64,
    stream: Option<WatchStream>,
    /// When the stream last delivered something (or was opened).
    heard: Instant,
    /// When a progress report was asked for and has not arrived yet.
    probed: Option<Instant>,
}

impl EtcdWatch {
    /// The next message of the open stream; `Ok(None)` when the stream stays silent up to the
    /// next liveness step (then a progress report is asked for), an error when it stays silent
    /// after one was asked for. Keeps its deadlines in `self`: a caller may drop `changed`
    /// (e.g. in a `select!`) and call again without restarting the clock.
    async fn next_message(&mut self) -> Result<Option<WatchResponse>, StoreError> {
        let timeout = self.store.timeout;
        let deadline = match self.probed {
            Some(asked) => asked + timeout,
            None => self.heard + timeout,
        };
        let stream = self.stream.as_mut().expect("watch stream open");
        match tokio::time::timeout_at(deadline, stream.message()).await {
            Ok(Ok(Some(message))) => {
                self.heard = Instant::now();
                self.probed = None;
                Ok(Some(message))
            }
            Ok(Ok(None)) => Err(StoreError::Unavailable("etcd closed the watch".into())),
            Ok(Err(e)) => Err(map_err(e)),
            Err(_) if self.probed.is_some() => Err(StoreError::Unavailable(format!(
                "etcd sent nothing on the watch for {:?}, not even a requested progress report",
                self.heard.elapsed()
            ))),
            Err(_) => {
                bounded(timeout, stream.request_progress()).await?;
                self.probed = Some(Instant::now());
                Ok(None)
            }
        }
    }
}

#[async_trait]
impl Watch for EtcdWatch {
    async fn changed(&mut self) -> Result<Revision, StoreError> {
        loop {
            if self.stream.is_none() {
                let stream = self.store.call(self.store.open_watch(self.next)).await?;
                self.stream = Some(stream);
                self.heard = Instant::now();
                self.probed = None;
            }
            let message = match self.next_message().await {
                Ok(Some(message)) => message,
                Ok(None) => continue,
                Err(e) => {
                    self.stream = None;
                    return Err(e);
                }
            };
            if message.canceled() {
                self.stream = None;
                if message.compact_revision() > 0 {
                    // History we had not seen was compacted away: report a change and resume
                    // from the present (callers re-read the snapshot anyway).
                    self.next = self.store.call(self.store.current_revision()).await? + 1;
                    return Ok(as_u64(self.next - 1));
                }
                return Err(StoreError::Unavailable(format!(
                    "etcd cancelled the watch: {}",
                    message.cancel_reason()
                )));
            }
            let latest = message
                .events()
                .iter()
                .filter_map(|event| event.kv().map(KeyValue::mod_revision))
                .max();
            if let Some(revision) = latest {
                self.next = revision + 1;
                return Ok(as_u64(revision));
            }
        }
    }
}

/// Bounds a future by `timeout`, mapping etcd errors.
async fn bounded<T>(
    timeout: Duration,
    op: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(timeout, op).await {
        Ok(result) => result.map_err(map_err),
        Err(_) => Err(StoreError::Unavailable(format!(
            "etcd did not answer within {timeout:?}"
        ))),
    }
}

/// Maps a client error: bad requests are `Invalid`, everything else may pass with a retry.
fn map_err(e: etcd_client::Error) -> StoreError {
    use etcd_client::Error as E;
    use tonic::Code;
    match &e {
        E::InvalidArgs(_) | E::InvalidUri(_) | E::InvalidMetadataValue(_) => {
            StoreError::Invalid(format!("etcd: {e}"))
        }
        E::GRpcStatus(status)
            if matches!(
                status.code(),
                Code::InvalidArgument
                    | Code::PermissionDenied
                    | Code::Unauthenticated
                    | Code::Unimplemented
            ) =>
        {
            StoreError::Invalid(format!("etcd refused the request: {}", status.message()))
        }
        E::GRpcStatus(status) => {
            StoreError::Unavailable(format!("etcd: {} ({:?})", status.message(), status.code()))
        }
        _ => StoreError::Unavailable(format!("etcd: {e}")),
    }
}

fn is_lease_not_found(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(status) => status.message().contains("lease not found"),
        etcd_client::Error::LeaseKeepAliveError(msg) => msg.contains("not found"),
        _ => false,
    }
}

/// A TTL in etcd's whole seconds, rounded up.
fn ttl_secs(ttl: Duration) -> Result<i64, StoreError> {
    if ttl.is_zero() {
        return Err(StoreError::Invalid("lease TTL must be positive".into()));
    }
    let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    i64::try_from(secs).map_err(|_| StoreError::Invalid(format!("lease TTL {ttl:?} too long")))
}

/// The range reads of a transaction's executed branch, in order.
fn gets(resp: &TxnResponse) -> Vec<Vec<KeyValue>> {
    resp.op_responses()
        .into_iter()
        .filter_map(|op| match op {
            TxnOpResponse::Get(get) => Some(get.kvs().to_vec()),
            _ => None,
        })
        .collect()
}

fn describe_leader(kv: Option<&KeyValue>) -> String {
    match kv {
        Some(kv) => format!(
            "leader is {} at revision {}",
            String::from_utf8_lossy(kv.value()),
            kv.create_revision()
        ),
        None => "no leader".to_string(),
    }
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> Revision {
    header.map_or(0, |h| as_u64(h.revision()))
}

fn as_u64(revision: i64) -> Revision {
    u64::try_from(revision).unwrap_or(0)
}

/// A revision as etcd's signed one; one beyond etcd's range can never match.
fn as_i64(revision: Revision) -> i64 {
    i64::try_from(revision).unwrap_or(i64::MAX)
}

/// A key suffix unique with overwhelming probability: wall-clock nanoseconds and a random word.
fn unique_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    format!("{nanos:032x}-{random:016x}")
}
