//! How long an agent's store calls may take: half the safety margin, and never past the
//! instant a lease holder demotes by.

use std::time::Duration;

use pgha_core::Millis;

use super::{Agent, STORE_TIMEOUT};

impl Agent {
    /// The bound of one store call: half the safety margin (so a hung call cannot carry the
    /// loop past its demotion deadline by more than that), between 250 ms and 2 s.
    pub(crate) fn store_timeout(&self) -> Duration {
        let margin = self.member.config().safety_margin_ms;
        Duration::from_millis(margin / 2).clamp(Duration::from_millis(250), STORE_TIMEOUT)
    }

    /// The bound of a store call made in a step: [`Agent::store_timeout`], and no later than
    /// the instant a lease holder demotes by (a call still waiting then would hold back the
    /// step that demotes, and leave the fencing to the supervisor).
    pub(crate) fn store_limit(&self) -> Duration {
        // A renewal answered earlier in this step counts already; a demotion instant already
        // passed still bounds the call (to the least a call is given).
        let now = self.now();
        let demote_by = self
            .member
            .lease_deadline_after(&self.outcomes, now)
            .or(self.member.lease_deadline());
        call_limit(self.store_timeout(), now, demote_by)
    }
}

/// A call's bound: `timeout`, cut at `demote_by` while a lease is held (at least 50 ms, so a
/// call made right at the deadline still gets its answer from a store that answers at once).
fn call_limit(timeout: Duration, now: Millis, demote_by: Option<Millis>) -> Duration {
    let Some(at) = demote_by else {
        return timeout;
    };
    let left = Duration::from_millis(at.0.saturating_sub(now.0));
    timeout.min(left).max(Duration::from_millis(50))
}

#[cfg(test)]
mod call_limit_tests {
    use super::*;

    #[test]
    fn a_store_call_ends_by_the_instant_the_lease_holder_demotes() {
        let half_margin = Duration::from_millis(1250);
        assert_eq!(call_limit(half_margin, Millis(1000), None), half_margin);
        assert_eq!(
            call_limit(half_margin, Millis(1000), Some(Millis(9000))),
            half_margin
        );
        assert_eq!(
            call_limit(half_margin, Millis(8600), Some(Millis(9000))),
            Duration::from_millis(400),
            "a call made 400 ms before the demotion must not outlast it"
        );
        assert_eq!(
            call_limit(half_margin, Millis(9100), Some(Millis(9000))),
            Duration::from_millis(50)
        );
    }
}

#[cfg(test)]
mod store_limit_tests {
    use std::sync::Arc;

    use pgha_core::{
        ClusterConfig, ClusterView, DataDir, LeaderKey, LocalPg, Lsn, MemberName, Millis,
        Observation, Outcome, StoreView, SystemId, Timeline,
    };
    use pgha_store::{MemoryStore, TokioClock};

    use crate::agent::Agent;
    use crate::test_spec::spec;

    /// Found by review: once the lease holder's demotion instant had passed (the loop woke
    /// there, the store hung), its store calls were given the full half margin again, so the
    /// step that demotes started after the supervisor's fast stop.
    #[tokio::test]
    async fn a_store_call_made_past_the_demotion_instant_gets_the_least_bound() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(MemoryStore::new(Arc::new(TokioClock::new())));
        let (mut agent, _report) = Agent::new(spec(dir.path()), store, Default::default());
        let ttl = ClusterConfig::default().ttl();
        let primary = LocalPg {
            data: DataDir::Present {
                system_id: SystemId(1),
            },
            running: true,
            timeline: Timeline(1),
            lsn: Lsn(1000),
            replay_lsn: Lsn(1000),
            ..LocalPg::default()
        };
        let view = ClusterView {
            leader: Some(LeaderKey {
                holder: MemberName::new("n1"),
                revision: 7,
            }),
            ..ClusterView::default()
        };
        // The agent's clock moved on 20 s; the lease was taken 9 s ago for the default 10 s:
        // trusted until 1.5 s ago.
        agent.boot_origin = agent.boot_origin.saturating_sub(20_000);
        let now = agent.now();
        assert!(now.0 >= 20_000, "the machine booted less than 20 s ago");
        let taken = Millis(now.0 - 9_000);
        let acquired = Outcome::LeaderAcquired {
            requested_at: taken,
            revision: 7,
            ttl,
        };
        let cluster = StoreView::Up(Box::new(view));
        agent.member.step(&Observation::new(
            taken.plus(100),
            primary,
            cluster,
            vec![acquired],
        ));
        let until = agent.member.lease_deadline().expect("a lease");
        assert!(until < now, "trusted until {until:?}, now {now:?}");
        assert_eq!(agent.store_limit(), std::time::Duration::from_millis(50));
    }
}
