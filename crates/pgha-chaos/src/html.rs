//! The report as one self-contained HTML page a DBA can attach to a change request: the
//! verdict, the tables, and an inline SVG timeline (writes per 100 ms, faults marked, which
//! member led and which answered the writes).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::summary::Summary;
use crate::table;
use crate::workload::Ack;

const PLOT_W: f64 = 1000.0;
const LEFT: f64 = 60.0;
const BARS_H: f64 = 140.0;
const COLORS: [&str; 8] = [
    "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#bcbd22",
];

/// Escapes text for HTML.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Writes acknowledged per 100 ms, and the member that answered most of them, bucket by
/// bucket over `total_ms`.
pub fn buckets(acks: &[Ack], total_ms: f64) -> Vec<(u32, Option<String>)> {
    let n = (total_ms / 100.0).ceil().max(1.0) as usize;
    let mut counts: Vec<BTreeMap<&str, u32>> = vec![BTreeMap::new(); n];
    for a in acks {
        let i = ((a.acked as f64 / 100_000.0) as usize).min(n - 1);
        *counts[i].entry(a.member.as_str()).or_default() += 1;
    }
    counts
        .into_iter()
        .map(|c| {
            let total = c.values().sum();
            let top = c
                .iter()
                .max_by_key(|(_, n)| **n)
                .map(|(m, _)| m.to_string());
            (total, top)
        })
        .collect()
}

/// The page.
pub fn render(s: &Summary, acks: &[Ack]) -> String {
    let mut members: Vec<String> = s.acknowledged_by_member.keys().cloned().collect();
    for span in &s.leadership {
        if let Some(l) = &span.leader {
            if !members.contains(l) {
                members.push(l.clone());
            }
        }
    }
    members.sort();
    let color = |m: Option<&str>| match m.and_then(|m| members.iter().position(|x| x == m)) {
        Some(i) => COLORS[i % COLORS.len()],
        None => "#dddddd",
    };
    let mut page = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>pgha chaos report</title>\
         <style>body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}\
         td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:13px}\
         .ok{color:#1a7f37}.bad{color:#c0392b}pre{background:#f6f6f6;padding:1em}</style></head><body>",
    );
    let verdict_class = if s.verdict == crate::Verdict::Passed {
        "ok"
    } else {
        "bad"
    };
    let _ = write!(
        page,
        "<h1>pgha chaos report</h1><p class=\"{verdict_class}\"><b>{}</b></p>",
        escape(table::render(s).lines().last().unwrap_or(""))
    );
    page.push_str(&timeline(s, acks, &members, &color));
    page.push_str("<h2>Summary</h2><pre>");
    page.push_str(&escape(&table::render(s)));
    page.push_str("</pre><h2>Faults</h2><table><tr><th>#</th><th>at s</th><th>fault</th><th>member</th><th>leader before → after</th><th>write-unavailable s</th><th>recovered after s</th><th>old member back after s</th><th>lost</th><th>client errors</th><th>note</th></tr>");
    let secs = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.2}", v / 1000.0));
    for f in &s.faults {
        let r = &f.record;
        let errors: Vec<String> = f.errors.iter().map(|(c, n)| format!("{c} {n}")).collect();
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{:.1}</td><td>{}</td><td>{}</td><td>{} → {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            r.index,
            f.at_ms / 1000.0,
            r.kind,
            escape(&r.victim),
            escape(&r.leader_before),
            escape(r.leader_after.as_deref().unwrap_or("?")),
            secs(f.unavailable_ms),
            secs(f.recovery_ms),
            secs(f.rejoin_ms),
            f.lost,
            escape(&errors.join(", ")),
            escape(r.note.as_deref().unwrap_or(""))
        );
    }
    page.push_str("</table><h2>Raw result</h2><details><summary>JSON</summary><pre>");
    page.push_str(&escape(
        &serde_json::to_string_pretty(s).unwrap_or_default(),
    ));
    page.push_str("</pre></details></body></html>\n");
    page
}

