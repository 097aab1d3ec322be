//! The in-memory store's state: durable keys, leases with their expiry, and the checks of
//! a guarded write.

use crate::error::StoreError;
use crate::history_id::HistoryId;
use crate::model::{Guard, Key, Revision, Versioned};
use crate::persist::{Durable, DurableLeader};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Clone, Debug)]
pub(super) struct LeaderEntry {
    pub(super) holder: String,
    pub(super) revision: Revision,
    pub(super) ttl: Duration,
    pub(super) expires_at: Duration,
}

#[derive(Clone, Debug)]
pub(super) struct MemberEntry {
    pub(super) value: Versioned<String>,
    pub(super) expires_at: Duration,
}

#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) durable: Durable,
    pub(super) leader: Option<LeaderEntry>,
    pub(super) members: BTreeMap<String, MemberEntry>,
    /// Where each entry appended by this process sits in `durable.history` (a retried append
    /// finds its entry here; the writer that retries lives no longer than this process).
    pub(super) history_ids: BTreeMap<HistoryId, usize>,
    pub(super) reachable: bool,
    /// Test hook: calls take effect but answer [`StoreError::Unavailable`].
    pub(super) answers_lost: bool,
}

impl State {
    /// Sets the leader key, and what the file will say of it.
    pub(super) fn set_leader(&mut self, leader: Option<LeaderEntry>) {
        self.durable.leader = leader.as_ref().map(|l| DurableLeader {
            holder: l.holder.clone(),
            revision: l.revision,
            ttl_ms: u64::try_from(l.ttl.as_millis()).unwrap_or(u64::MAX),
        });
        self.leader = leader;
    }

    /// The leader key written down, held again for its whole ttl from `now`.
    pub(super) fn restore_leader(&mut self, now: Duration) {
        self.leader = self.durable.leader.as_ref().map(|l| LeaderEntry {
            holder: l.holder.clone(),
            revision: l.revision,
            ttl: Duration::from_millis(l.ttl_ms),
            expires_at: now + Duration::from_millis(l.ttl_ms),
        });
    }

    pub(super) fn bump(&mut self) -> Revision {
        self.durable.revision += 1;
        self.durable.revision
    }

    /// Removes expired leases; returns whether anything changed.
    pub(super) fn expire(&mut self, now: Duration) -> bool {
        let mut changed = false;
        if self.leader.as_ref().is_some_and(|l| l.expires_at <= now) {
            self.set_leader(None);
            changed = true;
        }
        let before = self.members.len();
        self.members.retain(|_, m| m.expires_at > now);
        changed |= self.members.len() != before;
        if changed {
            self.bump();
        }
        changed
    }

    pub(super) fn next_expiry(&self) -> Option<Duration> {
        let leader = self.leader.as_ref().map(|l| l.expires_at);
        let members = self.members.values().map(|m| m.expires_at).min();
        leader.into_iter().chain(members).min()
    }

    fn leads(&self, holder: &str, revision: Revision) -> bool {
        self.leader
            .as_ref()
            .is_some_and(|l| l.holder == holder && l.revision == revision)
    }

    pub(super) fn check(&self, key: Key, guard: &Guard) -> Result<(), StoreError> {
        let current = self.durable.keys.get(&key);
        let ok = match guard {
            Guard::Any => true,
            Guard::Absent => current.is_none(),
            Guard::Revision(r) => current.is_some_and(|v| v.revision == *r),
            Guard::Leader { holder, revision } => self.leads(holder, *revision),
            Guard::LeaderAndKey {
                holder,
                revision,
                key_revision,
            } => {
                self.leads(holder, *revision) && current.map_or(0, |v| v.revision) == *key_revision
            }
        };
        if ok {
            return Ok(());
        }
        let leader = || match &self.leader {
            Some(l) => format!("leader is {} at revision {}", l.holder, l.revision),
            None => "no leader".to_string(),
        };
        let found = match (guard, current) {
            (Guard::Leader { .. }, _) => leader(),
            (
                Guard::LeaderAndKey {
                    holder, revision, ..
                },
                _,
            ) if !self.leads(holder, *revision) => leader(),
            (_, Some(v)) => format!("{key} is at revision {}", v.revision),
            (_, None) => format!("{key} is absent"),
        };
        Err(StoreError::conflict(
            key.name(),
            format!("expected {guard:?}, {found}"),
        ))
    }
}
