//! Failover candidate eligibility and ranking (I3): best received LSN, never lagging, never
//! `nofailover`, inside the synchronous set when one is required, deterministic tie-break.

use crate::config::{ClusterConfig, SyncMode};
use crate::observe::MemberRecord;
use crate::sync::SyncSet;
use crate::types::{Lsn, MemberName, Timeline};
use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::fmt;

/// Why a member may not be promoted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ineligible {
    NoFailoverTag,
    /// Its `pre_promote` callback refused its promotion a moment ago.
    PromotionVetoed,
    /// Its data directory took no write for [`crate::DATA_DIR_STALL_MS`] (a frozen, hung or
    /// failing disk): its promotion would wait on that disk.
    DataDirStalled,
    NotARunningStandby,
    Lagging {
        lag_bytes: u64,
        max_bytes: u64,
    },
    OutsideSyncSet,
}

impl fmt::Display for Ineligible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ineligible::NoFailoverTag => write!(f, "tagged nofailover"),
            Ineligible::PromotionVetoed => {
                write!(
                    f,
                    "its promotion was vetoed (by its pre_promote callback, or it could not \
                     write its fencing deadline)"
                )
            }
            Ineligible::DataDirStalled => write!(
                f,
                "its data directory has taken no write for {} ms or more (a stalled or failing \
                 disk: a promotion there would wait on it)",
                crate::DATA_DIR_STALL_MS
            ),
            Ineligible::NotARunningStandby => write!(f, "not a running standby"),
            Ineligible::Lagging { lag_bytes, max_bytes } => write!(
                f,
                "{lag_bytes} bytes behind the last primary position (maximum_lag_on_failover {max_bytes})"
            ),
            Ineligible::OutsideSyncSet => write!(f, "not in the published synchronous set"),
        }
    }
}

/// The ordering key of a candidate: greater is better. Newer timeline, then further LSN,
/// then more usable synchronized logical slots (their consumers carry on after the
/// failover), then higher priority tag, then the smaller name (deterministic tie-break).
pub fn rank(
    name: &MemberName,
    record: &MemberRecord,
) -> (Timeline, Lsn, u32, u32, Reverse<MemberName>) {
    (
        record.timeline,
        record.lsn,
        record.synced_slots,
        record.tags.priority,
        Reverse(name.clone()),
    )
}

/// What the cluster demands of any failover candidate.
#[derive(Clone, Debug)]
pub struct Rules<'a> {
    pub config: &'a ClusterConfig,
    pub sync: &'a SyncSet,
    /// The furthest position the lost primary was known to have reached.
    pub last_primary_lsn: Option<Lsn>,
}

