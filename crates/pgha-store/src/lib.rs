//! # pgha-store: the consensus store behind leader election
//!
//! The agent loop holds an `Arc<dyn Store>` and, each iteration:
//!
//! 1. reads [`Store::snapshot`] (one consistent read: leader key and its revision, live
//!    member keys, `config`, `sync`, `switchover`, `initialize`, history) and decodes it into
//!    `pgha_core::ClusterView` with [`cluster_view`] (values are JSON written by pgha; one that
//!    does not decode is an [`Unreadable`] error naming its key, never a default);
//! 2. executes the core's store actions: [`Store::acquire_leader_if`] (create-if-absent, bound
//!    to a lease of `ttl`, only while the `failsafe` key is as read, which it rewrites naming
//!    the new holder alone; record the instant the request was *sent* for the core's lease
//!    trust),
//!    [`Store::renew_leader`] / [`Store::release_leader`] (compare-and-set on the term
//!    revision), [`Store::put_member`] (bound to the member's own lease), leader-only writes
//!    with [`Guard::Leader`] (the synchronous set and the failsafe list with
//!    [`Guard::LeaderAndKey`]: also the key's revision they were decided on), `initialize` with
//!    [`Guard::Absent`];
//! 3. waits on a [`Watch`] (from [`Store::watch`]) or its timer, whichever comes first.
//!
//! Errors are [`StoreError`]; [`StoreError::is_retryable`] tells a timeout from a lost race.
//!
//! Backends: [`MemoryStore`] (embedded in `pgha up`: real leases on an injectable [`Clock`],
//! optional JSON persistence of the durable keys) and [`EtcdStore`] (etcd v3, for distributed
//! mode: `pgha agent`). Every backend must pass [`contract`] (see [`crate::store_contract_tests!`]).

pub mod clock;
pub mod contract;
pub mod error;
pub mod etcd;
mod history_id;
pub mod memory;
pub mod model;
mod persist;
pub mod store;
pub mod view;

pub use clock::{Clock, ManualClock, TokioClock};
pub use error::StoreError;
pub use etcd::{EtcdAccess, EtcdStore, EtcdUser};
pub use history_id::HistoryId;
pub use memory::MemoryStore;
pub use model::{Guard, Key, LeaderRecord, Revision, Snapshot, Versioned};
pub use store::{Store, Watch};
pub use view::{
    cluster_view, history_entries, routing_view, stored_config, HistoryEntry, Unreadable,
};
