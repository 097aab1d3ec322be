//! A member's name is one agent's: a record under it that names other addresses is another's.

use super::{Member, Plan};
use crate::action::StopMode;
use crate::observe::{ClusterView, Observation};
use crate::reason::Reason;

impl Member {
    /// Whether `view` holds a record under this member's name that names other addresses than
    /// this member's: another agent's (see `name_taken`). Whoever acts on the store under this
    /// name (leaving the cluster too) must not then.
    pub fn name_used_elsewhere(&self, view: &ClusterView) -> bool {
        let ours = &self.settings.addresses;
        view.members.get(self.name()).is_some_and(|record| {
            let theirs = &record.addresses;
            !ours.is_empty() && !theirs.is_empty() && theirs != ours
        })
    }

    /// The leader key and the member records name members by name, so an agent that runs
    /// under the name of another (a configuration copied to a new host without changing
    /// `member.name`) would renew that member's lease as its own and overwrite its record.
    /// When the store's record under this name names other addresses than this member's, it
    /// is another agent's: this member takes no lease (it forgets any it trusted), publishes
    /// nothing, runs for nothing, and demotes what it may have made writable, until that
    /// record expires. Records or members without addresses (older agents, tests) say nothing.
    pub(super) fn name_taken(
        &mut self,
        obs: &Observation,
        view: &ClusterView,
        plan: &mut Plan,
    ) -> Option<Reason> {
        if !self.name_used_elsewhere(view) {
            return None;
        }
        let theirs = &view.members.get(self.name())?.addresses;
        let reason = Reason::NameTaken {
            theirs: show(theirs),
            ours: show(&self.settings.addresses),
        };
        self.lease = None;
        self.adopting_since = None;
        self.demote_if_writable(&obs.local, StopMode::Immediate, plan);
        Some(reason)
    }
}

/// `api 10.0.0.1:8008, postgres 10.0.0.1:5432`.
fn show(addresses: &std::collections::BTreeMap<String, String>) -> String {
    addresses
        .iter()
        .map(|(kind, address)| format!("{kind} {address}"))
        .collect::<Vec<_>>()
        .join(", ")
}
