//! Sets a leader published that no read has shown landed yet: a write whose answer was lost may
//! still land, so what PostgreSQL counts must be covered by each of them too.

use std::collections::BTreeSet;

use crate::types::MemberName;

use super::{SyncApplied, SyncSet};

/// The sets a leader sent in its term since a read last showed the one it sent last.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnseenSets {
    term: u64,
    /// The `sync` key's revision in the read the last set was sent after.
    sent_after: u64,
    sets: Vec<SyncSet>,
}

impl UnseenSets {
    /// Notes `set`, sent in `term` after a read of the `sync` key at `revision`.
    pub fn sent(slot: &mut Option<UnseenSets>, term: u64, revision: u64, set: &SyncSet) {
        let unseen = slot.get_or_insert_with(|| UnseenSets {
            term,
            sent_after: revision,
            sets: Vec::new(),
        });
        if unseen.term != term {
            unseen.term = term;
            unseen.sets.clear();
        }
        unseen.sent_after = revision;
        if unseen.sets.last() != Some(set) {
            unseen.sets.push(set.clone());
        }
    }

    /// A leader adopting its term after its agent restarted does not know which sets its
    /// former agent sent in that term, and one may still land. Each of them names every member
    /// PostgreSQL counts (a smaller set is sent only once applied, a larger one applied only
    /// once a read showed it), so they are taken to be what PostgreSQL `counted` at adoption:
    /// until a read shows a set sent since, PostgreSQL counts no member beyond those.
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
        };
        Self::sent(slot, term, revision, &set);
    }

    /// Forgets them once a read shows the last one written after it was sent (writes land in
    /// the order they were sent: the earlier ones have landed or never will), or in another
    /// term (they were written only under this leader's key in theirs).
    pub fn settle(slot: &mut Option<UnseenSets>, term: u64, read: &SyncSet, revision: u64) {
        let Some(unseen) = slot.as_ref() else {
            return;
        };
        let landed = revision > unseen.sent_after && unseen.sets.last() == Some(read);
        if landed || unseen.term != term {
            *slot = None;
        }
    }

    /// The store's set as far as this leader can rely on it: the members `read` and every
    /// unseen set name alike, with the highest count among them.
    pub fn narrow(slot: &Option<UnseenSets>, read: &SyncSet) -> SyncSet {
        let Some(unseen) = slot.as_ref() else {
            return read.clone();
        };
        let mut narrowed = read.clone();
        for set in &unseen.sets {
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
