//! Leaves the cluster as the campaign found it: every member it stopped running again, the
//! original leader back (by a switchover) when it is healthy, the campaign's table dropped.

use std::time::{Duration, Instant};

use pgha_core::{ClusterConfig, RequestKind};
use pgha_host::api::control::ConfigChange;
use pgha_host::promotion_wait::Awaited;

use crate::error::ChaosError;
use crate::faults;
use crate::health::{self, Healthy};
use crate::target::Target;
use crate::workload::{CONNECT_TIMEOUT, TABLE};

/// Waits until the cluster is healthy, up to `bound`; the last reasons why not.
pub async fn wait_healthy(target: &Target, bound: Duration) -> Result<Healthy, Vec<String>> {
    let names: Vec<String> = target.members.iter().map(|m| m.name.clone()).collect();
    let deadline = Instant::now() + bound;
    loop {
        let why = match health::check(&target.client, &names).await {
            Ok(h) => return Ok(h),
            Err(ChaosError::Unhealthy { reasons }) => reasons,
            Err(e) => vec![e.to_string()],
        };
        if Instant::now() > deadline {
            return Err(why);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Puts the cluster back (the `settings` assignments that restore the dynamic settings the
/// campaign changed first); what it did and what it could not, one line each.
pub async fn restore(
    target: &Target,
    original_leader: &str,
    stopped: &[String],
    settings: Option<Vec<String>>,
    bound: Duration,
) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(assignments) = settings {
        let change = ConfigChange {
            assignments: assignments.clone(),
        };
        match target
            .client
            .post::<_, ClusterConfig>("/config", &change)
            .await
        {
            Ok(_) => notes.push(format!("put the settings back: {}", assignments.join(" "))),
            Err(e) => notes.push(format!(
                "could not put the settings back ({}): {e}",
                assignments.join(" ")
            )),
        }
    }
    for member in stopped {
        match faults::start(target, member).await {
            Ok(true) => notes.push(format!("started {member} again")),
            Ok(false) => {}
            Err(e) => notes.push(format!("could not start {member}: {e}")),
        }
    }
    let healthy = match wait_healthy(target, bound).await {
        Ok(h) => h,
        Err(why) => {
            notes.push(format!(
                "the cluster is not healthy after {} s, so the leader was left as it is: {}",
                bound.as_secs(),
                why.join("; ")
            ));
            return notes;
        }
    };
    if healthy.leader != original_leader {
        if !healthy.standbys.iter().any(|s| s == original_leader) {
            notes.push(format!(
                "{original_leader} (the leader before the campaign) is not a streaming standby: \
                 {} stays the leader",
                healthy.leader
            ));
        } else {
            notes.push(switch_back(target, original_leader, bound).await);
        }
    }
    match drop_table(target).await {
        Ok(()) => notes.push(format!("dropped {TABLE}")),
        Err(e) => notes.push(format!("could not drop {TABLE}: {e}")),
    }
    notes
}

/// A switchover back to `original` (retried while the cluster refuses it as not ready).
async fn switch_back(target: &Target, original: &str, bound: Duration) -> String {
    let deadline = Instant::now() + bound;
    let mut last = String::new();
    while Instant::now() < deadline {
        let since = target.client.history_len().await.unwrap_or(usize::MAX);
        match target
            .client
            .request_promotion(Some(original.to_string()), RequestKind::Switchover)
            .await
        {
            Ok(_) => {
                let awaited = Awaited::Member(original.to_string());
                return match target.client.wait_promoted(&awaited, since).await {
                    Ok(_) => match wait_healthy(target, bound).await {
                        Ok(_) => format!("switched over back to {original}"),
                        Err(why) => format!(
                            "switched over back to {original}, not healthy yet: {}",
                            why.join("; ")
                        ),
                    },
                    Err(e) => format!("switchover back to {original}: {e}"),
                };
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    format!("switchover back to {original} refused: {last}")
}

/// Drops the campaign's table through the read-write route.
pub async fn drop_table(target: &Target) -> Result<(), ChaosError> {
    let client = primary(target).await?;
    client
        .batch_execute(&format!(
            "SET client_min_messages = warning; DROP TABLE IF EXISTS {TABLE}"
        ))
        .await
        .map_err(|source| ChaosError::Sql {
            what: format!("DROP TABLE {TABLE}"),
            source,
        })
}

/// (Re)creates the campaign's table.
pub async fn create_table(target: &Target) -> Result<(), ChaosError> {
    let client = primary(target).await?;
    client
        .batch_execute(&format!(
            "SET client_min_messages = warning; DROP TABLE IF EXISTS {TABLE}; \
             CREATE TABLE {TABLE}(id bigint PRIMARY KEY, writer int NOT NULL, \
                                  at timestamptz NOT NULL DEFAULT clock_timestamp())"
        ))
        .await
        .map_err(|source| ChaosError::Sql {
            what: format!("CREATE TABLE {TABLE}"),
            source,
        })
}

/// A connection to the primary through the writers' first route.
async fn primary(target: &Target) -> Result<tokio_postgres::Client, ChaosError> {
    target
        .connect(&target.writes[0], CONNECT_TIMEOUT)
        .await
        .map_err(|e| ChaosError::connect("connect to the primary", e))
}
