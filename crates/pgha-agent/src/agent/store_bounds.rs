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
        // A renewal answered earlier in this step counts already.
        let now = self.now();
        let demote_by = self.member.lease_deadline_after(&self.outcomes, now);
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
