//! The synchronous settings a leader has in force, published with its record so that whoever
//! changes them (`pgha config set synchronous_mode=on`) can wait until commits obey them.

use crate::config::{ClusterConfig, CommitLevel, SyncMethod, SyncMode};
use serde::{Deserialize, Serialize};

/// The cluster's synchronous settings as a leader put them in force: PostgreSQL counts the
/// standbys they call for (`synchronous_standby_names` reloaded), the store publishes the same
/// set, and `synchronous_commit` is reloaded at this level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncInForce {
    pub mode: SyncMode,
    pub method: SyncMethod,
    pub count: u32,
    pub commit: CommitLevel,
}

impl SyncInForce {
    /// The settings `config` asks for.
    pub fn of(config: &ClusterConfig) -> Self {
        SyncInForce {
            mode: config.synchronous_mode,
            method: config.synchronous_method,
            count: config.synchronous_count,
            commit: config.synchronous_commit,
        }
    }
}

/// The leader's synchronous bookkeeping between two steps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaderSync {
    /// A member leaving the published set waits for one that stays to catch up.
    pub removal: Option<super::RemovalMark>,
    /// The settings in force after the last step (`None` while a change is under way).
    pub in_force: Option<SyncInForce>,
    /// Sets published that may still land (sent on the `sync` key's revision last read).
    pub unseen: Option<super::UnseenSets>,
    /// Standbys standing still behind the primary, and since when.
    pub stalls: super::StandbyStalls,
    /// The records last read of its standbys, for a while once gone from the store.
    pub kept: super::KeptRecords,
    /// When its PostgreSQL was promoted: mode `on` waits a while for the standbys to connect.
    pub reconnecting: Option<super::Reconnecting>,
}
