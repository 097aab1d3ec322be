//! Median, 95th percentile and maximum of a set of durations (nearest rank).

use serde::Serialize;

/// A distribution's summary, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Spread {
    pub n: usize,
    pub median_ms: f64,
    pub p95_ms: f64,
    pub max_ms: f64,
}

impl Spread {
    /// The spread of `values_ms`; all zero (n = 0) when empty.
    pub fn of(values_ms: &[f64]) -> Spread {
        if values_ms.is_empty() {
            return Spread::default();
        }
        let mut v = values_ms.to_vec();
        v.sort_by(f64::total_cmp);
        Spread {
            n: v.len(),
            median_ms: rank(&v, 0.5),
            p95_ms: rank(&v, 0.95),
            max_ms: v[v.len() - 1],
        }
    }

    /// `median / p95 / max` in seconds, or `-` with no value.
    pub fn seconds(&self) -> String {
        if self.n == 0 {
            return "-".into();
        }
        format!(
            "{:.2} / {:.2} / {:.2}",
            self.median_ms / 1000.0,
            self.p95_ms / 1000.0,
            self.max_ms / 1000.0
        )
    }
}

/// The nearest-rank `q` quantile of sorted `v`.
fn rank(v: &[f64], q: f64) -> f64 {
    let k = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[k - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let s = Spread::of(&[5.0, 1.0, 3.0, 2.0, 4.0]);
        assert_eq!((s.n, s.median_ms, s.p95_ms, s.max_ms), (5, 3.0, 5.0, 5.0));
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = Spread::of(&v);
        assert_eq!((s.median_ms, s.p95_ms, s.max_ms), (50.0, 95.0, 100.0));
        assert_eq!(Spread::of(&[]).seconds(), "-");
        assert_eq!(Spread::of(&[1500.0]).seconds(), "1.50 / 1.50 / 1.50");
    }
}
