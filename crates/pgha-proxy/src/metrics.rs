//! Per-listener counters, their serializable snapshot and Prometheus text rendering.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde::Serialize;

/// Upper bounds, in seconds, of the hold-time histogram's buckets: a failover or switchover
/// holds clients for tenths of a second to a few seconds; no hold outlasts `hold_timeout`.
pub const HOLD_BUCKETS: [f64; 10] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Live counters of one listener (all relaxed atomics; cheap to update per read).
#[derive(Debug, Default)]
pub struct ListenerMetrics {
    pub(crate) active: AtomicU64,
    pub(crate) total: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) held: AtomicU64,
    pub(crate) held_total: AtomicU64,
    pub(crate) hold_micros: AtomicU64,
    pub(crate) hold_timeouts: AtomicU64,
    /// Holds per bucket of [`HOLD_BUCKETS`] (each counted once, in the first bucket that
    /// takes it), and the last for longer ones.
    pub(crate) hold_buckets: [AtomicU64; HOLD_BUCKETS.len() + 1],
    pub(crate) rejected: AtomicU64,
    pub(crate) closed_on_change: AtomicU64,
    pub(crate) cancels: AtomicU64,
    pub(crate) cancels_unmatched: AtomicU64,
    pub(crate) cancel_forwards: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) tls_terminated: AtomicU64,
    pub(crate) scram_by_proxy: AtomicU64,
    pub(crate) scram_failed: AtomicU64,
}

impl ListenerMetrics {
    pub(crate) fn add_hold(&self, waited: Duration) {
        self.hold_micros
            .fetch_add(waited.as_micros() as u64, Relaxed);
        let seconds = waited.as_secs_f64();
        let bucket = HOLD_BUCKETS
            .iter()
            .position(|le| seconds <= *le)
            .unwrap_or(HOLD_BUCKETS.len());
        self.hold_buckets[bucket].fetch_add(1, Relaxed);
    }

    /// A consistent-enough copy of the counters.
    pub fn snapshot(&self, listener: &str) -> ListenerSnapshot {
        ListenerSnapshot {
            listener: listener.to_string(),
            active: self.active.load(Relaxed),
            total: self.total.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            held: self.held.load(Relaxed),
            held_total: self.held_total.load(Relaxed),
            hold_seconds_total: self.hold_micros.load(Relaxed) as f64 / 1e6,
            hold_timeouts: self.hold_timeouts.load(Relaxed),
            hold_buckets: self
                .hold_buckets
                .iter()
                .scan(0, |sum, b| {
                    *sum += b.load(Relaxed);
                    Some(*sum)
                })
                .collect(),
            rejected: self.rejected.load(Relaxed),
            closed_on_change: self.closed_on_change.load(Relaxed),
            cancels: self.cancels.load(Relaxed),
            cancels_unmatched: self.cancels_unmatched.load(Relaxed),
            cancel_forwards: self.cancel_forwards.load(Relaxed),
            errors: self.errors.load(Relaxed),
            tls_terminated: self.tls_terminated.load(Relaxed),
            scram_by_proxy: self.scram_by_proxy.load(Relaxed),
            scram_failed: self.scram_failed.load(Relaxed),
        }
    }
}

/// Counters of one listener at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ListenerSnapshot {
    /// `rw` or `ro`.
    pub listener: String,
    /// Client sessions open now (held ones included).
    pub active: u64,
    /// Client connections accepted since start.
    pub total: u64,
    /// Bytes from clients to backends.
    pub bytes_in: u64,
    /// Bytes from backends to clients.
    pub bytes_out: u64,
    /// Connections waiting for a target now.
    pub held: u64,
    /// Connections that had to wait for a target, since start.
    pub held_total: u64,
    /// Total time connections spent waiting for a target.
    pub hold_seconds_total: f64,
    /// Connections that got "no target" after `hold_timeout`.
    pub hold_timeouts: u64,
    /// Finished holds that took at most each of [`HOLD_BUCKETS`] (cumulative, as Prometheus
    /// counts), then all of them.
    pub hold_buckets: Vec<u64>,
    /// Connections refused because `max_client_conn` was reached.
    pub rejected: u64,
    /// Sessions closed because their backend stopped being a target (leader change).
    pub closed_on_change: u64,
    /// Cancel requests received (in plaintext, or inside TLS the proxy terminated; those sent
    /// inside TLS passed through are relayed unseen).
    pub cancels: u64,
    /// Cancel requests whose key matched no session whose key the proxy read: sent only to
    /// backends holding sessions with unreadable (TLS) keys, or dropped.
    pub cancels_unmatched: u64,
    /// CancelRequests sent to backends.
    pub cancel_forwards: u64,
    /// Client sessions that ended in an error (bad startup, backend failure, ...).
    pub errors: u64,
    /// Client connections whose TLS the proxy terminated (sessions and cancels).
    pub tls_terminated: u64,
    /// Clients the proxy authenticated itself with SCRAM (terminated TLS, SCRAM verifier).
    pub scram_by_proxy: u64,
    /// Clients the proxy refused in its own SCRAM exchange (wrong password, no such role,
    /// malformed or mis-bound exchange): PostgreSQL never sees these logins.
    pub scram_failed: u64,
}