/// The SVG: write bars, fault marks, the leader strip and the answering-member strip.
fn timeline<'a>(
    s: &Summary,
    acks: &[Ack],
    members: &[String],
    color: &dyn Fn(Option<&str>) -> &'a str,
) -> String {
    let total_ms = (s.duration_s * 1000.0).max(100.0);
    let raw = buckets(acks, total_ms);
    // At most 2000 bars: long campaigns average several 100 ms buckets into one bar.
    let per_bar = raw.len().div_ceil(2000).max(1);
    let bars: Vec<(f64, Option<String>)> = raw
        .chunks(per_bar)
        .map(|c| {
            let avg = c.iter().map(|(n, _)| *n as f64).sum::<f64>() / c.len() as f64;
            (avg, c.iter().rev().find_map(|(_, m)| m.clone()))
        })
        .collect();
    let max = bars.iter().map(|(n, _)| *n).fold(1.0, f64::max);
    let x = |t_ms: f64| LEFT + t_ms / total_ms * PLOT_W;
    let bar_w = PLOT_W / bars.len() as f64;
    let height = BARS_H + 120.0;
    let mut svg = format!(
        "<h2>Timeline</h2><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" font-size=\"11\">",
        LEFT + PLOT_W + 20.0
    );
    for f in &s.faults {
        let from = x(f.at_ms);
        let to = x(f.at_ms + f.recovery_ms.unwrap_or(total_ms - f.at_ms));
        let _ = write!(
            svg,
            "<rect x=\"{from:.1}\" y=\"10\" width=\"{:.1}\" height=\"{BARS_H}\" fill=\"#f8d7d3\"/>",
            (to - from).max(1.0)
        );
    }
    for (i, (n, m)) in bars.iter().enumerate() {
        let h = n / max * (BARS_H - 10.0);
        let _ = write!(
            svg,
            "<rect x=\"{:.2}\" y=\"{:.1}\" width=\"{:.2}\" height=\"{h:.1}\" fill=\"{}\"/>",
            LEFT + i as f64 * bar_w,
            10.0 + BARS_H - h,
            bar_w.max(0.5),
            color(m.as_deref())
        );
    }
    for f in &s.faults {
        let fx = x(f.at_ms);
        let _ = write!(
            svg,
            "<line x1=\"{fx:.1}\" y1=\"10\" x2=\"{fx:.1}\" y2=\"{}\" stroke=\"#c0392b\" stroke-dasharray=\"3,2\"/>\
             <text x=\"{:.1}\" y=\"20\" fill=\"#c0392b\">#{} {}</text>",
            BARS_H + 60.0,
            fx + 2.0,
            f.record.index,
            f.record.kind
        );
    }
    let strip = BARS_H + 20.0;
    let _ = write!(
        svg,
        "<text x=\"2\" y=\"{:.0}\">writes</text><text x=\"2\" y=\"{:.0}\">per 100 ms</text>\
         <text x=\"2\" y=\"{:.0}\">{max:.0}</text><text x=\"2\" y=\"{:.0}\">leader</text>",
        BARS_H / 2.0,
        BARS_H / 2.0 + 12.0,
        20.0,
        strip + 12.0
    );
    for span in &s.leadership {
        let _ = write!(
            svg,
            "<rect x=\"{:.1}\" y=\"{strip}\" width=\"{:.1}\" height=\"16\" fill=\"{}\"><title>{}</title></rect>",
            x(span.from_ms),
            (x(span.to_ms) - x(span.from_ms)).max(0.5),
            color(span.leader.as_deref()),
            escape(span.leader.as_deref().unwrap_or("no leader"))
        );
    }
    let axis = strip + 34.0;
    let step = nice_step(total_ms / 1000.0);
    let mut t = 0.0;
    while t <= total_ms / 1000.0 {
        let _ = write!(
            svg,
            "<line x1=\"{0:.1}\" y1=\"{axis}\" x2=\"{0:.1}\" y2=\"{1}\" stroke=\"#888\"/><text x=\"{0:.1}\" y=\"{2}\">{t:.0} s</text>",
            x(t * 1000.0),
            axis + 4.0,
            axis + 16.0
        );
        t += step;
    }
    let mut lx = LEFT;
    for m in members.iter().map(|m| Some(m.as_str())).chain([None]) {
        let _ = write!(
            svg,
            "<rect x=\"{lx:.0}\" y=\"{0}\" width=\"12\" height=\"12\" fill=\"{1}\"/><text x=\"{2:.0}\" y=\"{3}\">{4}</text>",
            axis + 30.0,
            color(m),
            lx + 16.0,
            axis + 40.0,
            escape(m.unwrap_or("no leader"))
        );
        lx += 90.0;
    }
    let _ = write!(
        svg,
        "<text x=\"{lx:.0}\" y=\"{}\">bars: writes per 100 ms, coloured by the member that answered{}; red: from a fault to its recovery</text></svg>",
        axis + 40.0,
        if per_bar > 1 { format!(" (averaged over {} ms)", per_bar * 100) } else { String::new() }
    );
    svg
}

/// A tick step giving about ten ticks over `seconds`.
fn nice_step(seconds: f64) -> f64 {
    [
        1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
    ]
    .into_iter()
    .find(|s| seconds / s <= 12.0)
    .unwrap_or(7200.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_fall_in_their_100ms_bucket_with_the_member_that_answered_most() {
        let ack = |id, member: &str, acked| Ack {
            id,
            writer: 1,
            member: member.into(),
            timeline: 1,
            lsn: "0/1".into(),
            sent: acked - 10,
            acked,
            executed: None,
        };
        let acks = vec![
            ack(1, "n1", 10_000),
            ack(2, "n1", 20_000),
            ack(3, "n2", 150_000),
        ];
        let b = buckets(&acks, 300.0);
        assert_eq!(b.len(), 3);
        assert_eq!(b[0], (2, Some("n1".into())));
        assert_eq!(b[1], (1, Some("n2".into())));
        assert_eq!(b[2], (0, None));
        assert_eq!(escape("<a&b>"), "&lt;a&amp;b&gt;");
        assert_eq!(nice_step(30.0), 5.0);
    }
}
