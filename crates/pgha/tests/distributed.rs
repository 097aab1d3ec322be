//! Distributed mode end to end (issue 3): real etcd, real PostgreSQL, three `pgha agent`
//! processes on loopback. Bootstrap in any order, a node crash, the leader's link to etcd cut
//! (a severable relay), etcd restarted under the cluster, a member rebooted within a ttl of
//! confirming a leader cut off from etcd, a key of etcd edited by hand into a value
//! pgha cannot read, and bad input.
//!
//! The tests of this file run one at a time (a 2-core machine runs one 3-member cluster well);
//! every process is cleaned up by pid, also when a test fails (see `common/dist.rs`).

#[path = "common/dist.rs"]
mod dist;

#[path = "distributed/bootstrap.rs"]
mod bootstrap;
#[path = "distributed/cold_start.rs"]
mod cold_start;
#[path = "distributed/etcd_users.rs"]
mod etcd_users;
#[path = "distributed/failsafe_list.rs"]
mod failsafe_list;
#[path = "distributed/failsafe_reboot.rs"]
mod failsafe_reboot;
#[path = "distributed/failsafe_return.rs"]
mod failsafe_return;
#[path = "distributed/hand_edits.rs"]
mod hand_edits;
#[path = "distributed/housekeeping.rs"]
mod housekeeping;
#[path = "distributed/leader_key_removed.rs"]
mod leader_key_removed;
#[path = "distributed/outages.rs"]
mod outages;
#[path = "distributed/pause.rs"]
mod pause;
#[path = "distributed/startup.rs"]
mod startup;
#[path = "distributed/untargeted_switchover.rs"]
mod untargeted_switchover;
#[path = "distributed/watchdog_room.rs"]
mod watchdog_room;
#[path = "distributed/writers.rs"]
mod writers;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dist::*;
use pgha_testkit::{serial, try_connect};
use serde_json::Value;

// TTL, LOOP_WAIT and SAFETY_MARGIN: the test clusters' (see `dist::node_config`).

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn connect(conninfo: &str) -> Option<tokio_postgres::Client> {
    try_connect(conninfo, Duration::from_secs(2)).await
}

/// The first column of the first row of `sql` as text, on `agent`'s PostgreSQL.
fn sql(rt: &tokio::runtime::Runtime, agent: &Agent, query: &str) -> Option<String> {
    rt.block_on(async {
        let client = connect(&agent.conninfo()).await?;
        let msgs = client.simple_query(query).await.ok()?;
        msgs.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
    })
}

/// Waits (40 s at most) until agent `i` streams as a standby, then until the cluster converges
/// (20 s at most): returns the leader.
fn wait_rejoined(c: &DistCluster, i: usize) -> String {
    wait_until(
        &format!("{} streaming as a standby again", c.agents[i].name),
        Duration::from_secs(40),
        || c.agents[i].is_streaming_replica().then_some(()),
    );
    c.wait_converged(Duration::from_secs(20))
}

/// A client of the cluster's etcd, reading and writing its keys as pgha names them.
fn etcd_store(rt: &tokio::runtime::Runtime, c: &DistCluster) -> pgha_store::EtcdStore {
    rt.block_on(pgha_store::EtcdStore::connect(
        &[c.etcd.endpoint()],
        "demo",
        Duration::from_secs(2),
    ))
    .expect("a client of the cluster's etcd")
}

/// Sets the lease ttl every member of a prepared (not yet launched) cluster bootstraps with
/// (the test clusters' is 3 s).
fn bootstrap_ttl(c: &DistCluster, ttl_ms: u64) {
    for a in &c.agents {
        let text = std::fs::read_to_string(&a.config).unwrap();
        assert!(text.contains("ttl_ms = 3000"), "{}", a.config.display());
        let text = text.replace("ttl_ms = 3000", &format!("ttl_ms = {ttl_ms}"));
        std::fs::write(&a.config, text).unwrap();
    }
}

/// The cluster's `failsafe` key, read from etcd: the leader it was written for and the
/// members it lists.
fn failsafe_list(rt: &tokio::runtime::Runtime, c: &DistCluster) -> Option<(String, Vec<String>)> {
    rt.block_on(async {
        let store =
            pgha_store::EtcdStore::connect(&[c.etcd.endpoint()], "demo", Duration::from_secs(2))
                .await
                .ok()?;
        let snapshot = pgha_store::Store::snapshot(&store).await.ok()?;
        let list = pgha_store::cluster_view(&snapshot).ok()?.failsafe?;
        let members = list.members.iter().map(|m| m.as_str().to_string());
        Some((list.leader.as_str().to_string(), members.collect()))
    })
}

/// The name of a member other than `leader` (the first in the cluster's order).
fn another_member(c: &DistCluster, leader: &str) -> String {
    c.agents
        .iter()
        .find(|a| a.name != leader)
        .expect("a member besides the leader")
        .name
        .clone()
}

fn history_kinds(c: &DistCluster, kind: &str) -> Vec<Value> {
    c.history()
        .into_iter()
        .filter(|e| e["kind"] == kind)
        .collect()
}
