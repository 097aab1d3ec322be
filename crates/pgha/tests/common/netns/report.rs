//! The checker's findings: acknowledged writes, two writers, late answers, the report.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Instant;

/// One acknowledged write.
#[derive(Clone, Debug)]
pub struct Ack {
    pub id: u64,
    pub writer: String,
    /// The member whose PostgreSQL committed it (from `inet_server_addr()`).
    pub member: String,
    pub sent: Instant,
    pub acked: Instant,
    /// `sent` and `acked` on the wall clock (µs since the epoch).
    pub sent_us: i64,
    pub acked_us: i64,
    /// When the member's PostgreSQL ran the INSERT (`clock_timestamp()`, µs since the epoch:
    /// every test host shares this machine's kernel, hence its wall clock).
    pub executed_us: Option<i64>,
    /// The timeline the member wrote it on (each promotion begins a new one).
    pub timeline: Option<u32>,
}

/// How far a server's `clock_timestamp()` may fall outside the window in which the checker sent
/// a write and got its answer (on the checker's true wall clock) before it is not trusted: the
/// clocks are one kernel's, so only a server whose wall clock was stepped strays.
pub const SERVER_CLOCK_TOLERANCE_US: i64 = 1_000_000;

impl Ack {
    /// Who took the write, as the judgement of writers tells them apart: the member and its
    /// timeline, so that a member that takes writes again after another did (a promotion of
    /// its own, on a newer timeline) is a newer writer, not the old one writing on.
    pub fn term(&self) -> String {
        match self.timeline {
            Some(tl) => format!("{} (timeline {tl})", self.member),
            None => self.member.clone(),
        }
    }

    /// How far the server's `clock_timestamp()` fell outside [sent, acked] (µs, negative:
    /// before it), when by more than [`SERVER_CLOCK_TOLERANCE_US`].
    pub fn server_clock_off_us(&self) -> Option<i64> {
        let e = self.executed_us?;
        let off = if e < self.sent_us {
            e - self.sent_us
        } else if e > self.acked_us {
            e - self.acked_us
        } else {
            0
        };
        (off.abs() > SERVER_CLOCK_TOLERANCE_US).then_some(off)
    }

    /// When the write ran, as far as the checker can tell: the server's `clock_timestamp()`,
    /// unless that strays from [sent, acked] (a stepped server clock); then the latest instant
    /// it can have run, its answer, so that a second writer is never missed (a late answer to
    /// an earlier write may then be counted as one, and the report says why).
    pub fn executed_trusted_us(&self) -> Option<i64> {
        match self.server_clock_off_us() {
            Some(_) => Some(self.acked_us),
            None => self.executed_us,
        }
    }
}

/// A member acknowledging writes it committed after a newer member had acknowledged one (see
/// [`judge_writers`] for exactly what counts).
#[derive(Clone, Debug)]
pub struct TwoWriters {
    pub older: String,
    pub newer: String,
    /// When `newer` acknowledged its first write (ms since the checker started).
    pub newer_first_ack_ms: i64,
    /// How many writes `older` acknowledged that were sent, or executed, after that.
    pub count: usize,
    /// Of those, how many were sent before but executed after (held by a stalled server).
    pub executed_late: usize,
    /// The last such acknowledgement (ms): the two-writer interval is
    /// [newer_first_ack_ms, last_ack_ms].
    pub last_ack_ms: i64,
    /// By writer.
    pub writers: BTreeMap<String, usize>,
}

/// Acknowledgements by `older` received after `newer` had acknowledged a write, of writes
/// sent *and* executed before that: `older` ran them while nobody else took writes and only
/// answered late (a backend frozen between its commit and its answer). Not a second writer;
/// each one the final primary lacks is also in [`Report::lost`].
#[derive(Clone, Debug)]
pub struct LateAcks {
    pub older: String,
    pub newer: String,
    pub newer_first_ack_ms: i64,
    pub count: usize,
    /// How many of them the final primary holds.
    pub present: usize,
    pub last_ack_ms: i64,
}

