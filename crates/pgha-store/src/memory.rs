//! The in-memory store: real lease semantics (TTL, expiry, compare-and-set, watch) on an
//! injectable clock, optionally persisted to a JSON file.

use crate::clock::Clock;
use crate::error::StoreError;
use crate::history_id::HistoryId;
use crate::model::{Guard, Key, LeaderRecord, Revision, Snapshot, Versioned};
use crate::persist::{self, Durable};
use crate::store::{Store, Watch};
use async_trait::async_trait;
use pgha_core::Ttl;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod state;
use state::{LeaderEntry, MemberEntry, State};

struct Inner {
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
    changes: tokio::sync::watch::Sender<Revision>,
    file: Option<PathBuf>,
}

/// The in-memory backend. Cheap to clone (shared state): hand one clone to each member of a
/// local cluster, as `Arc<dyn Store>`.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

impl MemoryStore {
    /// A store that lives only in memory.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self::build(clock, Durable::default(), None)
    }

    /// A store whose durable keys (config, sync, switchover, initialize, history) and leader
    /// key are loaded from `file` if it exists and written back on every change. The leader
    /// key comes back held for a whole ttl from the load (etcd extends its leases when it
    /// starts again); member keys do not survive.
    pub fn persistent(clock: Arc<dyn Clock>, file: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let file = file.into();
        let durable = persist::load(&file)?;
        Ok(Self::build(clock, durable, Some(file)))
    }

    fn build(clock: Arc<dyn Clock>, durable: Durable, file: Option<PathBuf>) -> Self {
        let revision = durable.revision;
        let mut state = State {
            durable,
            reachable: true,
            ..State::default()
        };
        state.restore_leader(clock.now());
        MemoryStore {
            inner: Arc::new(Inner {
                clock,
                state: Mutex::new(state),
                changes: tokio::sync::watch::Sender::new(revision),
                file,
            }),
        }
    }

    /// Test hook: while `false`, every call fails with [`StoreError::Unavailable`] (a
    /// partition). Leases keep running down meanwhile.
    pub fn set_reachable(&self, reachable: bool) {
        self.inner.state.lock().expect("store lock").reachable = reachable;
    }

    /// Test hook: while `true`, every call takes effect but its answer is lost: the caller
    /// gets [`StoreError::Unavailable`], as from etcd when the reply, not the request, is
    /// dropped.
    pub fn set_answers_lost(&self, lost: bool) {
        self.inner.state.lock().expect("store lock").answers_lost = lost;
    }

    /// Runs `f` on the state after expiring leases; notifies watchers and persists as needed.
    fn with_state<T>(
        &self,
        durable_write: bool,
        f: impl FnOnce(&mut State) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let now = self.inner.clock.now();
        let mut state = self.inner.state.lock().expect("store lock");
        if !state.reachable {
            return Err(StoreError::Unavailable("partitioned (test hook)".into()));
        }
        // Read before expiring: a lease this call finds expired is a change watchers hear of.
        let before = state.durable.revision;
        state.expire(now);
        let saved = (durable_write && self.inner.file.is_some())
            .then(|| (state.durable.clone(), state.leader.clone()));
        let result = f(&mut state);
        let after = state.durable.revision;
        if let (Some(file), Some((durable, leader)), true) =
            (&self.inner.file, saved, result.is_ok())
        {
            if let Err(e) = persist::save(file, &state.durable) {
                // Not written down: not written at all (a retry must not find it done).
                state.durable = durable;
                state.leader = leader;
                return Err(e);
            }
        }
        let lost = state.answers_lost;
        drop(state);
        if after != before {
            self.inner.changes.send_replace(after);
        }
        if lost {
            return Err(StoreError::Unavailable("answer lost (test hook)".into()));
        }
        result
    }

    /// Expires leases now (used by watchers when a deadline passes).
    fn sweep(&self) -> Option<Duration> {
        let now = self.inner.clock.now();
        let mut state = self.inner.state.lock().expect("store lock");
        if state.expire(now) {
            self.inner.changes.send_replace(state.durable.revision);
        }
        state.next_expiry()
    }
}

fn positive(ttl: Ttl) -> Result<Duration, StoreError> {
    let ttl = ttl.as_duration();
    if ttl.is_zero() {
        return Err(StoreError::Invalid("lease TTL must be positive".into()));
    }
    Ok(ttl)
}

