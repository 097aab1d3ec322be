//! CLI commands that act on a running cluster through its control API: switchover,
//! failover, stop/start a member, pause/resume, history.

use std::time::{Duration, Instant};

use pgha_store::HistoryEntry;
use pgha_store::{MemoryStore, Store, TokioClock};
use serde::Serialize;

use crate::api::{Answer, PromoteRequest};
use crate::client::{self, ApiError};
use crate::cluster::LocalCluster;
use crate::handle::ConfigChanged;
use crate::runtime::STORE_FILE;
use crate::status::{ClusterStatus, Role, State};

/// Posts a command and prints the answer.
pub fn say<B: Serialize>(cluster: &LocalCluster, path: &str, body: &B) -> anyhow::Result<()> {
    let answer: Answer =
        client::post(cluster, path, body).map_err(|e| client::explain(cluster, e))?;
    println!("{}", answer.message);
    Ok(())
}

/// Requests a switchover or failover, then waits until the target runs as the primary.
pub fn promote(cluster: &LocalCluster, path: &str, body: &PromoteRequest) -> anyhow::Result<()> {
    let started = Instant::now();
    let answer: Answer =
        client::post(cluster, path, body).map_err(|e| client::explain(cluster, e))?;
    let target = answer.message;
    println!(
        "{} to {target} requested",
        if path == "/switchover" {
            "switchover"
        } else {
            "failover"
        }
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match client::get::<ClusterStatus>(cluster, "/cluster") {
            Ok(status) => {
                let promoted = status.leader.as_deref() == Some(target.as_str())
                    && status.members.iter().any(|m| {
                        m.name == target && m.role == Role::Primary && m.state == State::Running
                    });
                if promoted {
                    println!(
                        "{target} is the primary (took {:.1} s)",
                        started.elapsed().as_secs_f64()
                    );
                    return Ok(());
                }
            }
            Err(ApiError::NotRunning) => {
                anyhow::bail!("the cluster stopped while waiting for {target} to be promoted")
            }
            Err(_) => {}
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "{target} is not the primary after 120 s; see `pgha status` and `pgha history`"
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The history from the running cluster, or from the persisted store when it is stopped.
pub async fn history(cluster: &LocalCluster) -> anyhow::Result<Vec<HistoryEntry>> {
    match client::get::<Vec<HistoryEntry>>(cluster, "/history") {
        Ok(entries) => Ok(entries),
        Err(ApiError::NotRunning) => {
            if !cluster.dir.join(STORE_FILE).exists() {
                return Ok(Vec::new());
            }
            let store = persisted_store(cluster)?;
            Ok(pgha_store::history_entries(&store.snapshot().await?))
        }
        Err(e) => Err(client::explain(cluster, e)),
    }
}

/// The dynamic settings, from the running cluster or its persisted store.
pub async fn config(cluster: &LocalCluster) -> anyhow::Result<pgha_core::ClusterConfig> {
    match client::get::<pgha_core::ClusterConfig>(cluster, "/config") {
        Ok(c) => Ok(c),
        Err(ApiError::NotRunning) => {
            let store = persisted_store(cluster)?;
            let snapshot = store.snapshot().await?;
            Ok(pgha_store::cluster_view(&snapshot)?.config)
        }
        Err(e) => Err(client::explain(cluster, e)),
    }
}

/// Applies KEY=VALUE assignments through the running cluster, or to its persisted store.
pub async fn set_config(
    cluster: &LocalCluster,
    assignments: &[String],
) -> anyhow::Result<ConfigChanged> {
    let body = crate::api::ConfigChange {
        assignments: assignments.to_vec(),
    };
    match client::post::<_, Answer>(cluster, "/config", &body) {
        Ok(_) => Ok(ConfigChanged {
            config: config(cluster).await?,
            deferred: false,
        }),
        Err(ApiError::NotRunning) => {
            let store = persisted_store(cluster)?;
            Ok(ConfigChanged {
                config: crate::ops::set_assignments(&store, assignments).await?,
                deferred: true,
            })
        }
        Err(e) => Err(client::explain(cluster, e)),
    }
}

fn persisted_store(cluster: &LocalCluster) -> anyhow::Result<MemoryStore> {
    let file = cluster.dir.join(STORE_FILE);
    if !file.exists() {
        anyhow::bail!(
            "{} has no settings yet: run `pgha up --dir {}` once",
            cluster.dir.display(),
            cluster.dir.display()
        );
    }
    Ok(MemoryStore::persistent(
        std::sync::Arc::new(TokioClock::new()),
        &file,
    )?)
}

/// The history as a table.
pub fn render_history(entries: &[HistoryEntry]) -> String {
    if entries.is_empty() {
        return "no events yet\n".into();
    }
    let name =
        |m: &Option<pgha_core::MemberName>| m.as_ref().map_or("-".to_string(), |m| m.to_string());
    let mut out = format!(
        "{:<20}  {:<15}  {:<4}  {:<4}  {:<3}  {:<11}  {}\n",
        "WHEN", "EVENT", "FROM", "TO", "TL", "LSN", "WHY"
    );
    for e in entries {
        let ev = &e.event;
        let kind = serde_json::to_value(ev.kind)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        out.push_str(&format!(
            "{:<20}  {:<15}  {:<4}  {:<4}  {:<3}  {:<11}  {}\n",
            e.at,
            kind,
            name(&ev.from),
            name(&ev.to),
            ev.timeline,
            ev.lsn,
            ev.reason
        ));
    }
    out
}
