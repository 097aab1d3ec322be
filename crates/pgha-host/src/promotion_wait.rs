//! What ends the wait for a requested promotion, read from one `/cluster` answer: the awaited
//! member leading and writable, or the request's refusal in the history.

use std::fmt;

use pgha_core::EventKind;

use crate::api::read::ClusterRecord;

/// Whom a promotion request is waited for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Awaited {
    /// The member the request named.
    Member(String),
    /// A switchover that named none: whichever member leads after the leader it was made to.
    /// That leader picks the best standby when it hands over, which need not be the one the
    /// API named as best when it accepted the request (positions move in between).
    SuccessorOf(String),
}

impl fmt::Display for Awaited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Awaited::Member(name) => write!(f, "{name} is not the primary"),
            Awaited::SuccessorOf(leader) => write!(f, "no member took over from {leader}"),
        }
    }
}

/// How the wait ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Settled {
    /// This member holds the lease and its record says it runs writable.
    Promoted(String),
    /// The leader (or, without one, the target) refused the request after the API accepted
    /// it: the reason its history entry gives.
    Refused(String),
}

/// Whether `cluster` ends the wait for `awaited`, looking for refusals only in the history
/// entries after the first `since` (those were there before the request).
pub fn settled(cluster: &ClusterRecord, awaited: &Awaited, since: usize) -> Option<Settled> {
    if let Some(leader) = cluster.leader.as_deref() {
        let writable = cluster
            .members
            .get(leader)
            .is_some_and(|r| r.running && !r.in_recovery);
        let awaited_leads = match awaited {
            Awaited::Member(target) => leader == target,
            Awaited::SuccessorOf(old) => leader != old,
        };
        if writable && awaited_leads {
            return Some(Settled::Promoted(leader.to_string()));
        }
    }
    // A refusal names the target the request named: none for a switchover without one.
    let named = match awaited {
        Awaited::Member(target) => Some(target.as_str()),
        Awaited::SuccessorOf(_) => None,
    };
    let later = cluster.history.get(since..).unwrap_or_default();
    later
        .iter()
        .find(|e| {
            e.event.kind == EventKind::RequestRefused
                && e.event
                    .to
                    .as_ref()
                    .is_none_or(|to| Some(to.as_str()) == named)
        })
        .map(|refused| Settled::Refused(refused.event.reason.clone()))
}

#[cfg(test)]
#[path = "promotion_wait_tests.rs"]
mod tests;
