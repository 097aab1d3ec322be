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

    /// The bound of a call that takes the leader key (`AcquireLeader`) or adopts it (a
    /// renewal without a trusted lease) while nothing is held: no trusted lease, and no
    /// deadline with the supervisor (PostgreSQL known not to be writable). Such a call takes
    /// two round trips (a lease granted, then the key written; or the key read, then its lease
    /// kept alive), and with nothing held there is no demotion instant to keep. Under one
    /// trip's bound, a store slow enough for two trips to outlast it takes the key while no
    /// answer ever says so (seen: etcd 200 ms away each way, the key adopted again and again,
    /// never answered in time, no primary for as long as it lasted). Half of what such a
    /// lease would be trusted for (ttl less the safety margin), between
    /// [`Agent::store_timeout`] and [`STORE_TIMEOUT`]; while anything is held,
    /// [`Agent::store_limit`].
    pub(crate) fn lease_taking_limit(&self) -> Duration {
        let holding = self.member.holds_lease(self.now()) || self.fencing.remaining_ms().is_some();
        if holding {
            return self.store_limit();
        }
        let config = self.member.config();
        let trusted = config.ttl_ms.saturating_sub(config.safety_margin_ms);
        Duration::from_millis(trusted / 2).clamp(self.store_timeout(), STORE_TIMEOUT)
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

    /// Found by the fault test `a_failover_through_an_etcd_too_slow_for_two_round_trips_in_a_calls_bound`:
    /// taking or adopting the leader key takes two round trips, and bounded by one trip's
    /// bound its answer never came back from an etcd slow enough. With nothing held, such a
    /// call is given half of what the lease would be trusted for (at most 2 s); while the
    /// supervisor holds a deadline (PostgreSQL may write), the bound stays that of any call.
    #[tokio::test]
    async fn taking_the_leader_key_with_nothing_held_gets_two_round_trips_of_bound() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(MemoryStore::new(Arc::new(TokioClock::new())));
        let (mut agent, _report) = Agent::new(spec(dir.path()), store, Default::default());
        // The defaults: ttl 10 s, safety margin 2.5 s.
        assert_eq!(
            agent.store_timeout(),
            std::time::Duration::from_millis(1250)
        );
        assert_eq!(
            agent.lease_taking_limit(),
            std::time::Duration::from_secs(2)
        );
        let armed =
            crate::fence::FenceState::LeaseUntil(pgha_pg::lease_file::boot_clock_ms() + 60_000);
        agent.fencing.update(armed).unwrap();
        assert_eq!(agent.lease_taking_limit(), agent.store_limit());
        assert_eq!(
            agent.lease_taking_limit(),
            std::time::Duration::from_millis(1250)
        );
    }
}
