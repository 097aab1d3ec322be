//! The `Store` operations on etcd: guarded transactions on the leader key, members, keys, history.

use super::convert::{as_i64, as_u64, describe_leader, gets, header_revision, map_err};
use super::leases::{ttl_secs, KnownLease};
use super::watch::EtcdWatch;
use super::EtcdStore;
use crate::error::StoreError;
use crate::history_id::HistoryId;
use crate::model::{Guard, Key, Revision, Snapshot};
use crate::store::{Store, Watch};
use async_trait::async_trait;
use etcd_client::{Compare, CompareOp, DeleteOptions, KeyValue, PutOptions, Txn, TxnOp};
use pgha_core::Ttl;
use std::time::Duration;
use tokio::time::Instant;
use tonic::Code;

#[async_trait]
impl Store for EtcdStore {
    async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        self.call(self.snapshot_now()).await
    }

    async fn acquire_leader_if(
        &self,
        holder: &str,
        ttl: Ttl,
        failsafe_read: Option<Revision>,
    ) -> Result<Revision, StoreError> {
        let ttl = ttl_secs(ttl)?;
        if holder.is_empty() {
            return Err(StoreError::Invalid("empty leader name".into()));
        }
        let leader = self.leader_path();
        self.call(async {
            let lease = self.grant(ttl).await?;
            let failsafe_path = self.path(Key::Failsafe.name());
            let mut compare = vec![Compare::create_revision(
                leader.clone(),
                CompareOp::Equal,
                0,
            )];
            compare.extend(failsafe_read.map(|r| self.key_at(&failsafe_path, r)));
            let alone = crate::view::failsafe_list_of_alone(holder);
            let failsafe = TxnOp::put(failsafe_path, alone, None);
            let txn = self.put_leader_if(compare, holder, lease.id, vec![failsafe]);
            let resp = self.txn(txn).await?;
            if resp.succeeded() {
                self.set_leader_lease(holder, Some(lease));
                let revision = header_revision(resp.header());
                self.set_leader_written_at(holder, Some(as_i64(revision)));
                return Ok(revision);
            }
            // Best effort: an unused lease expires by itself.
            let _ = self.revoke(lease.id).await;
            let reads = gets(&resp);
            let held = reads.first().and_then(|kvs| kvs.first());
            if let (None, Some(read)) = (held, failsafe_read) {
                return Err(StoreError::conflict(
                    "failsafe",
                    format!("written since it was read at revision {read}"),
                ));
            }
            Err(StoreError::conflict("leader", describe_leader(held)))
        })
        .await
    }

    async fn renew_leader(
        &self,
        holder: &str,
        revision: Revision,
        ttl: Ttl,
    ) -> Result<Ttl, StoreError> {
        let wanted = ttl_secs(ttl)?;
        let leader = self.leader_path();
        let renewal = async {
            let known = self.leader_lease(holder);
            // Adopting the key (this process knows no lease of it: an earlier process of this
            // member held it), a move of it that process sent may still be in flight, never
            // answered: the key is written again where it is (value and lease kept), in the
            // same round trip, so that the move's compare of the key's revision fails.
            let adopt = known.is_none().then(|| {
                let keep = PutOptions::new().with_ignore_value().with_ignore_lease();
                TxnOp::put(leader.clone(), "", Some(keep))
            });
            let reads = adopt.into_iter().chain([TxnOp::get(leader.clone(), None)]);
            let txn = Txn::new()
                .when(self.leader_is(holder, revision))
                .and_then(reads.collect::<Vec<_>>())
                .or_else([TxnOp::get(leader.clone(), None)]);
            // In steady state the key's lease is known: it is kept alive in the same round
            // trip as the key is checked. Either happens after the caller's send time, which
            // is where the holder's trust starts.
            //
            // Both go to one member: a stalled etcd leader still answers keep-alives from its
            // own lessor (before etcd 3.4.28 and 3.5.11), keeping nothing alive once the others
            // have elected another leader, but it cannot answer the compare, a linearizable
            // read. Were they split between two members, a compare answered elsewhere could
            // vouch for such a keep-alive.
            let client = self.client();
            let txn_on = |txn| {
                let mut kv = client.kv_client();
                async move { kv.txn(txn).await.map_err(map_err) }
            };
            let (resp, kept) = match known {
                Some(lease) => {
                    let (resp, alive) =
                        tokio::join!(txn_on(txn), self.keep_alive(&client, lease.id));
                    (resp?, alive.ok().filter(|alive| *alive).map(|_| lease))
                }
                None => (txn_on(txn).await?, None),
            };
            let reads = gets(&resp);
            let current = reads.first().and_then(|kvs| kvs.first());
            if !resp.succeeded() {
                return Err(StoreError::conflict("leader", describe_leader(current)));
            }
            let lease = current.map_or(0, KeyValue::lease);
            // The key's revision as last known here: a move compares it.
            let mut read_at = current.map_or(0, KeyValue::mod_revision);
            if let Some(moved) = self
                .pending_move(holder)
                .filter(|m| *m != lease && lease != 0)
            {
                // A move to a new lease whose answer never came has not landed (had it, the
                // key would be on `moved`: then it is kept alive below, as the key's lease).
                // It may still: put the key again where it is, so that its compare of the
                // key's revision fails; only then is `moved` of no use, and revoked (revoking
                // a lease the key had moved to would delete the key under a running primary).
                let stay = self.move_leader(holder, revision, read_at, lease);
                let resp = self.txn(stay).await?;
                if !resp.succeeded() {
                    // The move landed meanwhile, or the key changed hands: read again.
                    return Err(StoreError::Unavailable(
                        "the leader key changed while a move of it was settled".into(),
                    ));
                }
                read_at = resp.header().map_or(0, |h| h.revision());
                self.set_pending_move(holder, None);
                let _ = self.revoke(moved).await;
            }
            if self.pending_move(holder) == Some(lease) {
                // It landed: the key's lease now; the one it left carries nothing.
                self.set_pending_move(holder, None);
                if let Some(left) = known.filter(|k| k.id != lease) {
                    let _ = self.revoke(left.id).await;
                }
            }
            let granted = match kept {
                Some(known) if known.id == lease => Some(known.ttl),
                _ if lease == 0 => None,
                _ => self.keep_alive_ttl(&client, lease).await?,
            };
            let Some(granted) = granted else {
                return Err(StoreError::conflict("leader", "absent (lease expired)"));
            };
            let kept = KnownLease {
                id: lease,
                ttl: granted,
            };
            self.set_leader_lease(holder, Some(kept));
            self.set_leader_written_at(holder, Some(read_at));
            if granted == wanted {
                return Ok(Ttl::from_secs(granted as u64));
            }
            // The configured ttl changed: move the key (same term) to a lease of the new TTL.
            // Until this succeeds the holder trusts the old lease's TTL, which etcd keeps.
            let fresh = self.grant(wanted).await?;
            let txn = self.move_leader(holder, revision, read_at, fresh.id);
            self.set_pending_move(holder, Some(fresh.id));
            let resp = self.txn(txn).await;
            if resp.is_ok() {
                self.set_pending_move(holder, None); // answered: landed or not, it is known
            }
            let resp = resp?;
            if !resp.succeeded() {
                let _ = self.revoke(fresh.id).await;
                let found = describe_leader(gets(&resp).first().and_then(|kvs| kvs.first()));
                return Err(StoreError::conflict("leader", found));
            }
            self.set_leader_lease(holder, Some(fresh));
            self.set_leader_written_at(holder, resp.header().map(|h| h.revision()));
            let _ = self.revoke(lease).await;
            Ok(Ttl::from_secs(wanted as u64))
        };
        let result = self.call(renewal).await;
        if matches!(result, Err(StoreError::Conflict { .. })) {
            self.set_leader_lease(holder, None);
            self.set_leader_written_at(holder, None);
        }
        result
    }

    async fn release_leader(&self, holder: &str, revision: Revision) -> Result<(), StoreError> {
        self.set_leader_lease(holder, None);
        // The key as this process last wrote it (unless a move of it may have landed since):
        // a release that reaches etcd late, after this process died and another process of
        // the member adopted the key (which writes it again), must not delete it.
        let written_at = self
            .leader_written_at(holder)
            .filter(|_| self.pending_move(holder).is_none());
        self.set_leader_written_at(holder, None);
        let leader = self.leader_path();
        let mut compare = self.leader_is(holder, revision);
        compare.extend(
            written_at.map(|at| Compare::mod_revision(leader.clone(), CompareOp::Equal, at)),
        );
        self.call(async {
            let txn = Txn::new()
                .when(compare)
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

    async fn put_member(&self, name: &str, value: &str, ttl: Ttl) -> Result<Revision, StoreError> {
        let ttl = ttl_secs(ttl)?;
        StoreError::check_member_name(name)?;
        self.call(self.put_member_leased(name, value, ttl)).await
    }

    async fn delete_member(&self, name: &str) -> Result<(), StoreError> {
        let path = self.member_path(name);
        self.call(async {
            let resp = self
                .client()
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
        self.guarded(key, guard, TxnOp::put(path, value, None))
            .await
    }

    async fn delete(&self, key: Key, guard: Guard) -> Result<(), StoreError> {
        let path = self.path(key.name());
        self.guarded(key, guard, TxnOp::delete(path, None))
            .await
            .map(|_| ())
    }

    async fn append_history(
        &self,
        id: &HistoryId,
        entry: &str,
        guard: Guard,
    ) -> Result<Revision, StoreError> {
        if !matches!(guard, Guard::Any | Guard::Leader { .. }) {
            return Err(StoreError::Invalid(
                "history appends take Guard::Any or Guard::Leader".into(),
            ));
        }
        // The entry's key only has to be new: order comes from its creation revision.
        let path = self.path(&format!("history/{id}"));
        self.call(async {
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
            if let Some(recorded) = reads.first().and_then(|kvs| kvs.first()) {
                // An earlier attempt landed (its answer was lost): recorded once is enough.
                return if recorded.value() == entry.as_bytes() {
                    Ok(as_u64(recorded.mod_revision()))
                } else {
                    Err(StoreError::Invalid(format!(
                        "history entry {id} already holds another entry"
                    )))
                };
            }
            let leader = reads.get(1).and_then(|kvs| kvs.first());
            match &guard {
                Guard::Leader { holder, .. } => Err(StoreError::conflict(
                    "history",
                    format!("{holder} is not leader: {}", describe_leader(leader)),
                )),
                _ => Err(StoreError::Unavailable(format!(
                    "history entry {id}: neither written nor found"
                ))),
            }
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

    async fn trim_history(&self, keep: Duration) -> Result<Option<Revision>, StoreError> {
        let revision = self.call(self.current_revision()).await?;
        let cut = self
            .history_marks
            .lock()
            .unwrap()
            .cut(std::time::Instant::now(), revision, keep);
        let Some(cut) = cut else { return Ok(None) };
        let compacted = self
            .call(async {
                match self.client().kv_client().compact(cut, None).await {
                    Ok(_) => Ok(Some(as_u64(cut))),
                    // Compacted further already (etcd's own auto-compaction, another member).
                    Err(etcd_client::Error::GRpcStatus(s)) if s.code() == Code::OutOfRange => {
                        Ok(None)
                    }
                    Err(e) => Err(map_err(e)),
                }
            })
            .await?;
        Ok(compacted)
    }
}
