//! Whom a leader cut off from the store asks to confirm it (failsafe): every member named by a
//! failsafe list it may have put in the store, not only by the one it last read.

use std::collections::BTreeSet;

use super::Member;
use crate::observe::{ClusterView, FailsafeList};
use crate::types::MemberName;

/// Members of the failsafe lists this leader sent in its term that no read has shown landed
/// since: a write whose answer never came (or came after the store went away) may still land,
/// and a member it names runs for leader without waiting once the lease lapses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SentLists {
    term: u64,
    /// The `failsafe` key's revision in the read the last list was sent after.
    sent_after: u64,
    last: FailsafeList,
    members: BTreeSet<MemberName>,
}

impl Member {
    /// Sends `list` in `term` unless the store shows it and nothing sent may still land: what
    /// was sent is forgotten once a read shows the last list sent written after it was sent
    /// (writes land in the order they were sent), and until then the wanted list is sent again.
    pub(crate) fn failsafe_list_to_send(
        &mut self,
        term: u64,
        view: &ClusterView,
        list: &FailsafeList,
    ) -> bool {
        let landed = self.failsafe_sent.as_ref().is_some_and(|s| {
            s.term != term
                || (view.failsafe_revision > s.sent_after
                    && view.failsafe.as_ref() == Some(&s.last))
        });
        if landed {
            self.failsafe_sent = None;
        }
        if self.failsafe_sent.is_none() && view.failsafe.as_ref() == Some(list) {
            return false;
        }
        let sent = self.failsafe_sent.get_or_insert_with(|| SentLists {
            term,
            sent_after: 0,
            last: list.clone(),
            members: BTreeSet::new(),
        });
        sent.sent_after = view.failsafe_revision;
        sent.last = list.clone();
        sent.members.extend(list.members.iter().cloned());
        true
    }

    /// The members this leader must ask to confirm it while the store is unreachable: those of
    /// its own list in `view` (the last it read) and of every list it sent in its term that no
    /// read has shown landed since. `None` when it holds no lease or has no list to go by; an
    /// empty set confirms nothing either.
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
