//! The leader key's compare-and-set transactions: who holds it, putting it on a lease, moving it
//! to another.

use super::convert::as_i64;
use super::EtcdStore;
use crate::model::Revision;
use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};

impl EtcdStore {
    /// Compares that hold while `holder` holds the leader key in term `revision`.
    pub(super) fn leader_is(&self, holder: &str, revision: Revision) -> Vec<Compare> {
        let leader = self.leader_path();
        vec![
            Compare::value(leader.clone(), CompareOp::Equal, holder),
            Compare::create_revision(leader, CompareOp::Equal, as_i64(revision)),
        ]
    }

    /// A transaction that, when `compare` holds, puts the leader key naming `holder` on
    /// `lease` (with `also`), and otherwise reads the leader key (to say who holds it).
    pub(super) fn put_leader_if(
        &self,
        compare: Vec<Compare>,
        holder: &str,
        lease: i64,
        also: Vec<TxnOp>,
    ) -> Txn {
        let leader = self.leader_path();
        let put = TxnOp::put(
            leader.clone(),
            holder,
            Some(PutOptions::new().with_lease(lease)),
        );
        Txn::new()
            .when(compare)
            .and_then([vec![put], also].concat())
            .or_else([TxnOp::get(leader, None)])
    }

    /// Moves `holder`'s leader key (term `revision`) to `lease`, only while the key is still
    /// at `mod_revision`, as last read: a move whose answer was lost can then be kept from
    /// landing late by writing the key again (see `renew_leader`).
    pub(super) fn move_leader(
        &self,
        holder: &str,
        revision: Revision,
        mod_revision: i64,
        lease: i64,
    ) -> Txn {
        let mut compare = self.leader_is(holder, revision);
        compare.push(Compare::mod_revision(
            self.leader_path(),
            CompareOp::Equal,
            mod_revision,
        ));
        self.put_leader_if(compare, holder, lease, Vec::new())
    }
}
