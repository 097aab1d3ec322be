//! Waiting for a change of the synchronous settings: `pgha config set synchronous_mode=on`
//! returns once the leader has it in force (commits wait for the standbys it names), not as
//! soon as the store holds it.

use pgha_core::sync::SyncInForce;
use pgha_core::SyncSet;

use std::time::{Duration, Instant};

use pgha_core::ClusterConfig;

use crate::api::read::ClusterRecord;
use crate::dynamic::split_assignment;
use crate::error::CliError;
use crate::handle::ClusterHandle;

/// The settings [`SyncInForce`] covers, as `pgha config set` names them.
const SYNC_KEYS: [&str; 4] = [
    "synchronous_mode",
    "synchronous_count",
    "synchronous_method",
    "synchronous_commit",
];

/// Whether `assignments` (`KEY=VALUE`) change a synchronous setting.
pub fn touches_sync(assignments: &[String]) -> bool {
    assignments
        .iter()
        .any(|a| split_assignment(a).is_ok_and(|(key, _)| SYNC_KEYS.contains(&key)))
}

/// Where a change of the synchronous settings stands, as the store shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncProgress {
    /// The leader has them in force: PostgreSQL counts the standbys of the published set.
    InForce { leader: String, set: SyncSet },
    /// The leader has not put them in force yet.
    Pending { leader: String },
    /// No member leads: the next leader starts with them.
    NoLeader,
    /// Maintenance mode: the leader leaves the synchronous standbys as they are until
    /// `pgha resume`.
    Paused,
    /// The leader's agent (or the one serving the API) is older than the report of the
    /// settings in force: it applies them as before, and nothing says when.
    Unreported { leader: String },
}

impl SyncProgress {
    /// Whether waiting longer can change the answer.
    pub fn settled(&self) -> bool {
        matches!(
            self,
            SyncProgress::InForce { .. } | SyncProgress::Paused | SyncProgress::Unreported { .. }
        )
    }
}

/// How far the leader in `cluster` is with `wanted`.
pub fn progress(cluster: &ClusterRecord, wanted: &SyncInForce) -> SyncProgress {
    if cluster.config.paused {
        return SyncProgress::Paused;
    }
    let Some(leader) = cluster.leader.clone() else {
        return SyncProgress::NoLeader;
    };
    let record = cluster.members.get(&leader);
    if record.is_some_and(|r| r.pgha_version.is_none()) {
        return SyncProgress::Unreported { leader };
    }
    let in_force = record.and_then(|r| r.sync_in_force);
    if in_force == Some(*wanted) {
        let set = cluster.sync.clone();
        return SyncProgress::InForce { leader, set };
    }
    SyncProgress::Pending { leader }
}

impl ClusterHandle {
    /// Waits until the leader has the synchronous settings of `config` in force: for twice the
    /// lease ttl, long enough for any leader that keeps its lease to loop several times. One
    /// that has not by then is an error naming the leader and what it last decided (the
    /// change is stored all the same, and applied when it can be).
    pub(crate) async fn wait_sync_in_force(
        &self,
        config: &ClusterConfig,
    ) -> anyhow::Result<(SyncProgress, Duration)> {
        let started = Instant::now();
        let patience = Duration::from_millis(config.ttl_ms.saturating_mul(2));
        let wanted = pgha_core::sync::SyncInForce::of(config);
        let progress = self
            .client
            .wait_sync_in_force(&wanted, patience)
            .await
            .map_err(|e| self.explain(e))?;
        if let SyncProgress::Pending { leader } = progress {
            let decision = self.status().await.ok().and_then(|status| {
                let member = status.members.into_iter().find(|m| m.name == leader)?;
                member.decision
            });
            return Err(CliError::SyncNotInForce {
                leader,
                after: patience.as_secs(),
                decision: decision.unwrap_or_else(|| "unknown".into()),
            }
            .into());
        }
        Ok((progress, started.elapsed()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgha_core::{ClusterConfig, MemberName, MemberRecord, SyncMode};

    fn cluster(leader: Option<&str>, in_force: Option<SyncInForce>) -> ClusterRecord {
        let mut members = std::collections::BTreeMap::new();
        for name in ["n1", "n2"] {
            let record = MemberRecord {
                sync_in_force: in_force.filter(|_| Some(name) == leader),
                pgha_version: Some(pgha_core::VERSION.into()),
                ..MemberRecord::default()
            };
            members.insert(name.to_string(), record);
        }
        ClusterRecord {
            leader: leader.map(str::to_string),
            members,
            config: ClusterConfig::default(),
            sync: SyncSet {
                leader: leader.map(MemberName::new),
                ..SyncSet::default()
            },
            history: Vec::new(),
        }
    }

    #[test]
    fn only_the_sync_keys_are_waited_for() {
        let given = |list: &[&str]| list.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        assert!(touches_sync(&given(&[
            "ttl_ms=9000",
            "synchronous_mode = on"
        ])));
        assert!(touches_sync(&given(&["synchronous_commit=remote_apply"])));
        assert!(!touches_sync(&given(&[
            "ttl_ms=9000",
            "postgresql.work_mem=8MB"
        ])));
        assert!(!touches_sync(&given(&["synchronous_mode"])));
    }

    #[test]
    fn the_leaders_record_says_when_the_settings_are_in_force() {
        let off = SyncInForce::of(&ClusterConfig::default());
        let on = SyncInForce {
            mode: SyncMode::On,
            ..off
        };
        // The store holds the change; the leader still has the old settings in force.
        assert_eq!(
            progress(&cluster(Some("n1"), Some(off)), &on),
            SyncProgress::Pending {
                leader: "n1".into()
            }
        );
        // A change under way publishes nothing in force.
        assert_eq!(
            progress(&cluster(Some("n1"), None), &on),
            SyncProgress::Pending {
                leader: "n1".into()
            }
        );
        let done = progress(&cluster(Some("n1"), Some(on)), &on);
        assert!(matches!(&done, SyncProgress::InForce { leader, .. } if leader == "n1"));
        assert!(done.settled());
        // A record of another member says nothing; no leader, no answer yet.
        assert_eq!(
            progress(&cluster(None, Some(on)), &on),
            SyncProgress::NoLeader
        );
        let mut paused = cluster(Some("n1"), Some(off));
        paused.config.paused = true;
        assert_eq!(progress(&paused, &on), SyncProgress::Paused);
    }

    /// A rolling upgrade: the leader's agent is older than `sync_in_force` and publishes no
    /// version; waiting for a report it never makes would fail after twice the ttl.
    #[test]
    fn a_leader_too_old_to_report_is_not_waited_for() {
        let on = SyncInForce {
            mode: SyncMode::On,
            ..SyncInForce::of(&ClusterConfig::default())
        };
        let mut older = cluster(Some("n1"), None);
        older.members.get_mut("n1").unwrap().pgha_version = None;
        let said = progress(&older, &on);
        assert_eq!(
            said,
            SyncProgress::Unreported {
                leader: "n1".into()
            }
        );
        assert!(said.settled());
        // the other members' versions say nothing about the leader
        let mut mixed = cluster(Some("n1"), None);
        mixed.members.get_mut("n2").unwrap().pgha_version = None;
        assert!(matches!(
            progress(&mixed, &on),
            SyncProgress::Pending { .. }
        ));
    }
}