#[async_trait]
impl Store for MemoryStore {
    async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        self.with_state(false, |s| {
            Ok(Snapshot {
                revision: s.durable.revision,
                leader: s.leader.as_ref().map(|l| LeaderRecord {
                    holder: l.holder.clone(),
                    revision: l.revision,
                }),
                members: s
                    .members
                    .iter()
                    .map(|(name, m)| (name.clone(), m.value.clone()))
                    .collect(),
                keys: s.durable.keys.clone(),
                history: s.durable.history.clone(),
            })
        })
    }

    async fn acquire_leader_if(
        &self,
        holder: &str,
        ttl: Ttl,
        failsafe_read: Option<Revision>,
    ) -> Result<Revision, StoreError> {
        let ttl = positive(ttl)?;
        let now = self.inner.clock.now();
        self.with_state(true, |s| {
            if let Some(l) = &s.leader {
                return Err(StoreError::conflict(
                    "leader",
                    format!("held by {}", l.holder),
                ));
            }
            let failsafe = s.durable.keys.get(&Key::Failsafe).map_or(0, |v| v.revision);
            if let Some(read) = failsafe_read.filter(|read| *read != failsafe) {
                return Err(StoreError::conflict(
                    "failsafe",
                    format!("written at revision {failsafe} since it was read at {read}"),
                ));
            }
            let revision = s.bump();
            // in the same write (see `Store::acquire_leader`)
            let alone = Versioned {
                value: crate::view::failsafe_list_of_alone(holder),
                revision,
            };
            s.durable.keys.insert(Key::Failsafe, alone);
            s.set_leader(Some(LeaderEntry {
                holder: holder.to_string(),
                revision,
                ttl,
                expires_at: now + ttl,
            }));
            Ok(revision)
        })
    }

    async fn renew_leader(
        &self,
        holder: &str,
        revision: Revision,
        asked: Ttl,
    ) -> Result<Ttl, StoreError> {
        let ttl = positive(asked)?;
        let now = self.inner.clock.now();
        // A new ttl is written down: a restart must not hold the key for a shorter one than
        // the holder's fencing deadline was armed with.
        let ttl_changes = {
            let state = self.inner.state.lock().expect("store lock");
            state.leader.as_ref().is_some_and(|l| l.ttl != ttl)
        };
        self.with_state(ttl_changes, |s| match s.leader.clone() {
            Some(mut l) if l.holder == holder && l.revision == revision => {
                l.ttl = ttl;
                l.expires_at = now + ttl;
                s.set_leader(Some(l));
                Ok(asked)
            }
            Some(l) => Err(StoreError::conflict(
                "leader",
                format!("held by {} at revision {}", l.holder, l.revision),
            )),
            None => Err(StoreError::conflict("leader", "absent (lease expired)")),
        })
    }

    async fn release_leader(&self, holder: &str, revision: Revision) -> Result<(), StoreError> {
        self.with_state(true, |s| match &s.leader {
            Some(l) if l.holder == holder && l.revision == revision => {
                s.set_leader(None);
                s.bump();
                Ok(())
            }
            _ => Err(StoreError::conflict(
                "leader",
                format!("not held by {holder}"),
            )),
        })
    }

    async fn put_member(&self, name: &str, value: &str, ttl: Ttl) -> Result<Revision, StoreError> {
        let ttl = positive(ttl)?;
        StoreError::check_member_name(name)?;
        let now = self.inner.clock.now();
        self.with_state(false, |s| {
            let revision = s.bump();
            let entry = MemberEntry {
                value: Versioned {
                    value: value.to_string(),
                    revision,
                },
                expires_at: now + ttl,
            };
            s.members.insert(name.to_string(), entry);
            Ok(revision)
        })
    }

    async fn delete_member(&self, name: &str) -> Result<(), StoreError> {
        self.with_state(false, |s| {
            if s.members.remove(name).is_some() {
                s.bump();
            }
            Ok(())
        })
    }

    async fn put(&self, key: Key, value: &str, guard: Guard) -> Result<Revision, StoreError> {
        self.with_state(true, |s| {
            s.check(key, &guard)?;
            let revision = s.bump();
            let value = Versioned {
                value: value.to_string(),
                revision,
            };
            s.durable.keys.insert(key, value);
            Ok(revision)
        })
    }

    async fn delete(&self, key: Key, guard: Guard) -> Result<(), StoreError> {
        self.with_state(true, |s| {
            s.check(key, &guard)?;
            if s.durable.keys.remove(&key).is_some() {
                s.bump();
            }
            Ok(())
        })
    }

    async fn append_history(
        &self,
        id: &HistoryId,
        entry: &str,
        guard: Guard,
    ) -> Result<Revision, StoreError> {
        self.with_state(true, |s| {
            if let Some(&at) = s.history_ids.get(id) {
                let recorded = &s.durable.history[at];
                return if recorded.value == entry {
                    Ok(recorded.revision)
                } else {
                    Err(StoreError::Invalid(format!(
                        "history entry {id} already holds another entry"
                    )))
                };
            }
            if let Guard::Leader { holder, revision } = &guard {
                let held = s.leader.as_ref();
                if !held.is_some_and(|l| &l.holder == holder && l.revision == *revision) {
                    return Err(StoreError::conflict(
                        "history",
                        format!("{holder} is not leader"),
                    ));
                }
            } else if guard != Guard::Any {
                return Err(StoreError::Invalid(
                    "history appends take Guard::Any or Guard::Leader".into(),
                ));
            }
            let revision = s.bump();
            s.history_ids.insert(id.clone(), s.durable.history.len());
            s.durable.history.push(Versioned {
                value: entry.to_string(),
                revision,
            });
            Ok(revision)
        })
    }

    async fn watch(&self) -> Result<Box<dyn Watch>, StoreError> {
        self.with_state(false, |_| Ok(()))?;
        let mut changes = self.inner.changes.subscribe();
        changes.mark_unchanged();
        Ok(Box::new(MemoryWatch {
            store: self.clone(),
            changes,
        }))
    }
}

struct MemoryWatch {
    store: MemoryStore,
    changes: tokio::sync::watch::Receiver<Revision>,
}

#[async_trait]
impl Watch for MemoryWatch {
    async fn changed(&mut self) -> Result<Revision, StoreError> {
        loop {
            let next_expiry = self.store.sweep();
            if self.changes.has_changed().unwrap_or(false) {
                return Ok(*self.changes.borrow_and_update());
            }
            let clock = self.store.inner.clock.clone();
            let expiry = async {
                match next_expiry {
                    Some(at) => clock.sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = self.changes.changed() => {
                    changed.map_err(|_| StoreError::Unavailable("store dropped".into()))?;
                    return Ok(*self.changes.borrow_and_update());
                }
                _ = expiry => {}
            }
        }
    }
}
