//! The API's read endpoints: the cluster as the store has it (`/cluster`), the probed status
//! (`/status`), the history, the dynamic settings and Prometheus metrics.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use pgha_agent::Observed;
use pgha_core::{ClusterConfig, MemberRecord, SyncSet};
use pgha_store::HistoryEntry;
use serde::{Deserialize, Serialize};

use super::Answer;
use crate::host::Host;
use crate::ops::{self, OpError};
use crate::status::ClusterStatus;

/// Answer of GET /cluster: what the store holds now, read in one snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterRecord {
    /// The lease holder.
    pub leader: Option<String>,
    /// Every member's last published record (members whose key expired are absent).
    pub members: BTreeMap<String, MemberRecord>,
    pub config: ClusterConfig,
    pub sync: SyncSet,
    pub history: Vec<HistoryEntry>,
}

pub async fn cluster(State(host): State<Arc<Host>>) -> Answer<ClusterRecord> {
    let snapshot = host.store.snapshot().await.map_err(OpError::from)?;
    let view = pgha_store::cluster_view(&snapshot).map_err(OpError::from)?;
    Ok(Json(ClusterRecord {
        leader: view.leader.as_ref().map(|l| l.holder.to_string()),
        members: view
            .members
            .into_iter()
            .map(|(n, r)| (n.to_string(), r))
            .collect(),
        config: view.config,
        sync: view.sync,
        history: pgha_store::history_entries(&snapshot),
    }))
}

/// Every member probed, with what the store and this host's agents know.
pub async fn status(State(host): State<Arc<Host>>) -> Json<ClusterStatus> {
    Json(crate::gather::of_host(&host).await)
}

pub async fn history(State(host): State<Arc<Host>>) -> Answer<Vec<HistoryEntry>> {
    let snapshot = host.store.snapshot().await.map_err(OpError::from)?;
    Ok(Json(pgha_store::history_entries(&snapshot)))
}

pub async fn config(State(host): State<Arc<Host>>) -> Answer<ClusterConfig> {
    Ok(Json(ops::view(host.store.as_ref()).await?.config))
}

/// Prometheus metrics: each member of this host as its agent last observed it, and the
/// proxy's listeners when this host runs the proxy.
pub async fn metrics(State(host): State<Arc<Host>>) -> Response {
    let mut out = host
        .proxy_metrics()
        .map(|m| m.render_prometheus())
        .unwrap_or_default();
    let members: Vec<(String, Option<Observed>)> = host
        .specs()
        .map(|s| {
            let o = host.report(&s.name).and_then(|r| r.observed);
            (s.name.to_string(), o.filter(Observed::fresh))
        })
        .collect();
    // A member without a fresh observation is neither up nor leading, and has no position.
    let answers = |o: &Observed| o.local.running && !o.local.unresponsive;
    let up: Vec<(&str, u64)> = members
        .iter()
        .map(|(n, o)| (n.as_str(), u64::from(o.as_ref().is_some_and(answers))))
        .collect();
    let leads: Vec<(&str, u64)> = members
        .iter()
        .map(|(n, o)| {
            let me = pgha_core::MemberName::new(n.as_str());
            (
                n.as_str(),
                u64::from(o.as_ref().is_some_and(|o| o.leads(&me))),
            )
        })
        .collect();
    let position: Vec<(&str, u64)> = members
        .iter()
        .filter_map(|(n, o)| Some((n.as_str(), o.as_ref().filter(|o| answers(o))?.local.lsn.0)))
        .collect();
    push_gauge(
        &mut out,
        "pgha_member_up",
        "Whether the member's PostgreSQL answers.",
        &up,
    );
    push_gauge(
        &mut out,
        "pgha_member_is_leader",
        "Whether the member holds the leader lease and runs as a writable primary.",
        &leads,
    );
    push_gauge(
        &mut out,
        "pgha_member_wal_position_bytes",
        "WAL position (current, or received on a standby).",
        &position,
    );
    prometheus(out)
}

/// Appends one Prometheus gauge family (HELP, TYPE, one sample per member).
fn push_gauge(out: &mut String, name: &str, help: &str, samples: &[(&str, u64)]) {
    out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
    for (member, value) in samples {
        out.push_str(&format!("{name}{{member=\"{member}\"}} {value}\n"));
    }
}

/// A response in the Prometheus text exposition format.
fn prometheus(text: String) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        text,
    )
        .into_response()
}
