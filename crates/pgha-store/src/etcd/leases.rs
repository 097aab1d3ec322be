//! This member's leases in etcd: granting, keeping alive, revoking, and member keys bound to them.

use super::convert::{header_revision, map_err};
use super::EtcdStore;
use crate::error::StoreError;
use etcd_client::PutOptions;
use std::collections::HashMap;

/// A member's lease as this process granted it (reused by keep-alive while the TTL is unchanged).
#[derive(Clone, Copy, Debug)]
pub(super) struct MemberLease {
    pub(super) id: i64,
    pub(super) ttl: i64,
}

impl EtcdStore {
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
    pub(super) async fn keep_alive_ttl(&self, id: i64) -> Result<Option<i64>, StoreError> {
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

    pub(super) async fn grant(&self, ttl: i64) -> Result<i64, StoreError> {
        let resp = self
            .client
            .lease_client()
            .grant(ttl, None)
            .await
            .map_err(map_err)?;
        Ok(resp.id())
    }

    /// Revokes a lease, ignoring one that is already gone.
    pub(super) async fn revoke(&self, id: i64) -> Result<(), StoreError> {
        match self.client.lease_client().revoke(id).await {
            Ok(_) => Ok(()),
            Err(e) if is_lease_not_found(&e) => Ok(()),
            Err(e) => Err(map_err(e)),
        }
    }

    pub(super) fn lock_leases(&self) -> std::sync::MutexGuard<'_, HashMap<String, MemberLease>> {
        self.member_leases.lock().expect("member lease lock")
    }

    /// Puts `members/<name>` on this member's lease: the known one restarted by a keep-alive,
    /// or a new one (then the old lease, of another TTL, is revoked once nothing uses it).
    pub(super) async fn put_member_leased(
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
