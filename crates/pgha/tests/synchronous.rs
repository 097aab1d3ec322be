//! End-to-end synchronous replication (issue 4) against real PostgreSQL: `on` moves the
//! synchronous role and degrades instead of blocking, `strict` waits and says why,
//! `remote_apply` makes a commit visible on the sync standby at once, the mode changes live,
//! and no acknowledged write is lost when the primary is killed (I4).
//!
//! Each test runs its own 3-member `pgha up` on free ports, one at a time. The durability loop
//! runs `PGHA_DURABILITY_ROUNDS` kills per mode (default 5; the figure is 20).

mod common;

#[path = "synchronous/config_set.rs"]
mod config_set;
#[path = "synchronous/durability.rs"]
mod durability;
#[path = "synchronous/modes.rs"]
mod modes;
#[path = "synchronous/promotion.rs"]
mod promotion;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::cluster::Cluster;
use common::status::sync_states;
use pgha_testkit::{connect, poll_async, query_value, Writer};

const CONVERGE: Duration = Duration::from_secs(30);

/// A 3-member cluster started with `extra` arguments, every standby streaming.
fn start(extra: &[&str]) -> Cluster {
    Cluster::start(extra, CONVERGE)
}

/// A cluster started with `extra` arguments, its synchronous standby settled, the table `t`
/// created; the synchronous standby.
async fn start_sync(extra: &[&str]) -> (Cluster, String) {
    let c = start(extra);
    let sync = c.wait_settled_sync(CONVERGE);
    c.create_table().await;
    (c, sync)
}

/// Inserts rows through the read-write entry point as fast as it can, timing each commit
/// (connecting within 10 s, each write within 60 s: longer than any wait for a standby here).
fn writer(c: &Cluster, first_id: i64) -> Writer {
    c.entry_writer(first_id, Duration::from_secs(10), Duration::from_secs(60))
}
