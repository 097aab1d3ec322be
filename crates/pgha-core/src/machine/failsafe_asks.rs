//! Whom a leader cut off from the store asks to confirm it (failsafe): every member named by a
//! failsafe list it may have put in the store, not only by the one it last read.

use std::collections::BTreeSet;

use super::Member;
use crate::observe::{ClusterView, FailsafeList};
use crate::types::MemberName;

/// Members of the failsafe lists this leader sent in its term that no view has shown since: a
/// write whose answer never came (or came after the store went away) may have landed, and a
/// member it names runs for leader without waiting once the lease lapses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SentLists {
    term: u64,
    members: BTreeSet<MemberName>,
}

impl Member {
    /// Notes a list this leader is about to send in `term`.
    pub(crate) fn failsafe_sending(&mut self, term: u64, list: &FailsafeList) {
        let sent = self.failsafe_sent.get_or_insert_with(|| SentLists {
            term,
            members: BTreeSet::new(),
        });
        if sent.term != term {
            sent.term = term;
            sent.members.clear();
        }
        sent.members.extend(list.members.iter().cloned());
    }

    /// The store shows the list this leader wants: what it sent before has landed or was
    /// written over by it.
    pub(crate) fn failsafe_shown(&mut self) {
        self.failsafe_sent = None;
    }

    /// The members this leader must ask to confirm it while the store is unreachable: those of
    /// its own list in `view` (the last it read) and of every list it sent in its term since
    /// a view last showed its list. `None` when it holds no lease or has no list to go by;
    /// an empty set confirms nothing either.
    pub fn failsafe_confirmers(&self, view: &ClusterView) -> Option<BTreeSet<MemberName>> {
        let term = self.lease_revision()?;
        let read = view.failsafe.as_ref().filter(|l| &l.leader == self.name());
        let sent = self.failsafe_sent.as_ref().filter(|s| s.term == term);
        if read.is_none() && sent.is_none() {
            return None;
        }
        let read = read.into_iter().flat_map(|l| l.members.iter());
        let sent = sent.into_iter().flat_map(|s| s.members.iter());
        Some(
            read.chain(sent)
                .filter(|m| *m != self.name())
                .cloned()
                .collect(),
        )
    }
}
