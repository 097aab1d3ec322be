//! What an agent tells the rest of the process: its last decision, job and failure, and what
//! its last step observed (the REST read endpoints answer from it).

use std::time::Duration;

use pgha_core::{JobKind, MemberName};
use tokio::time::Instant;

/// What the agent last decided, for status displays and the API.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentReport {
    pub member: String,
    /// The reason of the last decision (none before the first step).
    pub reason: Option<pgha_core::Reason>,
    /// The long-running job in flight, if any.
    pub job: Option<JobKind>,
    /// The last job's failure, until a job succeeds.
    pub last_error: Option<FailedJob>,
    /// What the last step saw (the read endpoints answer from it, never opening a
    /// PostgreSQL connection of their own).
    pub observed: Option<Observed>,
    /// What the metrics add to it (as of the same step).
    pub facts: MemberFacts,
    /// How long this member's promotions took, since its agent started.
    pub promotion_times: crate::promotion_times::PromotionTimes,
}

/// Facts about a member the metrics report beside the observation (Patroni's parity).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemberFacts {
    /// `server_version_num` of the running PostgreSQL, e.g. 150014.
    pub server_version: Option<u32>,
    /// Parameters whose changed value waits for a restart (`pg_settings.pending_restart`);
    /// `None` while PostgreSQL does not answer.
    pub pending_restart: Option<Vec<String>>,
    /// The store is out of reach and failsafe keeps the roles: this leader holds its primary
    /// on every listed member's confirmation, or this member promised not to take the lease.
    pub failsafe_active: bool,
    /// When the agent last read the store (`None`: not since it started).
    pub store_contact: Option<Instant>,
}

/// What an agent's last step observed, and when.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub at: Instant,
    /// Older than this, it says nothing about now (the agent is stuck or gone).
    pub stale_after: Duration,
    pub local: pgha_core::LocalPg,
    /// The store's view at that step (none when the store could not be read).
    pub leader: Option<MemberName>,
    /// The leader's position as its record in the store gave it.
    pub leader_lsn: Option<pgha_core::Lsn>,
    pub initialized: bool,
    /// Until when this member may act as the leader (the core's lease trust), if it leads.
    pub lease_until: Option<Instant>,
    /// This member is in the synchronous set the leader published (its commits wait for it).
    pub synchronous: bool,
    /// The store answered this step (otherwise `leader` and the rest are from nothing).
    pub store_reachable: bool,
}

impl Observed {
    /// Whether it is recent enough to answer for the present.
    pub fn fresh(&self) -> bool {
        self.at.elapsed() <= self.stale_after
    }

    /// A writable primary holding the lease now: what `/primary` and routing require (I2).
    /// With the store out of reach its view says nothing, and the member's own trust in its
    /// lease (renewed, or kept by failsafe) is what it knows: a leader bridging a store
    /// outage still answers as the leader.
    pub fn leads(&self, me: &MemberName) -> bool {
        let named = !self.store_reachable || (self.initialized && self.leader.as_ref() == Some(me));
        self.fresh()
            && named
            && self.lease_until.is_some_and(|until| Instant::now() < until)
            && self.local.running
            && !self.local.unresponsive
            && !self.local.in_recovery
    }

    /// A standby streaming from the leader now.
    pub fn streams(&self) -> bool {
        self.fresh() && self.local.running && self.local.in_recovery && self.local.streaming
    }
}

/// A job that failed, and why (as the job reported it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedJob {
    pub kind: JobKind,
    pub error: String,
}

impl std::fmt::Display for FailedJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} failed: {}", self.kind, self.error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn primary_trusting_its_lease(store_reachable: bool, leader: Option<&str>) -> Observed {
        Observed {
            at: Instant::now(),
            stale_after: Duration::from_secs(3),
            local: pgha_core::LocalPg {
                running: true,
                ..pgha_core::LocalPg::default()
            },
            leader: leader.map(MemberName::new),
            leader_lsn: None,
            initialized: store_reachable,
            lease_until: Some(Instant::now() + Duration::from_secs(2)),
            synchronous: false,
            store_reachable,
        }
    }

    /// The store's view names the leader when there is one; with the store out of reach the
    /// member's own lease trust answers.
    #[test]
    fn a_leader_bridging_a_store_outage_still_leads() {
        let n1 = MemberName::new("n1");
        assert!(primary_trusting_its_lease(true, Some("n1")).leads(&n1));
        assert!(!primary_trusting_its_lease(true, Some("n2")).leads(&n1));
        assert!(!primary_trusting_its_lease(true, None).leads(&n1));
        assert!(primary_trusting_its_lease(false, None).leads(&n1));
        let lapsed = Observed {
            lease_until: None,
            ..primary_trusting_its_lease(false, None)
        };
        assert!(!lapsed.leads(&n1), "no lease, no leader");
    }
}
