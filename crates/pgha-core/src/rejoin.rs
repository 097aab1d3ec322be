//! Rejoin planning: from timeline/LSN divergence decide follow, rewind or re-clone.

use crate::history::HistoryEvent;
use crate::observe::ClusterView;
use crate::types::{Lsn, MemberName, Timeline};
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;

/// One line of a PostgreSQL timeline history file: `timeline` ended at `lsn`, where its child
/// timeline began.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineSwitch {
    pub timeline: Timeline,
    pub lsn: Lsn,
}

/// How a member becomes a standby of the current leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejoinPlan {
    /// Its WAL is a prefix of the leader's: stream directly.
    Follow,
    /// Its WAL went past the point where the leader's history left its timeline: `pg_rewind`.
    Rewind,
}

/// Whom member `me` clones from: the furthest standby tagged `clonefrom` that streams from
/// `leader` now (the smaller name on a tie), or else the leader itself.
pub fn clone_source(me: &MemberName, leader: &MemberName, view: &ClusterView) -> MemberName {
    view.members
        .iter()
        .filter(|(name, r)| {
            *name != me
                && r.tags.clonefrom
                && r.is_standby()
                && r.streaming_from.as_ref() == Some(leader)
        })
        .max_by_key(|(name, r)| (r.lsn, Reverse(*name)))
        .map_or_else(|| leader.clone(), |(name, _)| name.clone())
}

/// Where the leader's history left `timeline`, if it passed through it.
pub fn switch_point(history: &[TimelineSwitch], timeline: Timeline) -> Option<Lsn> {
    history
        .iter()
        .find(|switch| switch.timeline == timeline)
        .map(|switch| switch.lsn)
}

/// Decides follow or rewind for a member at (`local_tl`, `local_lsn`) joining a leader on
/// `leader_tl` whose timeline history is `leader_history`.
pub fn plan(
    local_tl: Timeline,
    local_lsn: Lsn,
    leader_tl: Timeline,
    leader_history: &[TimelineSwitch],
) -> RejoinPlan {
    if local_tl == leader_tl {
        // Two writers never share a timeline: every promotion starts a new one.
        return RejoinPlan::Follow;
    }
    if local_tl > leader_tl {
        return RejoinPlan::Rewind;
    }
    match switch_point(leader_history, local_tl) {
        Some(switch) if local_lsn <= switch => RejoinPlan::Follow,
        _ => RejoinPlan::Rewind,
    }
}

/// The newest timeline the cluster knows of: promotions in its history, the `position` key
/// and the members' records. A promotion must start a newer one ([`crate::Action::Promote`]).
pub fn newest_timeline(view: &ClusterView) -> Timeline {
    let promoted = view
        .history
        .iter()
        .filter(|e| e.kind.is_promotion())
        .map(|e| e.timeline);
    let position = view.leader_position.as_ref().map(|p| p.timeline);
    let records = view.members.values().map(|r| r.timeline);
    promoted
        .chain(position)
        .chain(records)
        .max()
        .unwrap_or(Timeline(0))
}

/// A timeline history rebuilt from the promotions recorded in the cluster history, for when
/// the leader's own history file is not available. Each promotion to timeline `t` at `lsn`
/// means timeline `t - 1` ended at `lsn`.
pub fn history_from_events(events: &[HistoryEvent]) -> Vec<TimelineSwitch> {
    let mut switches: Vec<TimelineSwitch> = Vec::new();
    for event in events.iter().filter(|e| e.kind.is_promotion()) {
        let Some(parent) = event.timeline.0.checked_sub(1) else {
            continue;
        };
        let switch = TimelineSwitch {
            timeline: Timeline(parent),
            lsn: event.lsn,
        };
        switches.retain(|s| s.timeline != switch.timeline);
        switches.push(switch);
    }
    switches.sort_by_key(|s| s.timeline);
    switches
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history() -> Vec<TimelineSwitch> {
        vec![
            TimelineSwitch {
                timeline: Timeline(1),
                lsn: Lsn(1000),
            },
            TimelineSwitch {
                timeline: Timeline(2),
                lsn: Lsn(5000),
            },
        ]
    }

    #[test]
    fn same_timeline_follows() {
        assert_eq!(
            plan(Timeline(3), Lsn(9), Timeline(3), &history()),
            RejoinPlan::Follow
        );
    }

    #[test]
    fn behind_the_switch_point_follows_and_past_it_rewinds() {
        // The leader is on timeline 3: timeline 1 ended at 1000, timeline 2 at 5000.
        for (timeline, lsn, expected) in [
            (1, 1000, RejoinPlan::Follow),
            (1, 1001, RejoinPlan::Rewind),
            (2, 4000, RejoinPlan::Follow),
        ] {
            assert_eq!(
                plan(Timeline(timeline), Lsn(lsn), Timeline(3), &history()),
                expected,
                "timeline {timeline} at {lsn}"
            );
        }
    }

    #[test]
    fn unknown_or_newer_timeline_rewinds() {
        assert_eq!(
            plan(Timeline(4), Lsn(1), Timeline(3), &history()),
            RejoinPlan::Rewind
        );
        assert_eq!(
            plan(Timeline(1), Lsn(1), Timeline(3), &[]),
            RejoinPlan::Rewind
        );
    }
}
