//! The first members of a set that named nobody but its leader: the standbys that may hold
//! what was acknowledged are published along with them.

use crate::observe::MemberRecord;
use crate::types::MemberName;
use std::collections::BTreeMap;

use super::SyncSet;

/// Whether `set` names no member but (perhaps) its leader.
fn names_no_standby(set: &SyncSet) -> bool {
    set.members.iter().all(|m| Some(m) == set.leader.as_ref())
}

/// The set to publish instead of `set` when `published` names no member but its leader and
/// `set` adds some. With none named, in mode `on` every standby was eligible and the most
/// advanced won (the last member to leave held what it had confirmed), in `strict` only the
/// set's leader, and the mode may have been switched live since: a new set naming only the
/// new members would make ineligible a standby that holds acknowledged commits the new ones
/// lack. Every standby not tagged `nofailover`, running or not (a holder may be restarting),
/// is published along with them, with a count of 1 (an election then compares every record:
/// the last member to leave alone may hold those commits); those PostgreSQL does not count
/// leave, and the count rises, by the ordinary wait, once members that stay hold the
/// primary's position ([`super::removal_ready`]).
pub fn with_possible_holders(
    set: SyncSet,
    published: &SyncSet,
    members: &BTreeMap<MemberName, MemberRecord>,
) -> SyncSet {
    if !names_no_standby(published) || names_no_standby(&set) {
        return set;
    }
    let mut widened = set;
    let holders = members
        .iter()
        .filter(|(name, record)| {
            record.in_recovery && !record.tags.nofailover && Some(*name) != widened.leader.as_ref()
        })
        .map(|(name, _)| name.clone());
    widened.members.extend(holders.collect::<Vec<_>>());
    widened.count = widened.count.min(1);
    widened
}
