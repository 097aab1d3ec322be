//! How long this member's promotions took, as a Prometheus histogram: from the step that
//! first saw the cluster without a leader to its PostgreSQL promoted (writable).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use pgha_core::EventKind;

/// Upper bounds of the buckets, in seconds (a last one, `+Inf`, counts every promotion).
pub const BUCKETS: [f64; 9] = [0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0];

/// The promotions of one kind.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Cumulative counts: `counts[i]` promotions took at most `BUCKETS[i]`; the last, all.
    pub counts: [u64; BUCKETS.len() + 1],
    pub sum_seconds: f64,
}

/// Per kind of promotion (failover, switchover, manual failover).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PromotionTimes(pub BTreeMap<&'static str, Histogram>);

impl PromotionTimes {
    pub fn record(&mut self, kind: EventKind, took: Duration) {
        let h = self.0.entry(kind.label()).or_default();
        let seconds = took.as_secs_f64();
        for (count, bound) in h
            .counts
            .iter_mut()
            .zip(BUCKETS.iter().chain([&f64::INFINITY]))
        {
            if seconds <= *bound {
                *count += 1;
            }
        }
        h.sum_seconds += seconds;
    }
}

/// The HELP and TYPE lines of the family, once for all members.
pub const FAMILY: &str = "pgha_failover_seconds";

/// Appends the histogram of every member in `members` (name, its times) to `out`.
pub fn render(out: &mut String, members: &[(String, PromotionTimes)]) {
    let _ = writeln!(
        out,
        "# HELP {FAMILY} Time from a member seeing the cluster without a leader to its \
         PostgreSQL promoted, per promotion it made, by kind (failover, switchover, \
         manual_failover).\n# TYPE {FAMILY} histogram"
    );
    for (member, times) in members {
        for (kind, h) in &times.0 {
            let bounds = BUCKETS.iter().map(|b| b.to_string());
            for (le, count) in bounds.chain(["+Inf".to_string()]).zip(&h.counts) {
                let _ = writeln!(
                    out,
                    "{FAMILY}_bucket{{member=\"{member}\",kind=\"{kind}\",le=\"{le}\"}} {count}"
                );
            }
            let labels = format!("member=\"{member}\",kind=\"{kind}\"");
            let _ = writeln!(out, "{FAMILY}_sum{{{labels}}} {}", h.sum_seconds);
            let _ = writeln!(
                out,
                "{FAMILY}_count{{{labels}}} {}",
                h.counts[BUCKETS.len()]
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promotions_fill_cumulative_buckets_per_kind() {
        let mut times = PromotionTimes::default();
        times.record(EventKind::Failover, Duration::from_millis(1500));
        times.record(EventKind::Failover, Duration::from_millis(400));
        times.record(EventKind::Switchover, Duration::from_secs(90));
        let mut out = String::new();
        render(&mut out, &[("n2".into(), times)]);
        assert!(
            out.contains("# TYPE pgha_failover_seconds histogram"),
            "{out}"
        );
        let line = |s: &str| out.lines().any(|l| l == s);
        assert!(line(
            r#"pgha_failover_seconds_bucket{member="n2",kind="failover",le="0.25"} 0"#
        ));
        assert!(line(
            r#"pgha_failover_seconds_bucket{member="n2",kind="failover",le="0.5"} 1"#
        ));
        assert!(line(
            r#"pgha_failover_seconds_bucket{member="n2",kind="failover",le="2"} 2"#
        ));
        assert!(line(
            r#"pgha_failover_seconds_count{member="n2",kind="failover"} 2"#
        ));
        assert!(line(
            r#"pgha_failover_seconds_sum{member="n2",kind="failover"} 1.9"#
        ));
        assert!(line(
            r#"pgha_failover_seconds_bucket{member="n2",kind="switchover",le="60"} 0"#
        ));
        assert!(line(
            r#"pgha_failover_seconds_bucket{member="n2",kind="switchover",le="+Inf"} 1"#
        ));
    }

    #[test]
    fn kinds_are_labelled_as_the_history_names_them() {
        for kind in [
            EventKind::Failover,
            EventKind::Switchover,
            EventKind::ManualFailover,
        ] {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.label());
        }
    }
}
