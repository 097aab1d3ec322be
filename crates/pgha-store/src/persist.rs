//! JSON snapshot file of the durable keys (config, sync, switchover, initialize, history) and
//! of the leader key, whose lease starts again on load; member keys are not persisted.

use crate::error::StoreError;
use crate::model::{Key, Revision, Versioned};
use atomic_write_file::AtomicWriteFile;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// What survives a restart of the process embedding the in-memory store.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Durable {
    pub revision: Revision,
    pub keys: BTreeMap<Key, Versioned<String>>,
    pub history: Vec<Versioned<String>>,
    /// Who holds the leader key: on load it is held again for a whole ttl, as etcd extends
    /// its leases when it starts again, so a restart never hands the lease to another member
    /// while the holder's PostgreSQL may still be writable under its supervisor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<DurableLeader>,
}

/// The leader key as written down: its holder, its revision (the term) and its lease's ttl.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DurableLeader {
    pub holder: String,
    pub revision: Revision,
    pub ttl_ms: u64,
}

pub(crate) fn load(path: &Path) -> Result<Durable, StoreError> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map_err(|e| StoreError::Persistence(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Durable::default()),
        Err(e) => Err(StoreError::Persistence(format!("{}: {e}", path.display()))),
    }
}

/// Writes atomically and durably: a temporary file beside the target, synced, renamed over
/// it, and the directory synced, so that an acknowledged write outlives a power loss too.
pub(crate) fn save(path: &Path, durable: &Durable) -> Result<(), StoreError> {
    use std::io::Write;
    let fail = |e: std::io::Error| StoreError::Persistence(format!("{}: {e}", path.display()));
    let text = serde_json::to_string_pretty(durable)
        .map_err(|e| StoreError::Persistence(e.to_string()))?;
    let mut file = AtomicWriteFile::open(path).map_err(fail)?;
    file.write_all(text.as_bytes()).map_err(fail)?;
    file.commit().map_err(fail)
}