impl Rules<'_> {
    /// Whether `name` may be promoted automatically. Outside the synchronous set is said
    /// before lag: a manual failover's `--force` accepts lag, and only `--allow-data-loss`
    /// the commits a member outside the set may lack.
    pub fn check(&self, name: &MemberName, record: &MemberRecord) -> Result<(), Ineligible> {
        if record.tags.nofailover {
            return Err(Ineligible::NoFailoverTag);
        }
        if record.promotion_vetoed {
            return Err(Ineligible::PromotionVetoed);
        }
        if record.data_dir_stalled {
            return Err(Ineligible::DataDirStalled);
        }
        if !record.is_standby() {
            return Err(Ineligible::NotARunningStandby);
        }
        self.check_sync(name)?;
        if let Some(primary) = self.last_primary_lsn {
            let lag_bytes = record.lsn.bytes_until(primary);
            let max_bytes = self.config.maximum_lag_on_failover;
            if lag_bytes > max_bytes {
                return Err(Ineligible::Lagging {
                    lag_bytes,
                    max_bytes,
                });
            }
        }
        Ok(())
    }

    /// The synchronous-mode part of [`Rules::check`].
    pub fn check_sync(&self, name: &MemberName) -> Result<(), Ineligible> {
        let in_set = self.sync.members.contains(name) || self.sync.leader.as_ref() == Some(name);
        match self.config.synchronous_mode {
            SyncMode::Off => Ok(()),
            SyncMode::On if self.sync.members.is_empty() => Ok(()),
            _ if in_set => Ok(()),
            // strict over a set left from asynchronous times: as in `on`, anyone may run
            _ if self.sync.promises_nothing() => Ok(()),
            _ => Err(Ineligible::OutsideSyncSet),
        }
    }

    /// Whether `name` is eligible in a synchronous mode only as the leader that published the
    /// set (not as one of its members).
    fn only_as_set_leader(&self, name: &MemberName) -> bool {
        self.config.synchronous_mode != SyncMode::Off
            && !self.sync.members.is_empty()
            && !self.sync.members.contains(name)
            && self.sync.leader.as_ref() == Some(name)
    }

    /// Whether `name` can have acknowledged commits as a synchronous standby: a member of the
    /// set other than the leader that published it (a primary is never its own standby, even
    /// when a set carried over from an earlier leader still names it).
    fn acknowledges(&self, name: &MemberName) -> bool {
        self.sync.members.contains(name) && self.sync.leader.as_ref() != Some(name)
    }

    /// Why promoting `me` would lose acknowledged commits: `name`, a member of the
    /// synchronous set or the leader that published it, cannot be promoted itself (vetoed, or
    /// tagged nofailover since the set was published) and is further ahead: it may hold
    /// commits that were acknowledged and that `me` lacks. A vetoed member counts even outside
    /// the set, for as long as its veto lasts.
    pub(crate) fn holds_commits_ahead(
        &self,
        name: &MemberName,
        record: &MemberRecord,
        mine: &MemberRecord,
    ) -> Option<Ineligible> {
        // A vetoed member counts wherever it stands: the set may have shrunk after it
        // acknowledged commits (`on` degrades to an empty set when no standby is healthy).
        let holds_acknowledged = self.acknowledges(name)
            || self.sync.leader.as_ref() == Some(name)
            || record.promotion_vetoed;
        if self.config.synchronous_mode == SyncMode::Off || !holds_acknowledged {
            return None;
        }
        let ahead = (record.timeline, record.lsn) > (mine.timeline, mine.lsn);
        self.check(name, record).err().filter(|_| ahead)
    }

    /// A member of the synchronous set (not the leader that published it) whose record is
    /// further than `mine`: it may hold commits acknowledged through it that `me` lacks.
    pub fn synchronous_member_ahead(
        &self,
        me: &MemberName,
        mine: &MemberRecord,
        members: &BTreeMap<MemberName, MemberRecord>,
    ) -> Option<MemberName> {
        if self.config.synchronous_mode == SyncMode::Off {
            return None;
        }
        members
            .iter()
            .filter(|(name, _)| *name != me && self.acknowledges(name))
            .filter(|(_, r)| (r.timeline, r.lsn) > (mine.timeline, mine.lsn))
            .max_by_key(|(name, r)| rank(name, r))
            .map(|(name, _)| name.clone())
    }

    /// How many set members must be compared before promoting so that one of them holds
    /// every acknowledged commit (|acknowledging members| - count + 1). For quorum commit
    /// (`ANY k`) any k of them acknowledged each commit; for priority (`FIRST k`) the first k
    /// streaming ones did, and which ones those were moved as members came and went: either
    /// way each commit is on k of them, no telling which.
    fn quorum_needed(&self) -> usize {
        let synchronous =
            self.config.synchronous_mode != SyncMode::Off && !self.sync.members.is_empty();
        if !synchronous {
            return 0;
        }
        let acknowledging = self
            .sync
            .members
            .iter()
            .filter(|m| self.acknowledges(m))
            .count();
        (acknowledging + 1).saturating_sub(self.sync.count as usize)
    }
}

/// The result of judging one's own candidacy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Best among every confirmed eligible member: race for the leader key.
    Best,
    /// Another eligible member ranks higher.
    Behind {
        best: MemberName,
    },
    /// Some members have not yet reported a position read after the leader vanished (in a
    /// synchronous mode: final, their stream stopped);
    /// `replaying`: those of them that still replay WAL of their own since a restart.
    Waiting {
        unconfirmed: Vec<MemberName>,
        replaying: Vec<MemberName>,
    },
    /// Too few synchronous-set members confirmed to be sure of every acknowledged commit;
    /// `replaying`: set members not counted because they still replay WAL of their own since
    /// a restart (their positions are lower bounds until they reach its end).
    QuorumIncomplete {
        confirmed: usize,
        needed: usize,
        replaying: Vec<MemberName>,
    },
    /// A synchronous standby that cannot be promoted is further ahead: promoting this member
    /// could lose commits it acknowledged.
    IneligibleAhead {
        member: MemberName,
        why: Ineligible,
    },
    Ineligible(Ineligible),
}

