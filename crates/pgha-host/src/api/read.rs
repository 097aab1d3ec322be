//! The API's read endpoints: the cluster as the store has it (`/cluster`), the probed status
//! (`/status`), the history, the dynamic settings and Prometheus metrics.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use pgha_agent::{MemberFacts, Observed};
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
    Ok(Json(ops::stored_config(host.store.as_ref()).await?))
}

/// Prometheus metrics: each member of this host as its agent last observed it, and the
/// proxy's listeners when this host runs the proxy.
pub async fn metrics(State(host): State<Arc<Host>>) -> Response {
    let mut out = host
        .proxy_metrics()
        .map(|m| m.render_prometheus())
        .unwrap_or_default();
    let members: Vec<MemberSample> = host
        .specs()
        .map(|s| {
            let report = host.report(&s.name);
            let observed = report
                .as_ref()
                .and_then(|r| r.observed.clone())
                .filter(Observed::fresh);
            MemberSample {
                name: s.name.to_string(),
                major: s.instance.bins.major,
                facts: report.map(|r| r.facts).unwrap_or_default(),
                observed,
            }
        })
        .collect();
    render_members(&mut out, &members);
    let promotions: Vec<_> = host
        .specs()
        .filter_map(|s| Some((s.name.to_string(), host.report(&s.name)?.promotion_times)))
        .collect();
    pgha_agent::promotion_times::render(&mut out, &promotions);
    if let Ok(view) = crate::ops::view(host.store.as_ref()).await {
        out.push_str(&format!(
            "# HELP pgha_cluster_paused Whether the cluster is in maintenance mode.\n\
             # TYPE pgha_cluster_paused gauge\npgha_cluster_paused {}\n",
            u8::from(view.config.paused)
        ));
    }
    prometheus(out)
}

/// One member of this host as the metrics see it.
struct MemberSample {
    name: String,
    /// The major version of its PostgreSQL programs.
    major: u32,
    /// Its agent's last observation, when fresh.
    observed: Option<Observed>,
    facts: MemberFacts,
}

