//! The campaign's result as the report shows it (and `--json` prints it): per fault, per kind
//! of fault, the writes, what was lost, second writers, client errors, and the verdict.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::checker::{self, LateAcks, LostRange, TwoWriters};
use crate::clock::{ms, Micros};
use crate::faults::FaultKind;
use crate::stats::Spread;
use crate::target::Mode;
use crate::workload::{Ack, ClientFailure};

/// A fault as the campaign saw it happen.
#[derive(Debug, Clone, Serialize)]
pub struct FaultRecord {
    pub index: usize,
    pub kind: FaultKind,
    pub victim: String,
    pub promoted: Option<String>,
    /// What changed (change-config: the `KEY=VALUE` assignments).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub leader_before: String,
    pub leader_after: Option<String>,
    /// When it was injected.
    pub at: Micros,
    /// When the cluster was healthy again and a write sent after the fault was acknowledged.
    pub recovered: Option<Micros>,
    /// When the member it hit was back in service for good (a streaming standby, or the
    /// writable leader again), staying so until the recovery.
    pub rejoined: Option<Micros>,
    pub note: Option<String>,
    /// Nobody took over from the stopped primary within half the recovery bound: the
    /// campaign started it again (no automatic failover happened).
    #[serde(default)]
    pub no_takeover: bool,
}

/// One fault in the report.
#[derive(Debug, Clone, Serialize)]
pub struct FaultReport {
    #[serde(flatten)]
    pub record: FaultRecord,
    pub at_ms: f64,
    /// Longest stretch without an acknowledged write, from the fault until recovery.
    pub unavailable_ms: Option<f64>,
    pub recovery_ms: Option<f64>,
    pub rejoin_ms: Option<f64>,
    /// Acknowledged writes lost around it (acknowledged during it, or before it and after
    /// the previous one).
    pub lost: usize,
    /// Client errors from the fault until recovery, by class.
    pub errors: BTreeMap<String, usize>,
}

/// One kind of fault in the report.
#[derive(Debug, Clone, Serialize)]
pub struct KindReport {
    pub kind: FaultKind,
    pub injected: usize,
    pub recovered: usize,
    pub unavailable: Spread,
    pub recovery: Spread,
    pub rejoin: Spread,
    pub lost: usize,
    pub errors: usize,
}

/// What pgha promises the cluster in its configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub seed: u64,
    pub mode: Mode,
    pub synchronous_mode: pgha_core::SyncMode,
    pub synchronous_commit: pgha_core::CommitLevel,
    /// Whether no acknowledged write may be lost (a synchronous mode whose commits wait for
    /// a standby).
    pub no_loss_promised: bool,
    pub recovery_bound_s: f64,
    pub writers: u16,
    /// How the writers reach the primary, e.g. "entry 127.0.0.1:15432" (the proxy) and
    /// "multi-host n1,n2,n3" (libpq-style, `target_session_attrs=read-write`).
    pub write_routes: Vec<String>,
}

/// The campaign's verdict (and the command's exit status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Nothing lost, one writer at a time, every fault recovered from in time.
    Passed,
    /// Acknowledged writes lost where pgha promises nothing (asynchronous replication).
    LostWithoutPromise,
    /// A promise broken: see `broken`.
    Broken,
}

