//! The judgements on what the clients recorded: acknowledged writes missing from the final
//! primary, two members acknowledging writes at overlapping times, and how long writes were
//! unavailable around each fault.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::clock::Micros;
use crate::workload::Ack;

/// How far a server's `clock_timestamp()` may stray from [sent, acknowledged] and still be
/// trusted (same machine: its clock is this one).
pub const SERVER_CLOCK_TOLERANCE_US: Micros = 1_000_000;

/// When a write ran, as far as the checker can tell: the server's clock unless it strays
/// from when the write was sent and answered; then its answer (the latest it can have run),
/// so that a second writer is never missed.
pub fn executed(a: &Ack) -> Micros {
    match a.executed {
        Some(e)
            if e >= a.sent - SERVER_CLOCK_TOLERANCE_US
                && e <= a.acked + SERVER_CLOCK_TOLERANCE_US =>
        {
            e
        }
        _ => a.acked,
    }
}

/// A member's run as the writer on one timeline.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Era {
    pub member: String,
    pub timeline: u32,
}

impl std::fmt::Display for Era {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (timeline {})", self.member, self.timeline)
    }
}

/// Writes an older era acknowledged after a newer era (another member) had acknowledged one.
#[derive(Debug, Clone, Serialize)]
pub struct TwoWriters {
    pub older: Era,
    pub newer: Era,
    /// When the newer era acknowledged its first write.
    pub newer_first_ack: Micros,
    /// How many writes the older acknowledged that were sent, or ran, after that.
    pub count: usize,
    /// Its last such acknowledgement: the two-writer interval ends there.
    pub last_ack: Micros,
}

/// Answers the older era gave late to writes it ran before the newer era's first
/// acknowledgement: no second writer (each one the final primary lacks is lost).
#[derive(Debug, Clone, Serialize)]
pub struct LateAcks {
    pub older: Era,
    pub newer: Era,
    pub count: usize,
}

/// Second writers and late answers among `acks`. An era is a member on one timeline: a
/// promotion always starts a new timeline, so two eras of different members that both
/// acknowledge writes after the later one began are two writers.
pub fn judge_writers(acks: &[Ack]) -> (Vec<TwoWriters>, Vec<LateAcks>) {
    let mut first: BTreeMap<Era, Micros> = BTreeMap::new();
    for a in acks {
        let era = Era {
            member: a.member.clone(),
            timeline: a.timeline,
        };
        let t = first.entry(era).or_insert(a.acked);
        *t = (*t).min(a.acked);
    }
    let mut order: Vec<(Era, Micros)> = first.into_iter().collect();
    order.sort_by_key(|(e, t)| (*t, e.clone()));
    let (mut two, mut late) = (Vec::new(), Vec::new());
    for (i, (older, _)) in order.iter().enumerate() {
        let of_older: Vec<&Ack> = acks
            .iter()
            .filter(|a| a.member == older.member && a.timeline == older.timeline)
            .collect();
        for (newer, t_new) in &order[i + 1..] {
            if newer.member == older.member {
                continue;
            }
            let after = |a: &Ack| a.sent > *t_new || executed(a) > *t_new;
            let second: Vec<&&Ack> = of_older.iter().filter(|a| after(a)).collect();
            if let Some(last) = second.iter().map(|a| a.acked).max() {
                two.push(TwoWriters {
                    older: older.clone(),
                    newer: newer.clone(),
                    newer_first_ack: *t_new,
                    count: second.len(),
                    last_ack: last,
                });
            }
            let answered_late = of_older
                .iter()
                .filter(|a| a.acked > *t_new && !after(a))
                .count();
            if answered_late > 0 {
                late.push(LateAcks {
                    older: older.clone(),
                    newer: newer.clone(),
                    count: answered_late,
                });
            }
        }
    }
    (two, late)
}

/// The acknowledged writes `present` (the final primary's ids) lacks.
pub fn lost<'a>(acks: &'a [Ack], present: &BTreeSet<i64>) -> Vec<&'a Ack> {
    acks.iter().filter(|a| !present.contains(&a.id)).collect()
}

/// Lost writes of one member on one timeline, with their WAL range.
#[derive(Debug, Clone, Serialize)]
pub struct LostRange {
    pub era: Era,
    pub count: usize,
    pub first_id: i64,
    pub last_id: i64,
    pub lsn_from: String,
    pub lsn_to: String,
}

