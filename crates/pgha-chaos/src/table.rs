//! The report as text for the terminal: the verdict, the writes, and one row per kind of
//! fault with its write-unavailable window, recovery and rejoin times.

use crate::summary::{Summary, Verdict};

/// `rows` (the first is the header) with every column padded to its widest cell.
pub fn aligned(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, s)| format!("{s:<w$}", w = widths[c]))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The whole report as text.
pub fn render(s: &Summary) -> String {
    let st = &s.settings;
    let mut out = format!(
        "pgha chaos: {} faults in {:.0} s (seed {}, {} mode, synchronous_mode {}, synchronous_commit {}){}\n\n",
        s.faults.len(),
        s.duration_s,
        st.seed,
        serde_json::to_value(st.mode).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default(),
        st.synchronous_mode,
        st.synchronous_commit,
        if s.interrupted { ", stopped early" } else { "" }
    );
    let mut rows = vec![[
        "fault",
        "injected",
        "recovered",
        "write-unavailable s (median / p95 / max)",
        "recovery s",
        "old member back s",
        "lost",
        "client errors",
    ]
    .map(String::from)
    .to_vec()];
    for k in &s.by_kind {
        rows.push(vec![
            k.kind.name().to_string(),
            k.injected.to_string(),
            k.recovered.to_string(),
            k.unavailable.seconds(),
            k.recovery.seconds(),
            k.rejoin.seconds(),
            k.lost.to_string(),
            k.errors.to_string(),
        ]);
    }
    out.push_str(&aligned(&rows));
    let by_member: Vec<String> = s
        .acknowledged_by_member
        .iter()
        .map(|(m, n)| format!("{m} {n}"))
        .collect();
    out.push_str(&format!(
        "\nwrites: {} sent, {} acknowledged ({}); reads: {} answered, {} failed\n",
        s.writes_attempted,
        s.writes_acknowledged,
        by_member.join(", "),
        s.reads_ok,
        s.reader_errors
    ));
    if !s.client_errors.is_empty() {
        let errors: Vec<String> = s
            .client_errors
            .iter()
            .map(|(c, n)| format!("{c} {n}"))
            .collect();
        out.push_str(&format!("writer errors: {}\n", errors.join(", ")));
    }
    out.push_str(&format!(
        "acknowledged writes lost: {}{}\n",
        s.lost,
        if s.lost > 0 && !st.no_loss_promised {
            " (asynchronous replication: pgha promises no zero loss here)"
        } else {
            ""
        }
    ));
    for r in &s.lost_ranges {
        out.push_str(&format!(
            "  {} writes acknowledged by {}: ids {}..{}, WAL {} .. {}\n",
            r.count, r.era, r.first_id, r.last_id, r.lsn_from, r.lsn_to
        ));
    }
    out.push_str(&format!("two writers at once: {}\n", s.two_writers.len()));
    let late: usize = s.late_acks.iter().map(|l| l.count).sum();
    if late > 0 {
        out.push_str(&format!(
            "late answers (no second writer: run before the new leader's first write): {late}\n"
        ));
    }
    for line in &s.cleanup {
        out.push_str(&format!("cleanup: {line}\n"));
    }
    out.push('\n');
    out.push_str(&match s.verdict {
        Verdict::Passed => "PASSED: nothing acknowledged was lost, one writer at a time, every fault recovered from\n".to_string(),
        Verdict::LostWithoutPromise => format!(
            "LOST WRITES: {} acknowledged writes lost (asynchronous mode, where pgha promises no zero loss; use a synchronous mode to keep them)\n",
            s.lost
        ),
        Verdict::Broken => format!("PROMISE BROKEN:\n  - {}\n", s.broken.join("\n  - ")),
    });
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_line_up() {
        let rows = vec![
            vec!["a".to_string(), "bb".to_string()],
            vec!["ccc".to_string(), "d".to_string()],
        ];
        assert_eq!(super::aligned(&rows), "a    bb\nccc  d\n");
    }
}
