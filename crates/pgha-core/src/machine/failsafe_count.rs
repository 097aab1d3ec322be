//! What a failsafe confirmation does to the lease: trust from the round's ask for the shortest
//! promise, or why it counts for nothing (said in the agent's log).

use std::fmt;

use super::Member;
use crate::types::Millis;

/// Why a failsafe confirmation did not extend the lease's trust.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailsafeUncounted {
    /// No lease was held when it came (given up, or refused, meanwhile).
    NoLease,
    /// The lease is trusted from a later instant already (a renewal sent after the round's
    /// ask and answered).
    TrustedSince { renewed_at: Millis },
    /// A failsafe list went out after the round's ask, naming members it did not ask: they may
    /// run for leader, promises or not.
    ListSentSince { sent_at: Millis },
}

impl fmt::Display for FailsafeUncounted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailsafeUncounted::NoLease => write!(f, "no lease is held any more"),
            FailsafeUncounted::TrustedSince { renewed_at } => write!(
                f,
                "the lease is trusted from a later renewal already (sent at {} ms)",
                renewed_at.0
            ),
            FailsafeUncounted::ListSentSince { sent_at } => write!(
                f,
                "a failsafe list naming members the round did not ask went out since (at {} ms)",
                sent_at.0
            ),
        }
    }
}

impl Member {
    /// Every member asked at `requested_at` promised not to take the lease for `promised_ms`
    /// at least: nobody can before `requested_at + promised_ms`, so the lease is trusted like
    /// one renewed at that instant. Unless a failsafe list went out since the ask: it may name
    /// members the round did not ask.
    pub(super) fn count_failsafe_confirmation(&mut self, requested_at: Millis, promised_ms: u64) {
        let uncounted = match self.lease {
            None => Some(FailsafeUncounted::NoLease),
            Some(l) if l.renewed_at >= requested_at => Some(FailsafeUncounted::TrustedSince {
                renewed_at: l.renewed_at,
            }),
            _ => self
                .failsafe_list_sent_at
                .filter(|sent| *sent >= requested_at)
                .map(|sent_at| FailsafeUncounted::ListSentSince { sent_at }),
        };
        if let Some(why) = uncounted {
            self.failsafe_uncounted = Some((requested_at, why));
            return;
        }
        let margin = self.config.margin_for(promised_ms);
        if let Some(lease) = self.lease.as_mut() {
            lease.renewed_at = requested_at;
            lease.expires_at = requested_at.plus(promised_ms);
            lease.trusted_until = requested_at.plus(promised_ms.saturating_sub(margin));
        }
    }

    /// The failsafe confirmation the last step did not count (asked at, why), if any.
    pub fn failsafe_uncounted(&self) -> Option<(Millis, FailsafeUncounted)> {
        self.failsafe_uncounted
    }
}