/// Counters of every listener of a proxy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricsSnapshot {
    /// One entry per enabled listener.
    pub listeners: Vec<ListenerSnapshot>,
}

impl MetricsSnapshot {
    /// The snapshot of listener `name` (`rw` or `ro`).
    pub fn listener(&self, name: &str) -> Option<&ListenerSnapshot> {
        self.listeners.iter().find(|l| l.listener == name)
    }

    /// Prometheus text exposition format (version 0.0.4).
    pub fn render_prometheus(&self) -> String {
        type Get = fn(&ListenerSnapshot) -> f64;
        let families: [(&str, &str, &str, Get); 16] = [
            (
                "connections_active",
                "gauge",
                "Client sessions open now.",
                |l| l.active as f64,
            ),
            (
                "connections_total",
                "counter",
                "Client connections accepted.",
                |l| l.total as f64,
            ),
            (
                "connections_held",
                "gauge",
                "Connections waiting for a target.",
                |l| l.held as f64,
            ),
            (
                "held_total",
                "counter",
                "Connections that waited for a target.",
                |l| l.held_total as f64,
            ),
            (
                "hold_seconds_total",
                "counter",
                "Time spent waiting for a target.",
                |l| l.hold_seconds_total,
            ),
            (
                "hold_timeouts_total",
                "counter",
                "Connections refused after hold_timeout.",
                |l| l.hold_timeouts as f64,
            ),
            (
                "rejected_total",
                "counter",
                "Connections over max_client_conn.",
                |l| l.rejected as f64,
            ),
            (
                "closed_on_change_total",
                "counter",
                "Sessions closed on a target change.",
                |l| l.closed_on_change as f64,
            ),
            (
                "cancels_total",
                "counter",
                "Cancel requests the proxy read.",
                |l| l.cancels as f64,
            ),
            (
                "cancels_unmatched_total",
                "counter",
                "Cancel requests whose key matched no session with a readable key.",
                |l| l.cancels_unmatched as f64,
            ),
            (
                "cancel_forwards_total",
                "counter",
                "Cancel requests sent to backends.",
                |l| l.cancel_forwards as f64,
            ),
            (
                "errors_total",
                "counter",
                "Client sessions ended by an error.",
                |l| l.errors as f64,
            ),
            (
                "tls_terminated_total",
                "counter",
                "Client connections whose TLS the proxy terminated.",
                |l| l.tls_terminated as f64,
            ),
            (
                "scram_by_proxy_total",
                "counter",
                "Clients the proxy authenticated itself with SCRAM (terminated TLS).",
                |l| l.scram_by_proxy as f64,
            ),
            (
                "scram_failed_total",
                "counter",
                "Clients refused in the proxy's own SCRAM exchange (never seen by PostgreSQL).",
                |l| l.scram_failed as f64,
            ),
            (
                "bytes_total",
                "counter",
                "Bytes relayed, by direction.",
                |_| 0.0,
            ),
        ];
        let mut out = String::new();
        for (name, kind, help, get) in families {
            let _ = writeln!(out, "# HELP pgha_proxy_{name} {help}");
            let _ = writeln!(out, "# TYPE pgha_proxy_{name} {kind}");
            for l in &self.listeners {
                let lst = &l.listener;
                if name == "bytes_total" {
                    for (dir, v) in [("in", l.bytes_in), ("out", l.bytes_out)] {
                        let _ = writeln!(
                            out,
                            "pgha_proxy_{name}{{listener=\"{lst}\",direction=\"{dir}\"}} {v}"
                        );
                    }
                } else {
                    let _ = writeln!(out, "pgha_proxy_{name}{{listener=\"{lst}\"}} {}", get(l));
                }
            }
        }
        render_hold_histogram(&mut out, &self.listeners);
        out
    }
}

