//! This member's leases in etcd: granting, keeping alive, revoking, and member keys bound to them.

use super::convert::{header_revision, map_err};
use super::EtcdStore;
use crate::error::StoreError;
use etcd_client::{Client, PutOptions};
use std::collections::HashMap;

/// A lease as this process last granted or kept it alive, with the TTL etcd granted it
/// (reused by keep-alive while the TTL wanted is unchanged).
#[derive(Clone, Copy, Debug)]
pub(super) struct KnownLease {
    pub(super) id: i64,
    pub(super) ttl: i64,
}

impl EtcdStore {
    /// Restarts lease `id` through `client`; `Ok(false)` when etcd no longer knows it (expired
    /// or revoked).
    pub(super) async fn keep_alive(&self, client: &Client, id: i64) -> Result<bool, StoreError> {
        match client.clone().lease_client().keep_alive(id).await {
            Ok(_) => Ok(true),
            Err(etcd_client::Error::LeaseKeepAliveError(msg)) if msg.contains("not found") => {
                Ok(false)
            }
            Err(e) => Err(map_err(e)),
        }
    }

    /// Restarts lease `id` and returns the TTL (s) it was granted with; `Ok(None)` when etcd
    /// no longer knows it.
    pub(super) async fn keep_alive_ttl(
        &self,
        client: &Client,
        id: i64,
    ) -> Result<Option<i64>, StoreError> {
        // The first keep-alive (inside `keep_alive`) restarts the lease; the second one's
        // answer carries the granted TTL.
        let (mut keeper, mut responses) = match client.clone().lease_client().keep_alive(id).await {
            Ok(pair) => pair,
            Err(etcd_client::Error::LeaseKeepAliveError(msg)) if msg.contains("not found") => {
                return Ok(None)
            }
            Err(e) => return Err(map_err(e)),
        };
        keeper.keep_alive().await.map_err(map_err)?;
        let answer = responses.message().await.map_err(map_err)?;
        granted_ttl(answer.map(|resp| resp.ttl()))
    }

    /// A new lease of `ttl` seconds, with the TTL etcd granted (never less than asked).
    pub(super) async fn grant(&self, ttl: i64) -> Result<KnownLease, StoreError> {
        let resp = self
            .client()
            .lease_client()
            .grant(ttl, None)
            .await
            .map_err(map_err)?;
        Ok(KnownLease {
            id: resp.id(),
            ttl: resp.ttl(),
        })
    }

    /// Revokes a lease, ignoring one that is already gone.
    pub(super) async fn revoke(&self, id: i64) -> Result<(), StoreError> {
        match self.client().lease_client().revoke(id).await {
            Ok(_) => Ok(()),
            Err(e) if is_lease_not_found(&e) => Ok(()),
            Err(e) => Err(map_err(e)),
        }
    }

