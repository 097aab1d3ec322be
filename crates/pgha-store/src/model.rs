//! The data the store holds: keys, guards for compare-and-set, versioned values, snapshots.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A store-wide, strictly increasing modification counter (etcd's `mod_revision`).
pub type Revision = u64;

/// A value with the revision of its last modification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versioned<T> {
    pub value: T,
    pub revision: Revision,
}

/// The single-valued keys under the cluster prefix that are not bound to a lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Key {
    /// Dynamic cluster settings.
    Config,
    /// The published synchronous set (written by the leader only).
    Sync,
    /// A pending switchover/failover request.
    Switchover,
    /// Who bootstrapped: the system identifier (create-if-absent).
    Initialize,
    /// The leader's last WAL position (written by the leader only; outlives its lease, so a
    /// restarted agent still knows how far the lost primary had come).
    Position,
    /// The members a leader would ask to confirm it while the store is down (failsafe);
    /// written by the leader only. A member outside it does not run for leader while the
    /// listed ones could still be confirming the old leader.
    Failsafe,
}

impl Key {
    pub const ALL: [Key; 6] = [
        Key::Config,
        Key::Sync,
        Key::Switchover,
        Key::Initialize,
        Key::Position,
        Key::Failsafe,
    ];

    /// The key's path below `/pgha/<cluster>/`.
    pub fn name(self) -> &'static str {
        match self {
            Key::Config => "config",
            Key::Sync => "sync",
            Key::Switchover => "switchover",
            Key::Initialize => "initialize",
            Key::Position => "position",
            Key::Failsafe => "failsafe",
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The condition a write needs (one etcd transaction compare).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Guard {
    /// Unconditional.
    Any,
    /// The key must not exist (create-if-absent).
    Absent,
    /// The key must exist with this revision.
    Revision(Revision),
    /// The leader key must be held by `holder` with this revision (a leader-only write).
    Leader { holder: String, revision: Revision },
    /// [`Guard::Leader`], and the key written still at `key_revision` (0: absent), as the read
    /// the write was decided on showed it: a leader's write whose answer was lost cannot land
    /// after anything else was written there.
    LeaderAndKey {
        holder: String,
        revision: Revision,
        key_revision: Revision,
    },
}

/// The leader key: who holds it, its revision (unchanged by renewals: one term, one revision).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderRecord {
    pub holder: String,
    pub revision: Revision,
}

/// One consistent read of everything under the cluster prefix.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The store revision the read happened at.
    pub revision: Revision,
    pub leader: Option<LeaderRecord>,
    /// Live member keys: name → JSON value written by that member.
    pub members: BTreeMap<String, Versioned<String>>,
    pub keys: BTreeMap<Key, Versioned<String>>,
    /// History entries in append order.
    pub history: Vec<Versioned<String>>,
}

impl Snapshot {
    pub fn get(&self, key: Key) -> Option<&Versioned<String>> {
        self.keys.get(&key)
    }
}
