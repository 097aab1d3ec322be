//! Renewals sent and not yet answered, each an instant its lease may end by: an answer to an
//! earlier renewal cannot vouch for more.

use crate::types::Millis;

/// At most this many caps are kept (a long outage sends a renewal every half loop, none
/// answered); past it the two oldest merge into one that is no weaker than either.
const KEPT: usize = 32;

/// Unanswered renewals as (sent, the lease may end by), in sending order, caps rising: a cap
/// sent later that is no higher makes the earlier ones redundant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ExpiryCaps(Vec<(Millis, Millis)>);

impl ExpiryCaps {
    /// A renewal sent `at`: once it lands, the lease ends by `cap` at the latest.
    pub(crate) fn sent(&mut self, at: Millis, cap: Millis) {
        self.0.retain(|(_, kept)| *kept < cap);
        self.0.push((at, cap));
        if self.0.len() > KEPT {
            // The later send and the lower cap: it outlives both, and caps no less.
            let (_, oldest_cap) = self.0.remove(0);
            self.0[0].1 = self.0[0].1.min(oldest_cap);
        }
    }

    /// The longest a renewal sent and not answered may keep the lease (its ttl), ms.
    pub(crate) fn longest_span(&self) -> u64 {
        self.0
            .iter()
            .map(|(at, cap)| cap.since(*at))
            .max()
            .unwrap_or(0)
    }

    /// The earliest instant a renewal sent and not answered may end the lease by.
    pub(crate) fn lowest(&self) -> Option<Millis> {
        self.0.iter().map(|(_, cap)| *cap).min()
    }

    /// The answer to a renewal sent at `requested_at` came in: the renewals sent until then
    /// are settled by it; the lowest cap of those sent after it still bounds the lease.
    pub(crate) fn answered(&mut self, requested_at: Millis) -> Option<Millis> {
        self.0.retain(|(sent, _)| *sent > requested_at);
        self.lowest()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_keeps_the_caps_of_renewals_sent_after_it() {
        let mut caps = ExpiryCaps::default();
        caps.sent(Millis(500), Millis(10_500));
        caps.sent(Millis(4_500), Millis(14_500));
        caps.sent(Millis(5_000), Millis(11_000));
        assert_eq!(caps.answered(Millis(4_500)), Some(Millis(11_000)));
        assert_eq!(caps.answered(Millis(5_000)), None);
    }

    #[test]
    fn a_long_outage_keeps_few_caps_and_none_weaker() {
        let mut caps = ExpiryCaps::default();
        for i in 0..1_000u64 {
            caps.sent(Millis(i * 500), Millis(i * 500 + 10_000));
        }
        assert!(caps.0.len() <= KEPT, "{} caps kept", caps.0.len());
        // The renewal sent at 100_500 may have landed: nothing later than its cap.
        let cap = caps
            .answered(Millis(100_000))
            .expect("renewals sent after it");
        assert!(cap <= Millis(110_500), "{cap:?}");
    }
}
