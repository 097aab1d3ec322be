//! Sets a leader published that may still land: a write whose answer was lost may land later,
//! until the `sync` key moves past the revision it was decided on (each write compares it), so
//! what PostgreSQL counts must be covered by each of them too.

use std::collections::BTreeSet;

use crate::types::MemberName;

use super::{SyncApplied, SyncSet};

/// The sets a leader sent in its term, each with the `sync` key's revision in the read it was
/// decided on: only those sent on the revision the last read showed may still land.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnseenSets {
    term: u64,
    /// (the key's revision the write compares, the set)
    sets: Vec<(u64, SyncSet)>,
}

impl UnseenSets {
    /// Notes `set`, sent in `term` after a read of the `sync` key at `revision` (which the write
    /// compares: it lands only while the key is still there).
    pub fn sent(slot: &mut Option<UnseenSets>, term: u64, revision: u64, set: &SyncSet) {
        let unseen = slot.get_or_insert_with(|| UnseenSets {
            term,
            sets: Vec::new(),
        });
        if unseen.term != term {
            unseen.term = term;
            unseen.sets.clear();
        }
        let entry = (revision, set.clone());
        if !unseen.sets.contains(&entry) {
            unseen.sets.push(entry);
        }
    }

    /// A leader adopting its term after its agent restarted does not know which sets its
    /// former agent sent in that term, and one sent on the revision it reads now may still
    /// land. Each of them names every member PostgreSQL counts (a smaller set is sent only once
    /// applied, a larger one applied only once a read showed it), so they are taken to be what
    /// PostgreSQL `counted` at adoption: until the key moves past `revision`, PostgreSQL counts
    /// no member beyond those.
    pub fn adopted(
        slot: &mut Option<UnseenSets>,
        term: u64,
        revision: u64,
        leader: &MemberName,
        counted: &SyncApplied,
    ) {
        let set = SyncSet {
            leader: Some(leader.clone()),
            members: counted.as_set(),
            count: counted.count,
            method: counted.method,
            mode: None,
        };
        Self::sent(slot, term, revision, &set);
    }

    /// Forgets the sets that can no longer land: those sent on an older revision of the key
    /// than the read at `revision` shows (the key moved since, and each write compares it), and
    /// all of them in another term (they were written only under this leader's key in theirs).
    pub fn settle(slot: &mut Option<UnseenSets>, term: u64, revision: u64) {
        let Some(unseen) = slot.as_mut() else {
            return;
        };
        unseen.sets.retain(|(sent_on, _)| *sent_on >= revision);
        if unseen.term != term || unseen.sets.is_empty() {
            *slot = None;
        }
    }

    /// The store's set as far as this leader can rely on it: the members `read` and every set
    /// that may still land name alike, with the highest count among them.
    pub fn narrow(slot: &Option<UnseenSets>, read: &SyncSet) -> SyncSet {
        let Some(unseen) = slot.as_ref() else {
            return read.clone();
        };
        let mut narrowed = read.clone();
        for (_, set) in &unseen.sets {
            let kept: BTreeSet<MemberName> = narrowed
                .members
                .intersection(&set.members)
                .cloned()
                .collect();
            narrowed.members = kept;
            narrowed.count = narrowed.count.max(set.count);
        }
        narrowed
    }
}
