//! The order of a change: additions reach the store before PostgreSQL, removals only after.

use crate::config::SyncMethod;
use crate::types::MemberName;

use super::{SyncApplied, SyncSet};

/// The next step towards the desired synchronous configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncStep {
    /// PostgreSQL and the store both match the desired configuration.
    Settled,
    /// Write the store's set first (a member leaves the set before PostgreSQL forgets it).
    Publish(SyncSet),
    /// Apply to PostgreSQL; publish once the next observation shows it applied.
    Apply(SyncApplied),
}

/// Orders the change so that the published set always covers every standby PostgreSQL may
/// count (failover takes the most advanced member of the set, which then holds every
/// acknowledged commit): additions reach the store before PostgreSQL, removals reach the store
/// only after PostgreSQL applied them. While a change is under way the published count is the
/// smallest and the method the stricter (quorum) of the two configurations.
pub fn next_step(
    leader: &MemberName,
    desired: &SyncApplied,
    applied: &SyncApplied,
    published: &SyncSet,
) -> SyncStep {
    let wanted = desired.as_set();
    let counted = applied.as_set();
    let covered = published.members.is_superset(&wanted) && published.members.is_superset(&counted);
    let counts = [
        (!published.members.is_empty()).then_some(published.count),
        (!counted.is_empty()).then_some(applied.count),
        (!wanted.is_empty()).then_some(desired.count),
    ];
    let lowest = counts.into_iter().flatten().min().unwrap_or(desired.count);
    let quorum = [
        (!published.members.is_empty(), published.method),
        (!counted.is_empty(), applied.method),
        (!wanted.is_empty(), desired.method),
    ]
    .into_iter()
    .any(|(used, method)| used && method == SyncMethod::Quorum);
    let changing = applied != desired;
    if !covered || (changing && !published.members.is_empty() && published.count > lowest) {
        let mut members = published.members.clone();
        members.extend(wanted.iter().cloned());
        members.extend(counted.iter().cloned());
        return SyncStep::Publish(SyncSet {
            leader: Some(leader.clone()),
            members,
            count: lowest,
            method: if quorum {
                SyncMethod::Quorum
            } else {
                desired.method
            },
            // the mode is the caller's to say
            mode: published.mode,
        });
    }
    if changing {
        return SyncStep::Apply(desired.clone());
    }
    let target = SyncSet {
        leader: Some(leader.clone()),
        members: wanted,
        count: desired.count,
        method: desired.method,
        mode: published.mode,
    };
    if target != *published {
        return SyncStep::Publish(target);
    }
    SyncStep::Settled
}
