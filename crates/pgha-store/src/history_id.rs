//! The name of one history entry, chosen once by its writer so that a retried append is
//! recognised as the same entry, not recorded twice.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::time::SystemTime;

/// A history entry's name: unique with overwhelming probability (wall-clock nanoseconds and a
/// random word), and the same for every attempt to append that entry.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HistoryId(String);

impl HistoryId {
    /// A name no other entry has.
    pub fn fresh() -> HistoryId {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        HistoryId(format!("{nanos:032x}-{random:016x}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HistoryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::HistoryId;

    #[test]
    fn fresh_names_differ_and_sort_by_time() {
        let (a, b) = (HistoryId::fresh(), HistoryId::fresh());
        assert_ne!(a, b);
        // the nanoseconds come first: a later name sorts after (same clock, same process)
        assert!(a.as_str()[..32] <= b.as_str()[..32]);
    }
}
