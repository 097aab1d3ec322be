//! Distributed-mode harness: a real etcd (stoppable with SIGTERM and restartable on the same
//! data directory and ports), severable TCP links in front of it, and `pgha agent` processes
//! with their own config files, all on free loopback ports below 32768; every process is
//! cleaned up by pid on drop, also while a test panics (agent logs are printed then).
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[allow(unused_imports)] // for the test files that include this one
pub use pgha_testkit::{http, wait_until};
use pgha_testkit::{poll, EtcdNode, EtcdServer};
use serde_json::Value;

#[path = "dist/agent.rs"]
mod agent;
#[path = "dist/cluster.rs"]
mod cluster;

#[allow(unused_imports)] // for the test files that include this one
pub use {agent::*, cluster::*};

/// ttl, safety margin and loop wait of the test clusters (see [`node_config`]).
pub const TTL: Duration = Duration::from_millis(3000);
pub const SAFETY_MARGIN: Duration = Duration::from_millis(1000);
pub const LOOP_WAIT: Duration = Duration::from_millis(500);

pub const SUPERUSER_PASSWORD: &str = "su-secret-4711";
pub const API_TOKEN: &str = "test-token-0815-4711-0042";

/// Writes the test clusters' secrets file (0600) into `root`; its path.
pub fn write_secrets(root: &Path) -> PathBuf {
    let secrets = root.join("secrets.toml");
    std::fs::write(
        &secrets,
        format!(
            "superuser_password = \"{SUPERUSER_PASSWORD}\"\nreplication_password = \"repl-secret-42\"\napi_token = \"{API_TOKEN}\"\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
    secrets
}

/// libpq key/value connection string for the superuser on `host:port`.
pub fn conninfo(host: &str, port: u16) -> String {
    format!(
        "host={host} port={port} user=postgres password={SUPERUSER_PASSWORD} dbname=postgres connect_timeout=1"
    )
}

// ---------------------------------------------------------------------------------------------
// What a test asks the agents over their REST APIs

/// One member's agent, as a test reaches it over its REST API.
pub trait AgentApi {
    fn name(&self) -> &str;

    /// `host:port` of the REST API.
    fn api_addr(&self) -> String;

    fn get(&self, path: &str) -> Option<(u16, String)> {
        http("GET", &self.api_addr(), path, None, None)
    }

    fn is_primary(&self) -> bool {
        matches!(self.get("/primary"), Some((200, _)))
    }

    fn is_streaming_replica(&self) -> bool {
        matches!(self.get("/replica"), Some((200, _)))
    }
}

/// A cluster's agents, polled over their REST APIs.
pub trait AgentSet {
    type Agent: AgentApi;

    /// How often the waits below ask.
    const POLL: Duration = Duration::from_millis(100);

    fn rest_agents(&self) -> &[Self::Agent];

    /// The agents' log tails, for the failure messages of the waits below.
    fn failure_logs(&self) -> String;

    /// The members whose `/primary` answers 200.
    fn primaries(&self) -> Vec<String> {
        self.rest_agents()
            .iter()
            .filter(|a| a.is_primary())
            .map(|a| a.name().to_string())
            .collect()
    }

    /// Waits until exactly one member is primary and all the others stream; returns the leader.
    fn wait_converged(&self, timeout: Duration) -> String {
        let converged = poll(timeout, Self::POLL, || {
            let primaries = self.primaries();
            let [leader] = primaries.as_slice() else {
                return None;
            };
            let others_stream = self
                .rest_agents()
                .iter()
                .filter(|a| a.name() != leader)
                .all(|a| a.is_streaming_replica());
            others_stream.then(|| leader.clone())
        });
        converged.unwrap_or_else(|| {
            panic!(
                "cluster did not converge within {timeout:?} (primaries {:?}); /cluster: {}\n{}",
                self.primaries(),
                self.cluster_json()
                    .map(|v| v.to_string())
                    .unwrap_or_default(),
                self.failure_logs()
            )
        })
    }

    /// `/cluster` from the first agent that answers.
    fn cluster_json(&self) -> Option<Value> {
        self.rest_agents()
            .iter()
            .find_map(|a| match a.get("/cluster") {
                Some((200, body)) => serde_json::from_str(&body).ok(),
                _ => None,
            })
    }

    fn history(&self) -> Vec<Value> {
        self.cluster_json()
            .and_then(|c| c["history"].as_array().cloned())
            .unwrap_or_default()
    }

    /// Waits for the bootstrap's history entry (`/primary` answers 200 while the bootstrap job
    /// is still finishing; the entry is written when it is done).
    fn wait_bootstrapped(&self, timeout: Duration) {
        wait_until("the bootstrap history entry", timeout, || {
            self.history()
                .iter()
                .any(|e| e["kind"] == "bootstrap")
                .then_some(())
        });
    }
}

// ---------------------------------------------------------------------------------------------
// etcd

/// A single-node etcd on fixed (pre-chosen free) ports with its data and log in `dir`,
/// prepared, not started (so a test can start agents before etcd answers).
pub fn etcd(dir: &Path, client_port: u16, peer_port: u16) -> EtcdServer {
    let node = EtcdNode::single(
        "pgha-dist",
        format!("127.0.0.1:{client_port}"),
        format!("127.0.0.1:{peer_port}"),
    );
    EtcdServer::new(node, dir)
}