/// Who held the leader key from when to when (as the cluster's API reported it).
#[derive(Debug, Clone, Serialize)]
pub struct LeaderSpan {
    pub leader: Option<String>,
    pub from_ms: f64,
    pub to_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub settings: Settings,
    pub started_unix_ms: i64,
    pub duration_s: f64,
    /// Stopped early by Ctrl-C (or a fault the cluster did not recover from).
    pub interrupted: bool,
    /// Who led when the campaign started (and leads again after its clean-up).
    pub original_leader: String,
    /// Who led once the faults ended (the primary whose rows are read back), before the
    /// clean-up switches back; null when the cluster was not healthy by then.
    pub final_leader: Option<String>,
    pub writes_attempted: u64,
    /// Writes whose commit was answered with success: each one must be on the final primary.
    pub writes_acknowledged: usize,
    /// The acknowledged writes by the member that answered them.
    pub acknowledged_by_member: BTreeMap<String, usize>,
    /// Reads through the read-only entry point that were answered.
    pub reads_ok: u64,
    /// Acknowledged writes missing from the final primary.
    pub lost: usize,
    /// Up to 100 lost ids.
    pub lost_ids: Vec<i64>,
    /// The lost writes as runs of ids, by the member and timeline that acknowledged them.
    pub lost_ranges: Vec<LostRange>,
    /// Members that acknowledged writes sent or run after a newer primary acknowledged one:
    /// two writers at once (a broken promise).
    pub two_writers: Vec<TwoWriters>,
    /// Answers an old primary gave late to writes it ran before the newer one took over:
    /// no second writer.
    pub late_acks: Vec<LateAcks>,
    /// The writers' failed attempts, by class of error.
    pub client_errors: BTreeMap<String, usize>,
    /// The reader's failed reads.
    pub reader_errors: usize,
    /// Every fault injected, in order.
    pub faults: Vec<FaultReport>,
    /// The faults by kind, with the spread of each measure.
    pub by_kind: Vec<KindReport>,
    /// Who held the leader key from when to when.
    pub leadership: Vec<LeaderSpan>,
    /// The promises broken, one line each (empty when none was).
    pub broken: Vec<String>,
    /// What putting the cluster back did, or could not do, one line each.
    pub cleanup: Vec<String>,
    pub verdict: Verdict,
}

/// What the campaign gathered, for the checker.
pub struct Gathered<'a> {
    pub settings: Settings,
    pub started_unix_ms: i64,
    pub duration: Micros,
    pub interrupted: bool,
    pub original_leader: String,
    pub final_leader: Option<String>,
    pub acks: &'a [Ack],
    pub failures: &'a [ClientFailure],
    pub attempts: u64,
    pub reads_ok: u64,
    /// The final primary's ids (`None`: it could not be read, which is itself reported).
    pub present: Option<BTreeSet<i64>>,
    pub faults: Vec<FaultRecord>,
    pub leadership: Vec<LeaderSpan>,
    pub cleanup: Vec<String>,
    pub problems: Vec<String>,
}

