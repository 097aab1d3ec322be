//! The two forms of a synchronous set: as published in the store, as applied to PostgreSQL.

use crate::config::{SyncMethod, SyncMode};
use crate::types::MemberName;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;

use super::NO_STANDBY;

/// The synchronous set as published in the store's `sync` key: the members that may be
/// promoted without losing an acknowledged commit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncSet {
    /// The leader that published it. It holds every commit it acknowledged, so it stays
    /// eligible itself (strict mode left with no standby must not be left with no candidate).
    #[serde(default)]
    pub leader: Option<MemberName>,
    pub members: BTreeSet<MemberName>,
    /// Acknowledgements each commit waits for (`n` of `FIRST n`/`ANY n`).
    pub count: u32,
    pub method: SyncMethod,
    /// The synchronous mode its leader ran in when it published it (`None`: published by a
    /// pgha before this field). An empty set means "only its leader holds what was
    /// acknowledged" in `strict` alone: published in `off`, or in `on` with commits waiting
    /// for no standby, it promises nothing ([`SyncSet::promises_nothing`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<SyncMode>,
}

impl SyncSet {
    /// An empty set published while commits waited for no standby (mode `off`, or `on`): no
    /// commit was acknowledged through it, so it keeps no standby from being elected, even
    /// once the mode is `strict` (a switch its leader may not have published yet).
    pub fn promises_nothing(&self) -> bool {
        self.members.is_empty() && matches!(self.mode, Some(SyncMode::Off | SyncMode::On))
    }
}

/// `synchronous_standby_names` as rendered into (or read from) PostgreSQL.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SyncApplied {
    pub method: SyncMethod,
    pub count: u32,
    /// In priority order; empty means asynchronous.
    pub names: Vec<MemberName>,
}

/// Equal when PostgreSQL reads them alike: every asynchronous value is the one empty setting,
/// whatever its method and count (an empty setting reads back with the default method, while
/// the leader asks for asynchronous with the configured one).
impl PartialEq for SyncApplied {
    fn eq(&self, other: &Self) -> bool {
        match (self.is_async(), other.is_async()) {
            (true, true) => true,
            (false, false) => {
                (self.method, self.count, &self.names) == (other.method, other.count, &other.names)
            }
            _ => false,
        }
    }
}

impl Eq for SyncApplied {}

impl SyncApplied {
    pub fn is_async(&self) -> bool {
        self.names.is_empty()
    }
    pub(super) fn as_set(&self) -> BTreeSet<MemberName> {
        self.names
            .iter()
            .filter(|n| n.as_str() != NO_STANDBY)
            .cloned()
            .collect()
    }
}

impl SyncApplied {
    /// Reads back a value rendered by [`SyncApplied`]'s `Display` (`FIRST n ("a", "b")`,
    /// `ANY n (...)`, or empty); `None` for anything pgha did not write.
    pub fn parse(text: &str) -> Option<SyncApplied> {
        let text = text.trim();
        if text.is_empty() {
            return Some(SyncApplied::default());
        }
        let (word, rest) = text.split_once(' ')?;
        let method = match word.to_ascii_uppercase().as_str() {
            "FIRST" => SyncMethod::Priority,
            "ANY" => SyncMethod::Quorum,
            _ => return None,
        };
        let (count, list) = rest.trim().split_once(' ')?;
        let count: u32 = count.parse().ok()?;
        let list = list.trim().strip_prefix('(')?.strip_suffix(')')?;
        let names = list
            .split(',')
            .map(|n| {
                let n = n.trim();
                let n = n
                    .strip_prefix('"')
                    .and_then(|n| n.strip_suffix('"'))
                    .unwrap_or(n);
                (!n.is_empty()).then(|| MemberName::new(n))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(SyncApplied {
            method,
            count,
            names,
        })
    }
}

impl fmt::Display for SyncApplied {
    /// The value for `synchronous_standby_names`, e.g. `FIRST 1 ("n2")`, or empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.names.is_empty() {
            return Ok(());
        }
        let word = match self.method {
            SyncMethod::Priority => "FIRST",
            SyncMethod::Quorum => "ANY",
        };
        let names: Vec<String> = self.names.iter().map(|n| format!("\"{n}\"")).collect();
        write!(f, "{word} {} ({})", self.count, names.join(", "))
    }
}