/// What the checker found.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub attempts: usize,
    pub acked: usize,
    pub acked_by_member: BTreeMap<String, usize>,
    pub acked_by_writer: BTreeMap<String, usize>,
    /// member → (first, last) acknowledgement, ms since start, in order of first ack.
    pub members_in_order: Vec<(String, i64, i64)>,
    /// Acknowledged writes missing from the final primary.
    pub lost: Vec<Ack>,
    /// Acknowledgements that arrived late but are no second writer (see [`LateAcks`]).
    pub late_acks: Vec<LateAcks>,
    pub final_primary: String,
    pub two_writers: Vec<TwoWriters>,
    /// Longest time without any acknowledgement (ms) and when it began.
    pub longest_gap_ms: i64,
    pub longest_gap_from_ms: i64,
    /// Events the test marked (label, ms since start).
    pub marks: Vec<(String, i64)>,
    /// By member: acknowledged writes whose `clock_timestamp()` strayed from the checker's
    /// clock ([`Ack::server_clock_off_us`]), and the largest such offset (µs).
    pub server_clock_off: BTreeMap<String, (usize, i64)>,
    pub origin: Option<Instant>,
}

impl Report {
    pub fn ms(&self, t: Instant) -> i64 {
        t.duration_since(self.origin.unwrap()).as_millis() as i64
    }

    pub fn lost_by_member(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for a in &self.lost {
            *m.entry(a.member.clone()).or_default() += 1;
        }
        m
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "checker: {} writes attempted, {} acknowledged (by member {:?}, by writer {:?})",
            self.attempts, self.acked, self.acked_by_member, self.acked_by_writer
        )?;
        for (label, ms) in &self.marks {
            writeln!(f, "  event at {ms} ms: {label}")?;
        }
        for (m, first, last) in &self.members_in_order {
            writeln!(f, "  {m} acknowledged writes from {first} ms to {last} ms")?;
        }
        writeln!(
            f,
            "  longest time without an acknowledgement: {} ms (from {} ms)",
            self.longest_gap_ms, self.longest_gap_from_ms
        )?;
        writeln!(
            f,
            "  acknowledged writes missing from the final primary {}: {} {:?}",
            self.final_primary,
            self.lost.len(),
            self.lost_by_member()
        )?;
        if let (Some(first), Some(last)) = (self.lost.first(), self.lost.last()) {
            writeln!(
                f,
                "    lost ids {}..{}, acknowledged from {} ms to {} ms",
                first.id,
                last.id,
                self.ms(first.acked),
                self.ms(last.acked)
            )?;
        }
        for l in &self.late_acks {
            writeln!(
                f,
                "  late acknowledgements (no second writer): {} answered {} writes after {} had \
                 acknowledged one at {} ms, all sent and executed before it, the last at {} ms; \
                 {} of them on the final primary, {} missing (counted as lost)",
                l.older,
                l.count,
                l.newer,
                l.newer_first_ack_ms,
                l.last_ack_ms,
                l.present,
                l.count - l.present
            )?;
        }
        for (m, (n, off)) in &self.server_clock_off {
            writeln!(
                f,
                "  SERVER CLOCK: {m}'s clock_timestamp() strayed from the checker's clock on {n} \
                 acknowledged writes (up to {:+.3} s outside [sent, answered]); their answers \
                 count as their execution",
                *off as f64 / 1e6
            )?;
        }
        if self.two_writers.is_empty() {
            writeln!(f, "  two writers: none")?;
        }
        for t in &self.two_writers {
            writeln!(
                f,
                "  TWO WRITERS: {} acknowledged {} writes sent ({} of them only executed) after {} had \
                 acknowledged one at {} ms; interval [{} ms, {} ms] = {} ms; by writer {:?}",
                t.older,
                t.count,
                t.executed_late,
                t.newer,
                t.newer_first_ack_ms,
                t.newer_first_ack_ms,
                t.last_ack_ms,
                t.last_ack_ms - t.newer_first_ack_ms,
                t.writers
            )?;
        }
        Ok(())
    }
}

