//! The consensus-store trait the agent loop uses as `Arc<dyn Store>`, and its watch handle.

use crate::error::StoreError;
use crate::history_id::HistoryId;
use crate::model::{Guard, Key, Revision, Snapshot};
use async_trait::async_trait;
use pgha_core::Ttl;

/// A cluster's consensus store, scoped to one cluster prefix (`/pgha/<cluster>/`).
///
/// Maps onto etcd v3: the leader key is put with its own lease in a transaction comparing
/// `create_revision == 0`; renewals compare `mod_revision` and keep the lease alive (the
/// revision stays the same for the whole term); every guarded write is one transaction.
#[async_trait]
pub trait Store: Send + Sync {
    /// Reads everything under the prefix at one revision; expired leases are already gone.
    async fn snapshot(&self) -> Result<Snapshot, StoreError>;

    /// Creates the leader key for `holder`, bound to a new lease of `ttl`, only if absent,
    /// and in the same write makes the `failsafe` key a list naming `holder` alone: the list
    /// of an earlier term no longer holds back a member it does not name (nobody can still
    /// write on its confirmations once another term could begin), this term's own list is
    /// not there yet, and the key moves at every new term (what [`Store::acquire_leader_if`]
    /// compares). Returns the key's revision (the term). `Conflict` when someone holds it.
    async fn acquire_leader(&self, holder: &str, ttl: Ttl) -> Result<Revision, StoreError> {
        self.acquire_leader_if(holder, ttl, None).await
    }

    /// [`Store::acquire_leader`], and with `failsafe_read`, only while the `failsafe` key is
    /// still at that revision (0: absent): `Conflict` once a term began or a list was written
    /// since (an acquisition whose answer was lost, landing late, would otherwise promote a
    /// member on an election decided before a term it never saw).
    async fn acquire_leader_if(
        &self,
        holder: &str,
        ttl: Ttl,
        failsafe_read: Option<Revision>,
    ) -> Result<Revision, StoreError>;

    /// Restarts the leader lease, only if the key still has `holder` and `revision`, and makes
    /// its TTL `ttl`: when the lease was granted with another TTL (the configured ttl changed),
    /// a new lease is granted and the key moves to it in the same term. Returns the TTL the
    /// lease runs with now, which is what the holder may trust.
    async fn renew_leader(
        &self,
        holder: &str,
        revision: Revision,
        ttl: Ttl,
    ) -> Result<Ttl, StoreError>;

    /// Deletes the leader key (and revokes its lease) if it still has `holder` and `revision`.
    async fn release_leader(&self, holder: &str, revision: Revision) -> Result<(), StoreError>;

    /// Puts `members/<name>` bound to that member's lease, (re)starting the lease with `ttl`.
    async fn put_member(&self, name: &str, value: &str, ttl: Ttl) -> Result<Revision, StoreError>;

    /// Deletes `members/<name>` and revokes its lease (clean shutdown).
    async fn delete_member(&self, name: &str) -> Result<(), StoreError>;

    /// Writes `key` if `guard` holds; returns the new revision.
    async fn put(&self, key: Key, value: &str, guard: Guard) -> Result<Revision, StoreError>;

    /// Deletes `key` if `guard` holds (deleting an absent key with `Guard::Any` is fine).
    async fn delete(&self, key: Key, guard: Guard) -> Result<(), StoreError>;

    /// Appends the history entry `id` if `guard` holds; returns its revision. Appending an
    /// `id` that is already recorded with the same entry records nothing and succeeds (a
    /// retry after an answer was lost); with another entry it is [`StoreError::Invalid`].
    async fn append_history(
        &self,
        id: &HistoryId,
        entry: &str,
        guard: Guard,
    ) -> Result<Revision, StoreError>;

    /// Subscribes to changes under the prefix (including lease expiries).
    async fn watch(&self) -> Result<Box<dyn Watch>, StoreError>;

    /// Discards the store's history older than `keep`, so that it does not fill the store:
    /// called now and then, it compacts up to the newest revision it saw at least `keep` ago.
    /// The revision it compacted to, if it did. A store that keeps no history has nothing to
    /// do.
    async fn trim_history(
        &self,
        keep: std::time::Duration,
    ) -> Result<Option<Revision>, StoreError> {
        let _ = keep;
        Ok(None)
    }
}

/// A subscription to changes under the cluster prefix.
#[async_trait]
pub trait Watch: Send {
    /// Waits until something changed after the last change this handle returned (or after
    /// its creation), and returns the store revision of that change. Several changes may be
    /// reported as one: re-read with [`Store::snapshot`].
    async fn changed(&mut self) -> Result<Revision, StoreError>;
}
