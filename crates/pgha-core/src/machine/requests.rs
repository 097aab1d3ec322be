//! The switchover and failover requests a member has read (each handled once, and timed from
//! when the member first read it), the switchover it carries out as the leader, and when a
//! request's old leader holds a member back.

use crate::election::Rules;
use crate::observe::MemberRecord;
use crate::reason::Reason;
use crate::types::{MemberName, Millis};

/// A switchover this member (as leader) is carrying out, in its term `term`: a later term it
/// wins is not handed over by it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Handover {
    pub revision: u64,
    pub target: Option<MemberName>,
    pub term: u64,
}

/// What this member knows of the requests it has read.
#[derive(Clone, Debug, Default)]
pub(crate) struct RequestsSeen {
    /// Revisions of the requests it handled (ran or refused): never handled again.
    handled: Vec<u64>,
    /// The request it read last, and when it first read it.
    first_read: Option<(u64, Millis)>,
}

impl RequestsSeen {
    /// Whether the request of `revision` was handled already.
    pub(crate) fn handled(&self, revision: u64) -> bool {
        self.handled.contains(&revision)
    }

    /// The request of `revision` is handled: it runs, or was refused.
    pub(crate) fn handle(&mut self, revision: u64) {
        self.handled.push(revision);
    }

    /// When this member first read the request of `revision` (`now`, the first time).
    pub(crate) fn first_read(&mut self, revision: u64, now: Millis) -> Millis {
        match self.first_read {
            Some((seen, at)) if seen == revision => at,
            _ => {
                self.first_read = Some((revision, now));
                now
            }
        }
    }
}

/// Why this member (`mine`) does not run while a request from `from` holds, `old` being the
/// old leader's record as a running standby (it does not compete itself): it may hold commits
/// acknowledged through it that this member lacks; or, for a planned switchover, its final
/// position is ahead of this member's (this member did not stream from it as it stopped, or
/// is on an earlier timeline), and running would rewind away what it wrote, with nothing
/// failed. Once the request's window is over, the old leader competes again. An old leader
/// that may not be promoted itself (vetoed, `nofailover`, ...) can only hand over.
pub(crate) fn held_back_by_old_leader(
    rules: &Rules,
    planned: bool,
    from: &MemberName,
    old: &MemberRecord,
    mine: &MemberRecord,
) -> Option<Reason> {
    if let Some(why) = rules.holds_commits_ahead(from, old, mine) {
        return Some(Reason::IneligibleAhead {
            member: from.clone(),
            why,
        });
    }
    let ahead = (old.timeline, old.lsn) > (mine.timeline, mine.lsn);
    (planned && ahead && rules.check(from, old).is_ok())
        .then(|| Reason::Behind { best: from.clone() })
}