/// Second writers and late acknowledgements among `acks` (sorted by `acked`); `present`: the
/// ids the final primary holds; `ms`: an instant as ms since the checker started.
pub fn judge_writers(
    acks: &[Ack],
    present: &BTreeSet<u64>,
    ms: impl Fn(Instant) -> i64,
) -> (Vec<TwoWriters>, Vec<LateAcks>) {
    // Two writers. Y ("newer") first acknowledged a write at t_Y (when its writer got the
    // answer), later than X ("older") first did; Y had committed that write by t_Y. X is a
    // second writer if it acknowledged a write that
    //  (a) was sent after t_Y: it cannot have reached X, let alone been committed there,
    //      before Y had committed one; or
    //  (b) X's PostgreSQL executed after t_Y by its own clock (the INSERT's
    //      clock_timestamp(); the test hosts share this kernel's wall clock), though sent
    //      earlier: held by a stalled server and run only once Y took writes (its commit,
    //      hence the answer, came later still). A server clock outside the window between
    //      sending and answering was stepped: then the answer counts as the execution
    //      (Ack::executed_trusted_us), which can only add second writers.
    // Neither needs the write to be lost: X committing anything after Y did is the fault.
    // Writers are told apart by term (member and timeline, `Ack::term`): a member promoted
    // again after another took writes (n1, n2, then n1 on a newer timeline) is a newer writer
    // than both; its old term writing after the other's first write is still the fault.
    // Not a second writer on its own: X answering after t_Y a write sent and executed
    // before t_Y (a backend frozen between its commit and its answer, or a commit waiting
    // for its synchronous standby's confirmation that arrives late). X may have committed
    // it before Y took over, and then Y holds it (that is what "durable on the new
    // primary" means here). Those are reported as late acknowledgements with how many the
    // final primary holds; every one it lacks is in `lost`, like any acknowledged write
    // missing there (a write executed before t_Y but committed after it is one of those:
    // the final primary cannot hold it).
    let terms: Vec<String> = acks.iter().map(Ack::term).collect();
    let first_us: BTreeMap<&str, i64> = {
        let mut m = BTreeMap::new();
        for (a, term) in acks.iter().zip(&terms) {
            m.entry(term.as_str()).or_insert(a.acked_us);
        }
        m
    };
    let mut first: BTreeMap<&str, Instant> = BTreeMap::new();
    for (a, term) in acks.iter().zip(&terms) {
        first.entry(term.as_str()).or_insert(a.acked);
    }
    let mut order: Vec<(&str, Instant)> = first.iter().map(|(m, t)| (*m, *t)).collect();
    order.sort_by_key(|(_, t)| *t);
    let (mut two_writers, mut late_acks) = (Vec::new(), Vec::new());
    for (i, (older, _)) in order.iter().enumerate() {
        for (newer, newer_first) in &order[i + 1..] {
            let newer_us = first_us[newer];
            let sent_after = |a: &Ack| a.sent > *newer_first;
            let executed_after = |a: &Ack| a.executed_trusted_us().is_some_and(|e| e > newer_us);
            let second: Vec<&Ack> = acks
                .iter()
                .zip(&terms)
                .filter(|(a, term)| term == older && (sent_after(a) || executed_after(a)))
                .map(|(a, _)| a)
                .collect();
            if let Some(l) = second.last() {
                let mut writers = BTreeMap::new();
                for a in &second {
                    *writers.entry(a.writer.clone()).or_default() += 1;
                }
                two_writers.push(TwoWriters {
                    older: older.to_string(),
                    newer: newer.to_string(),
                    newer_first_ack_ms: ms(*newer_first),
                    count: second.len(),
                    executed_late: second.iter().filter(|a| !sent_after(a)).count(),
                    last_ack_ms: ms(l.acked),
                    writers,
                });
            }
            let late: Vec<&Ack> = acks
                .iter()
                .zip(&terms)
                .filter(|(a, term)| {
                    term == older && a.acked > *newer_first && !sent_after(a) && !executed_after(a)
                })
                .map(|(a, _)| a)
                .collect();
            if let Some(l) = late.last() {
                late_acks.push(LateAcks {
                    older: older.to_string(),
                    newer: newer.to_string(),
                    newer_first_ack_ms: ms(*newer_first),
                    count: late.len(),
                    present: late.iter().filter(|a| present.contains(&a.id)).count(),
                    last_ack_ms: ms(l.acked),
                });
            }
        }
    }
    (two_writers, late_acks)
}
