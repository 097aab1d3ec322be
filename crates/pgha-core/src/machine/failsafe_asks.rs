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
    /// Adopted after an agent restart: lists its former agent sent on this revision of the key
    /// may still land, naming members nobody reads of any more, so no confirmation counts
    /// until a read shows the key moved.
    unknown_on: Option<u64>,
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
            if sent.unknown_on.is_some_and(|r| r < view.failsafe_revision) {
                sent.unknown_on = None;
            }
            if sent.term != term || (sent.lists.is_empty() && sent.unknown_on.is_none()) {
                self.failsafe_sent = None;
            }
        }
        if self.failsafe_sent.is_none() && view.failsafe.as_ref() == Some(list) {
            return false;
        }
        let sent = self.failsafe_sent.get_or_insert_with(|| SentLists {
            term,
            lists: Vec::new(),
            unknown_on: None,
        });
        let entry = (view.failsafe_revision, list.clone());
        if !sent.lists.contains(&entry) {
            sent.lists.push(entry);
        }
        true
    }

    /// Adopting `term` after its agent restarted, this member does not know which lists its
    /// former agent sent in it: one sent on the revision `view` shows may still land and name a
    /// member whose record has expired since. Until a read shows the key moved (the wanted list
    /// is sent meanwhile), it has no list to go by.
    pub(crate) fn failsafe_adopted(&mut self, term: u64, view: &ClusterView) {
        let sent = self.failsafe_sent.get_or_insert_with(|| SentLists {
            term,
            lists: Vec::new(),
            unknown_on: None,
        });
        if sent.term != term {
            sent.term = term;
            sent.lists.clear();
        }
        sent.unknown_on = Some(view.failsafe_revision);
    }

    /// The members this leader must ask to confirm it while the store is unreachable: those of
    /// its own list in `view` (the last it read, written in its term) and of every list it sent
    /// in its term that may still land (sent on the revision of the key `view` shows). `None`
    /// when it holds no lease or has no list to go by (none of this term read yet; adopted, its
    /// former agent's lists unknown); an empty set confirms nothing either.
    pub fn failsafe_confirmers(&self, view: &ClusterView) -> Option<BTreeSet<MemberName>> {
        let term = self.lease_revision()?;
        let unknown = self.failsafe_sent.as_ref().is_some_and(|s| {
            s.term == term && s.unknown_on.is_some_and(|r| r >= view.failsafe_revision)
        });
        if unknown {
            return None;
        }
        // Only a list written in this term counts as read (its key's revision is past the
        // term's): one left by an earlier leader, or by this member in an earlier term, is not
        // the list a member outside it goes by while this leader may be writing.
        let read = view
            .failsafe
            .as_ref()
            .filter(|l| &l.leader == self.name() && view.failsafe_revision > term);
        let sent: Vec<&FailsafeList> = self
            .failsafe_sent
            .iter()
            .filter(|s| s.term == term)
            .flat_map(|s| s.lists.iter())
            .filter(|(sent_on, _)| *sent_on >= view.failsafe_revision)
            .map(|(_, list)| list)
            .collect();
        // Until a read shows a list of this term, nobody can tell which list a member outside
        // it goes by (the store may hold an earlier leader's, naming none of those asked):
        // no confirmation counts.
        let read = read?;
        // A list naming nobody but this leader holds nobody outside it back (they run as soon
        // as the lease lapses): while the store may hold one, no confirmation makes this
        // leader the only writer (found by the simulation, seed 553383: a list without the
        // member whose record had expired landed, and that member's confirmations kept the
        // leader writing while the third member was free to run).
        if std::iter::once(read)
            .chain(sent.iter().copied())
            .any(|l| l.confirmers().next().is_none())
        {
            return None;
        }
        let read = std::iter::once(read).flat_map(|l| l.members.iter());
        let sent = sent.into_iter().flat_map(|l| l.members.iter());
        Some(
            read.chain(sent)
                .filter(|m| *m != self.name())
                .cloned()
                .collect(),
        )
    }
}
