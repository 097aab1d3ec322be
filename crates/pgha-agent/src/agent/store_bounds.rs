//! How long an agent's store calls may take: half the safety margin, and never past the
//! instant a lease holder demotes by.

use std::time::Duration;

use pgha_core::Millis;

use super::{Agent, STORE_TIMEOUT};

impl Agent {
    /// The bound of one store call: half the safety margin, between 250 ms and 2 s
    /// ([`pgha_core::ClusterConfig::store_call_bound_ms`]).
    pub(crate) fn store_timeout(&self) -> Duration {
        Duration::from_millis(self.member.config().store_call_bound_ms())
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
    /// renewal without a trusted lease) while nothing is held: no trusted lease, PostgreSQL
    /// known not to be writable by the last step (as the fencing judges it, whatever the
    /// maintenance mode, which disarms the supervisor while a leader writes), and no deadline
    /// with the supervisor. Such a call takes two round trips (a lease granted, then the key
    /// written; or the key read, then its lease kept alive), and with nothing held there is no
    /// demotion instant to keep. Under one
    /// trip's bound, a store slow enough for two trips to outlast it takes the key while no
    /// answer ever says so (seen: etcd 200 ms away each way, the key adopted again and again,
    /// never answered in time, no primary for as long as it lasted). Half of what such a
    /// lease would be trusted for (ttl less the safety margin), between
    /// [`Agent::store_timeout`] and [`STORE_TIMEOUT`]; while anything is held,
    /// [`Agent::store_limit`].
    pub(crate) fn lease_taking_limit(&self) -> Duration {
        let holding = self.member.holds_lease(self.now())
            || !self.known_not_writable
            || self.fencing.remaining_ms().is_some();
        if holding {
            return self.store_limit();
        }
        let config = self.member.config();
        lease_taking_bound(config.ttl_ms, config.margin_ms(), self.store_timeout())
    }
}

/// Half of what a lease of `ttl_ms` is trusted for (less `margin_ms`), between `timeout`
/// (one call's bound) and [`STORE_TIMEOUT`].
fn lease_taking_bound(ttl_ms: u64, margin_ms: u64, timeout: Duration) -> Duration {
    let trusted = Duration::from_millis(ttl_ms.saturating_sub(margin_ms) / 2);
    trusted.clamp(timeout, STORE_TIMEOUT.max(timeout))
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
    use pgha_pg::lease_file::boot_clock_ms;

    /// Found by review: once the lease holder's demotion instant had passed (the loop woke
    /// there, the store hung), its store calls were given the full half margin again, so the
    /// step that demotes started after the supervisor's fast stop.
    #[tokio::test]
    async fn a_store_call_made_past_the_demotion_instant_gets_the_least_bound() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(MemoryStore::new(Arc::new(TokioClock::new())));
        let (mut agent, _report) = Agent::new(spec(dir.path()), store, Default::default()).unwrap();
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
    /// call is given half of what the lease would be trusted for (at most 2 s); while
    /// PostgreSQL may be writable, the supervisor holds a deadline or a lease is trusted, the
    /// bound stays that of any call.
    #[tokio::test]
    async fn taking_the_leader_key_with_nothing_held_gets_two_round_trips_of_bound() {
        let half_margin = std::time::Duration::from_millis(1250);
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(MemoryStore::new(Arc::new(TokioClock::new())));
        let (mut agent, _report) = Agent::new(spec(dir.path()), store, Default::default()).unwrap();
        // The defaults: ttl 10 s, safety margin 2.5 s. A fresh agent knows nothing yet.
        assert_eq!(agent.store_timeout(), half_margin);
        assert_eq!(agent.lease_taking_limit(), half_margin);
        agent.known_not_writable = true;
        assert_eq!(
            agent.lease_taking_limit(),
            std::time::Duration::from_secs(2)
        );
        let armed = crate::fence::FenceState::LeaseUntil(boot_clock_ms() + 60_000);
        agent.fencing.update(armed).unwrap();
        assert_eq!(agent.lease_taking_limit(), half_margin);
        let disarmed = crate::fence::FenceState::NothingWritable;
        agent.fencing.update(disarmed).unwrap();
        assert_eq!(
            agent.lease_taking_limit(),
            std::time::Duration::from_secs(2)
        );
        // A trusted lease: the bound of any call, cut at the demotion instant.
        let now = agent.now();
        let acquired = Outcome::LeaderAcquired {
            requested_at: now,
            revision: 7,
            ttl: ClusterConfig::default().ttl(),
        };
        let view = ClusterView {
            leader: Some(LeaderKey {
                holder: MemberName::new("n1"),
                revision: 7,
            }),
            ..ClusterView::default()
        };
        let standby = LocalPg {
            data: DataDir::Present {
                system_id: SystemId(1),
            },
            running: true,
            in_recovery: true,
            timeline: Timeline(1),
            lsn: Lsn(1000),
            replay_lsn: Lsn(1000),
            ..LocalPg::default()
        };
        let cluster = StoreView::Up(Box::new(view));
        let obs = Observation::new(now, standby, cluster, vec![acquired]);
        agent.member.step(&obs);
        assert!(agent.member.holds_lease(agent.now()));
        assert_eq!(agent.lease_taking_limit(), agent.store_limit());
    }

    #[test]
    fn the_lease_taking_bound_is_half_the_trusted_time_within_one_call_and_2_s() {
        use super::lease_taking_bound;
        use std::time::Duration;
        let ms = Duration::from_millis;
        assert_eq!(lease_taking_bound(5_000, 2_000, ms(1_000)), ms(1_500));
        assert_eq!(lease_taking_bound(10_000, 2_500, ms(1_250)), ms(2_000));
        assert_eq!(lease_taking_bound(3_000, 2_000, ms(1_000)), ms(1_000));
        assert_eq!(lease_taking_bound(1_000, 2_000, ms(250)), ms(250));
    }
}