/// Judges what was gathered.
pub fn summarize(g: Gathered<'_>) -> Summary {
    let mut broken = g.problems.clone();
    let mut acks: Vec<Ack> = g.acks.to_vec();
    acks.sort_by_key(|a| a.acked);
    let acked_times: Vec<Micros> = acks.iter().map(|a| a.acked).collect();
    let lost: Vec<&Ack> = match &g.present {
        Some(present) => checker::lost(&acks, present),
        None => Vec::new(),
    };
    let (two_writers, late_acks) = checker::judge_writers(&acks);
    // A lost write belongs to the fault it was acknowledged during, else the next one.
    let owner = |t: Micros| -> Option<usize> {
        let during = g
            .faults
            .iter()
            .rev()
            .find(|f| f.at <= t && f.recovered.is_none_or(|r| t <= r));
        during
            .or_else(|| g.faults.iter().find(|f| f.at > t))
            .map(|f| f.index)
    };
    let mut lost_by_fault: BTreeMap<usize, usize> = BTreeMap::new();
    for a in &lost {
        if let Some(i) = owner(a.acked) {
            *lost_by_fault.entry(i).or_default() += 1;
        }
    }
    let mut faults = Vec::new();
    for f in &g.faults {
        let end = f.recovered.unwrap_or(g.duration);
        let mut errors = BTreeMap::new();
        for e in g.failures.iter().filter(|e| e.at >= f.at && e.at <= end) {
            *errors.entry(e.class.to_string()).or_insert(0) += 1;
        }
        faults.push(FaultReport {
            record: f.clone(),
            at_ms: ms(f.at),
            unavailable_ms: f
                .recovered
                .map(|r| ms(checker::unavailable(&acked_times, f.at, r))),
            recovery_ms: f.recovered.map(|r| ms(r - f.at)),
            rejoin_ms: f.rejoined.map(|r| ms(r - f.at)),
            lost: lost_by_fault.get(&f.index).copied().unwrap_or(0),
            errors,
        });
        if f.no_takeover {
            broken.push(format!(
                "fault {} ({} of {}): no member took over within {:.0} s; writes resumed only \
                 once pgha chaos started {} again",
                f.index,
                f.kind,
                f.victim,
                g.settings.recovery_bound_s / 2.0,
                f.victim
            ));
        }
        if f.recovered.is_none() {
            broken.push(format!(
                "fault {} ({} of {}): no recovery within {:.0} s of its end",
                f.index, f.kind, f.victim, g.settings.recovery_bound_s
            ));
        }
    }
    let by_kind = by_kind(&faults);
    for t in &two_writers {
        broken.push(format!(
            "two writers: {} acknowledged {} writes after {} had acknowledged one (at {:.1} s)",
            t.older,
            t.count,
            t.newer,
            ms(t.newer_first_ack) / 1000.0
        ));
    }
    if g.present.is_none() {
        broken.push("the final primary's rows could not be read: losses unknown".into());
    }
    if !lost.is_empty() && g.settings.no_loss_promised {
        broken.push(format!(
            "{} acknowledged writes lost in synchronous mode {}",
            lost.len(),
            g.settings.synchronous_mode
        ));
    }
    let verdict = if !broken.is_empty() {
        Verdict::Broken
    } else if !lost.is_empty() {
        Verdict::LostWithoutPromise
    } else {
        Verdict::Passed
    };
    let mut acknowledged_by_member = BTreeMap::new();
    for a in &acks {
        *acknowledged_by_member.entry(a.member.clone()).or_insert(0) += 1;
    }
    let mut client_errors = BTreeMap::new();
    for e in g.failures.iter().filter(|e| e.writer.is_some()) {
        *client_errors.entry(e.class.to_string()).or_insert(0) += 1;
    }
    Summary {
        started_unix_ms: g.started_unix_ms,
        duration_s: ms(g.duration) / 1000.0,
        interrupted: g.interrupted,
        original_leader: g.original_leader,
        final_leader: g.final_leader,
        writes_attempted: g.attempts,
        writes_acknowledged: acks.len(),
        acknowledged_by_member,
        reads_ok: g.reads_ok,
        lost: lost.len(),
        lost_ids: lost.iter().take(100).map(|a| a.id).collect(),
        lost_ranges: checker::lost_ranges(&lost),
        two_writers,
        late_acks,
        client_errors,
        reader_errors: g.failures.iter().filter(|e| e.writer.is_none()).count(),
        faults,
        by_kind,
        leadership: g.leadership,
        broken,
        cleanup: g.cleanup,
        verdict,
        settings: g.settings,
    }
}

/// Per kind of fault: how many, and the spread of each measure.
fn by_kind(faults: &[FaultReport]) -> Vec<KindReport> {
    let kinds: BTreeSet<FaultKind> = faults.iter().map(|f| f.record.kind).collect();
    kinds
        .into_iter()
        .map(|kind| {
            let of: Vec<&FaultReport> = faults.iter().filter(|f| f.record.kind == kind).collect();
            let spread = |get: fn(&FaultReport) -> Option<f64>| {
                Spread::of(&of.iter().filter_map(|f| get(f)).collect::<Vec<_>>())
            };
            KindReport {
                kind,
                injected: of.len(),
                recovered: of.iter().filter(|f| f.record.recovered.is_some()).count(),
                unavailable: spread(|f| f.unavailable_ms),
                recovery: spread(|f| f.recovery_ms),
                rejoin: spread(|f| f.rejoin_ms),
                lost: of.iter().map(|f| f.lost).sum(),
                errors: of.iter().map(|f| f.errors.values().sum::<usize>()).sum(),
            }
        })
        .collect()
}

#[cfg(test)]
#[path = "summary_tests.rs"]
mod tests;
