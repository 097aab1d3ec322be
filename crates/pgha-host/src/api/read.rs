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
    let members: Vec<(String, u32, Option<Observed>)> = host
        .specs()
        .map(|s| {
            let o = host.report(&s.name).and_then(|r| r.observed);
            (
                s.name.to_string(),
                s.instance.bins.major,
                o.filter(Observed::fresh),
            )
        })
        .collect();
    // A member without a fresh observation is neither up nor leading, and has no position.
    let answers = |o: &Observed| o.local.running && !o.local.unresponsive;
    let gauge = |f: &dyn Fn(&str, &Observed) -> Option<u64>| -> Vec<(String, u64)> {
        members
            .iter()
            .filter_map(|(n, _, o)| Some((n.clone(), f(n, o.as_ref()?)?)))
            .collect()
    };
    let flag = |f: &dyn Fn(&str, &Observed) -> bool| -> Vec<(String, u64)> {
        members
            .iter()
            .map(|(n, _, o)| (n.clone(), u64::from(o.as_ref().is_some_and(|o| f(n, o)))))
            .collect()
    };
    let families: [Family; 10] = [
        (
            "pgha_member_up",
            "Whether the member's PostgreSQL answers.",
            flag(&|_, o| answers(o)),
        ),
        (
            "pgha_member_is_leader",
            "Whether the member holds the leader lease and runs as a writable primary.",
            flag(&|n, o| o.leads(&pgha_core::MemberName::new(n))),
        ),
        (
            "pgha_member_in_recovery",
            "Whether the member's PostgreSQL runs as a standby.",
            flag(&|_, o| answers(o) && o.local.in_recovery),
        ),
        (
            "pgha_member_streaming",
            "Whether the member is a standby streaming from the leader.",
            flag(&|_, o| o.streams()),
        ),
        (
            "pgha_member_synchronous",
            "Whether the member is in the synchronous set the leader published.",
            flag(&|_, o| o.synchronous),
        ),
        (
            "pgha_member_store_reachable",
            "Whether the member's agent read the store at its last step.",
            flag(&|_, o| o.store_reachable),
        ),
        (
            "pgha_member_wal_position_bytes",
            "WAL position (current, or received on a standby).",
            gauge(&|_, o| answers(o).then_some(o.local.lsn.0)),
        ),
        (
            "pgha_member_replay_lag_bytes",
            "How far a standby's replay is behind the leader's last published position.",
            gauge(&|_, o| {
                let leader = o.leader_lsn?;
                o.streams()
                    .then(|| leader.0.saturating_sub(o.local.replay_lsn.0))
            }),
        ),
        (
            "pgha_member_timeline",
            "The member's PostgreSQL timeline.",
            gauge(&|_, o| answers(o).then_some(u64::from(o.local.timeline.0))),
        ),
        (
            "pgha_member_observed_age_seconds",
            "How long ago the member's agent last observed PostgreSQL and the store.",
            gauge(&|_, o| Some(o.at.elapsed().as_secs())),
        ),
    ];
    for (name, help, samples) in &families {
        push_gauge(&mut out, name, help, samples);
    }
    let majors: Vec<(String, u64)> = members
        .iter()
        .map(|(n, major, _)| (n.clone(), u64::from(*major)))
        .collect();
    push_gauge(
        &mut out,
        "pgha_member_postgresql_major",
        "The major version of the member's PostgreSQL programs.",
        &majors,
    );
    if let Ok(view) = crate::ops::view(host.store.as_ref()).await {
        out.push_str(&format!(
            "# HELP pgha_cluster_paused Whether the cluster is in maintenance mode.\n\
             # TYPE pgha_cluster_paused gauge\npgha_cluster_paused {}\n",
            u8::from(view.config.paused)
        ));
    }
    prometheus(out)
}

/// One gauge family: its name, its help text, a sample per member.
type Family = (&'static str, &'static str, Vec<(String, u64)>);

/// Appends one Prometheus gauge family (HELP, TYPE, one sample per member).
fn push_gauge(out: &mut String, name: &str, help: &str, samples: &[(String, u64)]) {
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