/// `pgha_proxy_hold_seconds`: how long connections waited for a target, as a histogram.
fn render_hold_histogram(out: &mut String, listeners: &[ListenerSnapshot]) {
    let name = "pgha_proxy_hold_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Time connections waited for a target (a failover or switchover holds them)."
    );
    let _ = writeln!(out, "# TYPE {name} histogram");
    for l in listeners {
        let lst = &l.listener;
        let bounds = HOLD_BUCKETS.iter().map(|b| b.to_string());
        for (le, count) in bounds.chain(["+Inf".to_string()]).zip(&l.hold_buckets) {
            let _ = writeln!(
                out,
                "{name}_bucket{{listener=\"{lst}\",le=\"{le}\"}} {count}"
            );
        }
        let count = l.hold_buckets.last().copied().unwrap_or(0);
        let _ = writeln!(
            out,
            "{name}_sum{{listener=\"{lst}\"}} {}",
            l.hold_seconds_total
        );
        let _ = writeln!(out, "{name}_count{{listener=\"{lst}\"}} {count}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = ListenerMetrics::default();
        m.total.fetch_add(3, Relaxed);
        m.bytes_in.fetch_add(10, Relaxed);
        m.add_hold(Duration::from_millis(1500));
        m.tls_terminated.fetch_add(2, Relaxed);
        m.scram_failed.fetch_add(4, Relaxed);
        let snap = MetricsSnapshot {
            listeners: vec![m.snapshot("rw")],
        };
        let text = snap.render_prometheus();
        assert!(text.contains("# TYPE pgha_proxy_connections_total counter"));
        assert!(text.contains("pgha_proxy_connections_total{listener=\"rw\"} 3\n"));
        assert!(text.contains("pgha_proxy_bytes_total{listener=\"rw\",direction=\"in\"} 10\n"));
        assert!(text.contains("pgha_proxy_hold_seconds_total{listener=\"rw\"} 1.5\n"));
        assert!(text.contains("pgha_proxy_tls_terminated_total{listener=\"rw\"} 2\n"));
        assert!(text.contains("# TYPE pgha_proxy_scram_failed_total counter"));
        assert!(text.contains("pgha_proxy_scram_failed_total{listener=\"rw\"} 4\n"));
        assert!(serde_json::to_string(&snap)
            .unwrap()
            .contains("\"bytes_in\":10"));
    }

    #[test]
    fn holds_are_a_cumulative_histogram() {
        let m = ListenerMetrics::default();
        for ms in [5, 80, 300, 300, 45_000] {
            m.add_hold(Duration::from_millis(ms));
        }
        let text = MetricsSnapshot {
            listeners: vec![m.snapshot("rw")],
        }
        .render_prometheus();
        assert!(text.contains("# TYPE pgha_proxy_hold_seconds histogram"));
        for (le, n) in [
            ("0.01", 1),
            ("0.05", 1),
            ("0.1", 2),
            ("0.25", 2),
            ("0.5", 4),
        ] {
            let line =
                format!("pgha_proxy_hold_seconds_bucket{{listener=\"rw\",le=\"{le}\"}} {n}\n");
            assert!(text.contains(&line), "{line} in\n{text}");
        }
        assert!(text.contains("pgha_proxy_hold_seconds_bucket{listener=\"rw\",le=\"30\"} 4\n"));
        assert!(text.contains("pgha_proxy_hold_seconds_bucket{listener=\"rw\",le=\"+Inf\"} 5\n"));
        assert!(text.contains("pgha_proxy_hold_seconds_count{listener=\"rw\"} 5\n"));
        assert!(text.contains("pgha_proxy_hold_seconds_sum{listener=\"rw\"} 45.685\n"));
    }
}