    pub(super) fn lock_leases(&self) -> std::sync::MutexGuard<'_, HashMap<String, KnownLease>> {
        self.member_leases.lock().expect("member lease lock")
    }

    /// The lease `holder`'s leader key was last found on, as this process kept it alive.
    pub(super) fn leader_lease(&self, holder: &str) -> Option<KnownLease> {
        let leases = self.leader_leases.lock().expect("leader lease lock");
        leases.get(holder).copied()
    }

    /// Remembers (or, with `None`, forgets) the lease of `holder`'s leader key.
    pub(super) fn set_leader_lease(&self, holder: &str, lease: Option<KnownLease>) {
        set_or_forget(&self.leader_leases, holder, lease);
    }

    /// The revision `holder`'s leader key was last written at, as this process knows it.
    pub(super) fn leader_written_at(&self, holder: &str) -> Option<i64> {
        let writes = self.leader_writes.lock().expect("leader write lock");
        writes.get(holder).copied()
    }

    /// Remembers (or, with `None`, forgets) the revision `holder`'s leader key was written at.
    pub(super) fn set_leader_written_at(&self, holder: &str, revision: Option<i64>) {
        set_or_forget(&self.leader_writes, holder, revision);
    }

    /// The lease a move of `holder`'s leader key was sent to without an answer, if any.
    pub(super) fn pending_move(&self, holder: &str) -> Option<i64> {
        let moves = self.pending_moves.lock().expect("pending move lock");
        moves.get(holder).copied()
    }

    /// Remembers (or, with `None`, forgets) a move of `holder`'s leader key under way.
    pub(super) fn set_pending_move(&self, holder: &str, lease: Option<i64>) {
        set_or_forget(&self.pending_moves, holder, lease);
    }

    /// Puts `members/<name>` on this member's lease: the known one, kept alive in the same
    /// round trip as the put (one round trip in steady state), or a new one (then the old
    /// lease, of another TTL, is revoked once nothing uses it).
    pub(super) async fn put_member_leased(
        &self,
        name: &str,
        value: &str,
        ttl: i64,
    ) -> Result<u64, StoreError> {
        for _ in 0..2 {
            let known = self.lock_leases().get(name).copied();
            if let Some(lease) = known.filter(|l| l.ttl == ttl) {
                let client = self.client();
                let put = self.put_on_lease(name, value, lease.id);
                let (alive, put) = tokio::join!(self.keep_alive(&client, lease.id), put);
                match (alive?, put) {
                    (true, Ok(revision)) => return Ok(revision),
                    (true, Err(e)) if !is_lease_not_found(&e) => return Err(map_err(e)),
                    // Expired (before or between the two): grant a new one.
                    _ => {
                        self.lock_leases().remove(name);
                        continue;
                    }
                }
            }
            // Remembered with the TTL asked for, which the next put compares (etcd may grant
            // more: its minimum).
            let lease = KnownLease {
                ttl,
                ..self.grant(ttl).await?
            };
            let stale = known.map(|l| l.id);
            self.lock_leases().insert(name.to_string(), lease);
            match self.put_on_lease(name, value, lease.id).await {
                Ok(revision) => {
                    if let Some(old) = stale {
                        // Best effort: an old lease nothing is bound to expires by itself.
                        let _ = self.revoke(old).await;
                    }
                    return Ok(revision);
                }
                // Expired between the grant and the put: grant a new one.
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

    /// `members/<name>` = `value`, bound to lease `id`; the revision written.
    async fn put_on_lease(
        &self,
        name: &str,
        value: &str,
        id: i64,
    ) -> Result<u64, etcd_client::Error> {
        let options = PutOptions::new().with_lease(id);
        let resp = self
            .client()
            .kv_client()
            .put(self.member_path(name), value, Some(options))
            .await?;
        Ok(header_revision(resp.header()))
    }
}

/// What a keep-alive's answer says of the lease: the TTL (s) it was granted, `None` when etcd
/// no longer knows it (TTL 0 or less). A stream that ended without an answer says nothing of
/// the lease: the call failed (read as "expired", it would demote a leader for nothing).
fn granted_ttl(answer: Option<i64>) -> Result<Option<i64>, StoreError> {
    match answer {
        Some(ttl) if ttl > 0 => Ok(Some(ttl)),
        Some(_) => Ok(None),
        None => Err(StoreError::Unavailable(
            "etcd ended the lease keep-alive stream without an answer".into(),
        )),
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
pub(super) fn ttl_secs(ttl: pgha_core::Ttl) -> Result<i64, StoreError> {
    let ttl = ttl.as_duration();
    if ttl.is_zero() {
        return Err(StoreError::Invalid("lease TTL must be positive".into()));
    }
    let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    i64::try_from(secs).map_err(|_| StoreError::Invalid(format!("lease TTL {ttl:?} too long")))
}

/// `map[holder] = value`, or no entry for `holder` when `value` is `None`.
fn set_or_forget<V>(map: &std::sync::Mutex<HashMap<String, V>>, holder: &str, value: Option<V>) {
    let mut map = map.lock().expect("lease map lock");
    match value {
        Some(v) => map.insert(holder.to_string(), v),
        None => map.remove(holder),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keep_alive_stream_that_ends_unanswered_is_no_expiry() {
        assert_eq!(granted_ttl(Some(10)), Ok(Some(10)));
        assert_eq!(granted_ttl(Some(0)), Ok(None));
        assert!(matches!(granted_ttl(None), Err(StoreError::Unavailable(_))));
    }
}