/// `lost` grouped by era, with the WAL positions they were written at.
pub fn lost_ranges(lost: &[&Ack]) -> Vec<LostRange> {
    let mut by: BTreeMap<Era, Vec<&Ack>> = BTreeMap::new();
    for a in lost {
        by.entry(Era {
            member: a.member.clone(),
            timeline: a.timeline,
        })
        .or_default()
        .push(a);
    }
    by.into_iter()
        .map(|(era, acks)| {
            let lsn = |a: &&&Ack| pgha_pg::instance::parse_lsn(&a.lsn).unwrap_or(0);
            let lo = acks.iter().min_by_key(lsn).expect("a group is not empty");
            let hi = acks.iter().max_by_key(lsn).expect("a group is not empty");
            LostRange {
                era,
                count: acks.len(),
                first_id: acks.iter().map(|a| a.id).min().unwrap_or(0),
                last_id: acks.iter().map(|a| a.id).max().unwrap_or(0),
                lsn_from: lo.lsn.clone(),
                lsn_to: hi.lsn.clone(),
            }
        })
        .collect()
}

/// The longest stretch without an acknowledgement between `from` and `to`, counted from
/// `from` (acknowledgement times, sorted): how long writes were unavailable.
pub fn unavailable(acked_sorted: &[Micros], from: Micros, to: Micros) -> Micros {
    let start = acked_sorted.partition_point(|t| *t <= from);
    let mut previous = from;
    let mut longest = 0;
    for t in &acked_sorted[start..] {
        if *t > to {
            break;
        }
        longest = longest.max(t - previous);
        previous = *t;
    }
    longest.max(to - previous).max(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(id: i64, member: &str, timeline: u32, sent: Micros, ran: Micros, acked: Micros) -> Ack {
        Ack {
            id,
            writer: 1,
            member: member.into(),
            timeline,
            lsn: format!("0/{:X}", id * 100),
            sent,
            acked,
            executed: Some(ran),
        }
    }

    /// n1 leads on timeline 1, n2 from 5 s on timeline 2, n1 again from 9 s on timeline 3.
    fn history() -> Vec<Ack> {
        vec![
            ack(1, "n1", 1, 0, 1, 2),
            ack(2, "n1", 1, 1000, 1001, 1002),
            ack(3, "n2", 2, 4_990_000, 4_995_000, 5_000_000),
            ack(4, "n2", 2, 6_000_000, 6_000_001, 6_000_002),
            ack(5, "n1", 3, 9_000_000, 9_000_001, 9_000_002),
        ]
    }

    #[test]
    fn a_switchover_and_back_is_one_writer_at_a_time() {
        let (two, late) = judge_writers(&history());
        assert!(two.is_empty() && late.is_empty(), "{two:?} {late:?}");
    }

    #[test]
    fn the_old_timeline_writing_after_the_new_one_began_is_a_second_writer() {
        let mut acks = history();
        // n1 still on timeline 1 at 5.5 s: sent after n2's first answer
        acks.push(ack(6, "n1", 1, 5_500_000, 5_500_001, 5_500_002));
        // ran at 5.2 s though sent at 0.1 s: held, then run after n2 took writes
        acks.push(ack(7, "n1", 1, 100_000, 5_200_000, 5_300_000));
        let (two, _) = judge_writers(&acks);
        assert_eq!(two.len(), 1, "{two:?}");
        assert_eq!(
            (two[0].older.timeline, two[0].newer.member.as_str()),
            (1, "n2")
        );
        assert_eq!((two[0].count, two[0].last_ack), (2, 5_500_002));
    }

    #[test]
    fn a_late_answer_to_an_earlier_write_is_no_second_writer() {
        let mut acks = history();
        acks.push(ack(6, "n1", 1, 100_000, 100_001, 6_000_000));
        let (two, late) = judge_writers(&acks);
        assert!(two.is_empty(), "{two:?}");
        assert_eq!(late.len(), 1);
        assert_eq!(late[0].count, 1);
    }

    #[test]
    fn a_server_clock_far_off_counts_as_run_when_answered() {
        let a = ack(1, "n1", 1, 100, 3_600_000_000, 200);
        assert_eq!(executed(&a), 200);
        let b = ack(1, "n1", 1, 100, 150, 200);
        assert_eq!(executed(&b), 150);
    }

    #[test]
    fn lost_writes_are_grouped_with_their_wal_range() {
        let acks = history();
        let present: BTreeSet<i64> = [1, 3, 4, 5].into();
        let lost = lost(&acks, &present);
        assert_eq!(lost.iter().map(|a| a.id).collect::<Vec<_>>(), vec![2]);
        let ranges = lost_ranges(&lost);
        assert_eq!(ranges.len(), 1);
        assert_eq!((ranges[0].era.member.as_str(), ranges[0].count), ("n1", 1));
        assert_eq!(ranges[0].lsn_from, "0/C8");
    }

    #[test]
    fn unavailability_is_the_longest_gap_counted_from_the_fault() {
        let acked = vec![0, 10, 20, 500, 510, 2000];
        assert_eq!(unavailable(&acked, 15, 600), 480);
        assert_eq!(unavailable(&acked, 15, 1500), 990);
        assert_eq!(unavailable(&acked, 2000, 2010), 10);
    }
}