/// Judges whether `me` (with its fresh `mine` record) should take the lead, comparing with the
/// other members' published records. A record not read after the newest term `me` knows ended
/// (one that still saw a leader, or one from an earlier vacancy) may be stale; such members are
/// waited for until `give_up_waiting`, and after that their stale positions still count as
/// lower bounds. With `streams_may_confirm` (see `Member::streams_may_confirm`), a record
/// whose member still streams is waited for likewise: its position is not final.
pub fn judge(
    rules: &Rules<'_>,
    me: &MemberName,
    mine: &MemberRecord,
    others: &BTreeMap<MemberName, MemberRecord>,
    give_up_waiting: bool,
    streams_may_confirm: bool,
) -> Verdict {
    if let Err(why) = rules.check(me, mine) {
        return Verdict::Ineligible(why);
    }
    // When every member of the synchronous set is an eligible standby, the best of them holds
    // every acknowledged commit, and the leader that published the set steps aside for them:
    // its WAL may end with commits whose synchronous wait was cut short (as a crashed
    // synchronous primary hands over instead of restarting). With a set member missing, that
    // leader, which has every commit it acknowledged, competes on its position.
    let set_complete = !rules.sync.members.is_empty()
        && rules.sync.members.iter().all(|m| {
            (m == me && rules.check(me, mine).is_ok())
                || others
                    .get(m)
                    .is_some_and(|r| r.is_standby() && rules.check(m, r).is_ok())
        });
    if set_complete && rules.only_as_set_leader(me) {
        let best = rules
            .sync
            .members
            .iter()
            .filter_map(|m| others.get_key_value(m))
            .max_by_key(|(name, record)| rank(name, record))
            .map(|(name, _)| name.clone());
        if let Some(best) = best {
            return Verdict::Behind { best };
        }
    }
    let my_rank = rank(me, mine);
    let mut unconfirmed = Vec::new();
    // The set's leader, still listed among its members (a failover's winner until a member that
    // stays holds what it may alone have confirmed), is waited for while its record is there:
    // its promotion may have failed, its PostgreSQL stopped. Gone (it left, or its key expired),
    // it is the failure the set allows for, and is not waited for.
    let listed_leader = rules
        .sync
        .leader
        .as_ref()
        .filter(|l| *l != me && rules.sync.members.contains(*l) && others.contains_key(*l));
    let mut set_confirmed = usize::from(rules.acknowledges(me));
    let mut replaying = Vec::new();
    for (name, record) in others.iter().filter(|(name, _)| *name != me) {
        if !record.is_standby() {
            continue;
        }
        // A position, stale or not, is a lower bound: one ahead is ahead.
        if let Some(why) = rules.holds_commits_ahead(name, record, mine) {
            return Verdict::IneligibleAhead {
                member: name.clone(),
                why,
            };
        }
        // The set's old leader steps aside for a complete set whatever its position (see
        // above): nothing to wait for from it.
        let defers_to_me = set_complete && rules.only_as_set_leader(name);
        if !record.final_after(mine.term_seen, streams_may_confirm) {
            if defers_to_me {
                continue;
            }
            if !give_up_waiting {
                unconfirmed.push(name.clone());
                if record.replaying_local_wal {
                    replaying.push(name.clone());
                }
                continue;
            }
            // Given up waiting for a fresh one: a stale position is still a lower bound (WAL
            // only grows), so a member known to be further ahead still wins over this one.
            if record.replaying_local_wal && rules.acknowledges(name) {
                replaying.push(name.clone());
            }
            if rules.check(name, record).is_ok() && rank(name, record) > my_rank {
                return Verdict::Behind { best: name.clone() };
            }
            continue;
        }
        if rules.acknowledges(name) || Some(name) == listed_leader {
            set_confirmed += 1;
        }
        // With the whole set eligible, nobody defers to the set's old leader (see above).
        if !defers_to_me && rules.check(name, record).is_ok() && rank(name, record) > my_rank {
            return Verdict::Behind { best: name.clone() };
        }
    }
    if !unconfirmed.is_empty() {
        return Verdict::Waiting {
            unconfirmed,
            replaying,
        };
    }
    // The leader that published the set wrote every commit it acknowledged: it needs no
    // quorum of standbys to vouch for them (a set member whose data is gone would otherwise
    // keep it from leading for good).
    let needed = rules.quorum_needed() + usize::from(listed_leader.is_some());
    // The set's leader wrote every commit it acknowledged: a fresh position of it, stepped
    // down, no further than this member's shows this member holds them all.
    let leader_level = rules
        .sync
        .leader
        .as_ref()
        .and_then(|l| others.get(l))
        .is_some_and(|r| {
            r.is_standby()
                && r.final_after(mine.term_seen, streams_may_confirm)
                && (r.timeline, r.lsn) <= (mine.timeline, mine.lsn)
        });
    if set_confirmed < needed && rules.sync.leader.as_ref() != Some(me) && !leader_level {
        return Verdict::QuorumIncomplete {
            confirmed: set_confirmed,
            needed,
            replaying,
        };
    }
    Verdict::Best
}

/// The best eligible member among published records (e.g. a switchover without `--to`).
pub fn best_candidate(
    rules: &Rules<'_>,
    members: &BTreeMap<MemberName, MemberRecord>,
    except: Option<&MemberName>,
) -> Option<MemberName> {
    members
        .iter()
        .filter(|(name, _)| Some(*name) != except)
        .filter(|(name, record)| rules.check(name, record).is_ok())
        .max_by_key(|(name, record)| rank(name, record))
        .map(|(name, _)| name.clone())
}

#[cfg(test)]
#[path = "election_tests.rs"]
mod tests;
