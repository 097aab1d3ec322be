//! A store that lost its keys (etcd's data gone, a key deleted by hand): the agent decides with
//! the cluster configuration and the synchronous set it last read, never with the defaults
//! (asynchronous, a 10 s ttl; an empty set, which makes every member eligible), puts the
//! configuration back, and marks the set as one from memory (its leader puts it back).

use pgha_core::ClusterView;
use pgha_store::{Guard, Key, Snapshot, StoreError};

use crate::agent::Agent;

impl Agent {
    /// Remembers the configuration and the synchronous set `snapshot` holds, or puts the ones
    /// last read into `view` where it holds none. The set is not written back here: only a
    /// leader may write it, and the view says it came from memory so that the leader's step
    /// publishes it again.
    pub(super) async fn fill_lost_keys(&mut self, snapshot: &Snapshot, view: &mut ClusterView) {
        if snapshot.get(Key::Config).is_some() {
            self.known_config = view.config.clone();
            self.keep_config();
        } else {
            view.config = self.known_config.clone();
            self.restore_config().await;
        }
        match (&snapshot.get(Key::Sync), &self.known_sync) {
            (Some(_), _) => self.known_sync = Some(view.sync.clone()),
            (None, Some(known)) => {
                view.sync = known.clone();
                view.sync_from_memory = true;
            }
            (None, None) => {}
        }
    }

    /// Keeps the configuration last read beside the data directory when it changed, for an
    /// agent that starts while the store has none to put back (`pgha agent`'s start).
    fn keep_config(&mut self) {
        if self.kept_config.as_ref() == Some(&self.known_config)
            || !self.spec.instance.member_dir.is_dir()
        {
            return;
        }
        let name = &self.spec.name;
        let json = match serde_json::to_string(&self.known_config) {
            Ok(json) => json,
            Err(e) => return tracing::error!("{name}: cannot encode the configuration: {e}"),
        };
        match pgha_pg::kept_config::remember(&self.spec.instance, &json) {
            Ok(()) => {
                self.kept_config = Some(self.known_config.clone());
                if self.kept_config_failing.take().is_some() {
                    tracing::info!(
                        "{name}: the cluster configuration is kept beside its data again"
                    );
                }
            }
            // tried again at the next read (said once: until then the copy kept is older)
            Err(e) if self.kept_config_failing.replace(e.to_string()).is_none() => {
                tracing::warn!("{name}: cannot keep the cluster configuration beside its data: {e}")
            }
            Err(_) => {}
        }
    }

    /// Puts the cluster configuration this member last read back into a store that has none
    /// (etcd lost its data, or someone deleted the key): the members would otherwise run on
    /// the defaults (asynchronous, a 10 s ttl) with nobody told. The first member to write it
    /// wins; the others find it there.
    async fn restore_config(&self) {
        let name = &self.spec.name;
        let json = match serde_json::to_string(&self.known_config) {
            Ok(json) => json,
            Err(e) => return tracing::error!("{name}: cannot encode the configuration: {e}"),
        };
        let put = self.store.put(Key::Config, &json, Guard::Absent);
        match crate::execute::timed(self.store_timeout(), put).await {
            Ok(_) => tracing::warn!(
                "{name}: the store had no cluster configuration (did etcd lose its data?): put \
                 back the one this member last read: {json}"
            ),
            Err(StoreError::Conflict { .. }) => {}
            Err(e) => tracing::warn!(
                "{name}: the store has no cluster configuration, and putting back the one this \
                 member last read failed ({e}); it decides with that one meanwhile"
            ),
        }
    }
}