/// Appends the members' gauge families. A member without a fresh observation is neither up
/// nor leading, and has no position (nor a version, pending restarts, a store contact).
fn render_members(out: &mut String, members: &[MemberSample]) {
    let answers = |o: &Observed| o.local.running && !o.local.unresponsive;
    let gauge = |f: &dyn Fn(&str, &Observed, &MemberFacts) -> Option<u64>| -> Vec<(String, u64)> {
        members
            .iter()
            .filter_map(|m| Some((m.name.clone(), f(&m.name, m.observed.as_ref()?, &m.facts)?)))
            .collect()
    };
    let flag = |f: &dyn Fn(&str, &Observed, &MemberFacts) -> bool| -> Vec<(String, u64)> {
        members
            .iter()
            .map(|m| {
                let set = m.observed.as_ref().is_some_and(|o| f(&m.name, o, &m.facts));
                (m.name.clone(), u64::from(set))
            })
            .collect()
    };
    let families: [Family; 15] = [
        (
            "pgha_member_up",
            "Whether the member's PostgreSQL answers.",
            flag(&|_, o, _| answers(o)),
        ),
        (
            "pgha_member_is_leader",
            "Whether the member holds the leader lease and runs as a writable primary.",
            flag(&|n, o, _| o.leads(&pgha_core::MemberName::new(n))),
        ),
        (
            "pgha_member_in_recovery",
            "Whether the member's PostgreSQL runs as a standby.",
            flag(&|_, o, _| answers(o) && o.local.in_recovery),
        ),
        (
            "pgha_member_streaming",
            "Whether the member is a standby streaming from the leader.",
            flag(&|_, o, _| o.streams()),
        ),
        (
            "pgha_member_synchronous",
            "Whether the member is in the synchronous set the leader published.",
            flag(&|_, o, _| o.synchronous),
        ),
        (
            "pgha_member_store_reachable",
            "Whether the member's agent read the store at its last step.",
            flag(&|_, o, _| o.store_reachable),
        ),
        (
            "pgha_member_store_last_contact_seconds",
            "How long ago the member's agent last read the store.",
            gauge(&|_, _, f| Some(f.store_contact?.elapsed().as_secs())),
        ),
        (
            "pgha_member_failsafe_active",
            "Whether failsafe keeps the roles while the store is out of reach (a leader kept on \
             its members' confirmation, or a member that promised not to take the lease).",
            flag(&|_, _, f| f.failsafe_active),
        ),
        (
            "pgha_member_pending_restart",
            "Whether a changed parameter waits for a restart of the member's PostgreSQL.",
            flag(&|_, o, f| {
                answers(o) && f.pending_restart.as_ref().is_some_and(|p| !p.is_empty())
            }),
        ),
        (
            "pgha_member_pending_restart_parameters",
            "How many changed parameters wait for a restart (pg_settings.pending_restart).",
            gauge(&|_, o, f| {
                let pending = f.pending_restart.as_ref().filter(|_| answers(o))?;
                Some(pending.len() as u64)
            }),
        ),
        (
            "pgha_member_server_version",
            "The running PostgreSQL's server_version_num, e.g. 150014.",
            gauge(&|_, o, f| answers(o).then_some(u64::from(f.server_version?))),
        ),
        (
            "pgha_member_wal_position_bytes",
            "WAL position (current, or received on a standby).",
            gauge(&|_, o, _| answers(o).then_some(o.local.lsn.0)),
        ),
        (
            "pgha_member_replay_lag_bytes",
            "How far a standby's replay is behind the leader's last published position.",
            gauge(&|_, o, _| {
                let leader = o.leader_lsn?;
                o.streams()
                    .then(|| leader.0.saturating_sub(o.local.replay_lsn.0))
            }),
        ),
        (
            "pgha_member_timeline",
            "The member's PostgreSQL timeline.",
            gauge(&|_, o, _| answers(o).then_some(u64::from(o.local.timeline.0))),
        ),
        (
            "pgha_member_observed_age_seconds",
            "How long ago the member's agent last observed PostgreSQL and the store.",
            gauge(&|_, o, _| Some(o.at.elapsed().as_secs())),
        ),
    ];
    for (name, help, samples) in &families {
        push_gauge(out, name, help, samples);
    }
    let majors: Vec<(String, u64)> = members
        .iter()
        .map(|m| (m.name.clone(), u64::from(m.major)))
        .collect();
    push_gauge(
        out,
        "pgha_member_postgresql_major",
        "The major version of the member's PostgreSQL programs.",
        &majors,
    );
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::time::Instant;

    fn observed(store_reachable: bool) -> Observed {
        Observed {
            at: Instant::now(),
            stale_after: Duration::from_secs(3),
            local: pgha_core::LocalPg {
                running: true,
                ..Default::default()
            },
            leader: None,
            leader_lsn: None,
            initialized: true,
            lease_until: None,
            synchronous: false,
            store_reachable,
        }
    }

    fn sample(out: &str, family: &str, member: &str) -> Option<String> {
        let prefix = format!("{family}{{member=\"{member}\"}} ");
        out.lines()
            .find_map(|l| l.strip_prefix(&prefix).map(str::to_string))
    }

    #[test]
    fn members_show_pending_restarts_failsafe_version_and_store_contact() {
        let contact = Instant::now() - Duration::from_secs(7);
        let members = [
            MemberSample {
                name: "n1".into(),
                major: 15,
                observed: Some(observed(false)),
                facts: MemberFacts {
                    server_version: Some(150014),
                    pending_restart: Some(vec!["max_connections".into(), "shared_buffers".into()]),
                    failsafe_active: true,
                    store_contact: Some(contact),
                },
            },
            MemberSample {
                name: "n2".into(),
                major: 15,
                observed: Some(observed(true)),
                facts: MemberFacts {
                    server_version: Some(150014),
                    pending_restart: Some(Vec::new()),
                    failsafe_active: false,
                    store_contact: Some(Instant::now()),
                },
            },
            // No fresh observation: no facts are claimed for it.
            MemberSample {
                name: "n3".into(),
                major: 15,
                observed: None,
                facts: MemberFacts {
                    server_version: Some(150014),
                    failsafe_active: true,
                    ..MemberFacts::default()
                },
            },
        ];
        let mut out = String::new();
        render_members(&mut out, &members);
        // Each family's samples of n1, n2 and n3, "-" where a member has none.
        for (family, want) in [
            ("pgha_member_pending_restart", "1 0 0"),
            ("pgha_member_pending_restart_parameters", "2 0 -"),
            ("pgha_member_failsafe_active", "1 0 0"),
            ("pgha_member_server_version", "150014 150014 -"),
            ("pgha_member_store_last_contact_seconds", "7 0 -"),
        ] {
            let got: Vec<String> = ["n1", "n2", "n3"]
                .iter()
                .map(|m| sample(&out, family, m).unwrap_or_else(|| "-".to_string()))
                .collect();
            assert_eq!(got.join(" "), want, "{family} in\n{out}");
        }
        assert!(
            out.contains("# TYPE pgha_member_server_version gauge"),
            "{out}"
        );
    }
}
