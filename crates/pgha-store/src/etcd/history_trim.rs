//! Keeps etcd's history from filling it: etcd keeps every revision of every key until it is
//! compacted, and refuses every write once its database reaches its quota (2 GiB by default;
//! pgha's members make several revisions a second). Revisions older than a retention are
//! compacted away, by the marks of the revisions seen over time.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The revisions seen, oldest first, each with when it was seen.
#[derive(Debug, Default)]
pub(super) struct HistoryMarks {
    marks: VecDeque<(Instant, i64)>,
}

impl HistoryMarks {
    /// Notes `revision` seen at `now`; the revision to compact to, so that what was written
    /// within `keep` stays: the newest one seen at least `keep` ago (`None` before any is that
    /// old). Marks up to it are forgotten.
    pub(super) fn cut(&mut self, now: Instant, revision: i64, keep: Duration) -> Option<i64> {
        if self.marks.back().is_none_or(|(_, last)| *last < revision) {
            self.marks.push_back((now, revision));
        }
        let old_enough = self
            .marks
            .iter()
            .rposition(|(at, _)| now.saturating_duration_since(*at) >= keep)?;
        let (_, revision) = self.marks[old_enough];
        self.marks.drain(..=old_enough);
        Some(revision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compacts_to_the_newest_revision_seen_a_retention_ago() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let keep = Duration::from_secs(60);
        let mut marks = HistoryMarks::default();
        assert_eq!(marks.cut(at(0), 100, keep), None);
        assert_eq!(marks.cut(at(30), 200, keep), None);
        assert_eq!(marks.cut(at(59), 250, keep), None);
        // 100 was seen 60 s ago: everything since stays
        assert_eq!(marks.cut(at(60), 300, keep), Some(100));
        // nothing newer is old enough yet
        assert_eq!(marks.cut(at(61), 300, keep), None);
        // at 100 s only 200 (seen at 30 s) is 60 s old; at 125 s 250 and 300 (seen at 59 and
        // 60 s) both are: the newer one
        assert_eq!(marks.cut(at(100), 350, keep), Some(200));
        assert_eq!(marks.cut(at(125), 400, keep), Some(300));
        assert_eq!(marks.cut(at(126), 400, keep), None);
        // no retention: up to now
        assert_eq!(marks.cut(at(127), 500, Duration::ZERO), Some(500));
    }
}
