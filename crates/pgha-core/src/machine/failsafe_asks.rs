//! Whom a leader cut off from the store asks to confirm it (failsafe): every member named by a
//! failsafe list it may have put in the store, not only by the one it last read.

use std::collections::BTreeSet;

use super::Member;
use crate::observe::{ClusterView, FailsafeList};
use crate::types::MemberName;

/// The failsafe lists this leader sent in its term, each with the `failsafe` key's revision in
/// the read it was decided on: a write whose answer never came (or came after the store went
/// away) may still land while the key is at that revision (each write compares it), and a
/// member it names runs for leader without waiting once the lease lapses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SentLists {
    term: u64,
    /// (the key's revision the write compares, the list)
    lists: Vec<(u64, FailsafeList)>,
}

impl Member {
    /// Sends `list` in `term` unless the store shows it and nothing sent may still land: a list
    /// sent on an older revision of the key than `view` shows can no longer land, and until
    /// the key moves the wanted list is sent again.
    pub(crate) fn failsafe_list_to_send(
        &mut self,
        term: u64,
        view: &ClusterView,
        list: &FailsafeList,
    ) -> bool {
        if let Some(sent) = self.failsafe_sent.as_mut() {
            sent.lists
                .retain(|(sent_on, _)| *sent_on >= view.failsafe_revision);
            if sent.term != term || sent.lists.is_empty() {
                self.failsafe_sent = None;
            }
        }
        if self.failsafe_sent.is_none() && view.failsafe.as_ref() == Some(list) {
            return false;
        }
        let sent = self.failsafe_sent.get_or_insert_with(|| SentLists {
            term,
            lists: Vec::new(),
        });
        let entry = (view.failsafe_revision, list.clone());
        if !sent.lists.contains(&entry) {
            sent.lists.push(entry);
        }
        true
    }

    /// The members this leader must ask to confirm it while the store is unreachable: those of
    /// its own list in `view` (the last it read) and of every list it sent in its term that may
    /// still land (sent on the revision of the key `view` shows). `None` when it holds no lease or has no list to go by; an
    /// empty set confirms nothing either.
    pub fn failsafe_confirmers(&self, view: &ClusterView) -> Option<BTreeSet<MemberName>> {
        let term = self.lease_revision()?;
        let read = view.failsafe.as_ref().filter(|l| &l.leader == self.name());
        let sent: Vec<&FailsafeList> = self
            .failsafe_sent
            .iter()
            .filter(|s| s.term == term)
            .flat_map(|s| s.lists.iter())
            .filter(|(sent_on, _)| *sent_on >= view.failsafe_revision)
            .map(|(_, list)| list)
            .collect();
        if read.is_none() && sent.is_empty() {
            return None;
        }
        let read = read.into_iter().flat_map(|l| l.members.iter());
        let sent = sent.into_iter().flat_map(|l| l.members.iter());
        Some(
            read.chain(sent)
                .filter(|m| *m != self.name())
                .cloned()
                .collect(),
        )
    }
}
