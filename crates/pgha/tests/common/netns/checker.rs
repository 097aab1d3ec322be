//! The checker: writers through the proxy, a multi-host URI and each member's host.

use super::*;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgha_testkit::{connect_within, run_sql, simple_rows, small_runtime, wait_until};

struct Attempt {
    ack: Option<Ack>,
}

/// Writer threads: through the proxy, through the multi-host conninfo, and on each member's
/// own host (a local application: it still reaches its PostgreSQL when the host is cut off).
pub struct Checker {
    origin: Instant,
    attempts: Arc<Mutex<Vec<Attempt>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    marks: Mutex<Vec<(String, Instant)>>,
    members_by_ip: BTreeMap<String, String>,
}

/// A write is attempted every this often by each writer.
pub const WRITE_EVERY: Duration = Duration::from_millis(50);
/// How long a writer waits for an answer before it gives up on the session.
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);

impl Checker {
    /// With `patient`, one more writer on each member's host waits that long for each answer
    /// (as an application without a statement timeout does): it sees the answers a stalled
    /// server delivers late, which the others have given up on after [`WRITE_TIMEOUT`].
    pub(super) fn start(c: &Cluster, patient: Option<Duration>) -> Checker {
        let leader = c.wait_converged(Duration::from_secs(60));
        run_sql(
            &c.member(&leader).conninfo(),
            "CREATE TABLE IF NOT EXISTS pgha_checker(id bigint PRIMARY KEY, writer text NOT NULL, \
             member text NOT NULL DEFAULT host(inet_server_addr()), at timestamptz DEFAULT clock_timestamp())",
        )
        .unwrap_or_else(|e| panic!("create the checker table on {leader}: {e}"));
        let origin = Instant::now();
        let attempts: Arc<Mutex<Vec<Attempt>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let ids = Arc::new(AtomicU64::new(1));
        let client_ns = c.net.host("client").ns.clone();
        let mut writers: Vec<(String, String, String, Duration)> = vec![
            (
                "proxy".into(),
                client_ns.clone(),
                c.proxy_conninfo(),
                WRITE_TIMEOUT,
            ),
            (
                "multihost".into(),
                client_ns,
                c.multi_host_conninfo(),
                WRITE_TIMEOUT,
            ),
        ];
        // one on each member's host, and with `patient` one more that waits that long
        let mut locals = vec![("local-", WRITE_TIMEOUT)];
        locals.extend(patient.map(|p| ("patient-local-", p)));
        for (prefix, timeout) in locals {
            for m in &c.members {
                let name = format!("{prefix}{}", m.name);
                writers.push((name, m.host.ns.clone(), m.conninfo(), timeout));
            }
        }
        let members_by_ip: BTreeMap<String, String> = c
            .members
            .iter()
            .map(|m| (m.host.ip.clone(), m.name.clone()))
            .collect();
        let threads = writers
            .into_iter()
            .map(|(writer, ns, conninfo, timeout)| {
                let (attempts, stop, ids, by_ip) = (
                    attempts.clone(),
                    stop.clone(),
                    ids.clone(),
                    members_by_ip.clone(),
                );
                std::thread::spawn(move || {
                    enter_netns(&ns).expect("setns into the writer's host");
                    small_runtime().block_on(write_loop(
                        writer, conninfo, timeout, attempts, stop, ids, by_ip,
                    ));
                })
            })
            .collect();
        Checker {
            origin,
            attempts,
            stop,
            threads,
            marks: Mutex::new(Vec::new()),
            members_by_ip,
        }
    }

    /// Records an event (printed in the report with its time).
    pub fn mark(&self, label: &str) {
        eprintln!("[{} ms] {label}", self.origin.elapsed().as_millis());
        self.marks
            .lock()
            .unwrap()
            .push((label.to_string(), Instant::now()));
    }

    pub fn ms(&self, t: Instant) -> i64 {
        t.duration_since(self.origin).as_millis() as i64
    }

    /// Acknowledgements so far.
    pub fn acks(&self) -> Vec<Ack> {
        self.attempts
            .lock()
            .unwrap()
            .iter()
            .filter_map(|a| a.ack.clone())
            .collect()
    }

    /// The first acknowledgement by `member` at or after `after`.
    pub fn first_ack_by(&self, member: &str, after: Instant) -> Option<Instant> {
        self.acks()
            .iter()
            .filter(|a| a.member == member && a.acked >= after)
            .map(|a| a.acked)
            .min()
    }

    /// Waits until `member` acknowledged at least `n` writes after `after`.
    pub fn wait_acks(&self, member: &str, after: Instant, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let count = self
                .acks()
                .iter()
                .filter(|a| a.member == member && a.acked >= after)
                .count();
            if count >= n {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Stops the writers, waits for the cluster to converge, and compares what was
    /// acknowledged with what the final primary holds.
    pub fn finish(mut self, c: &Cluster, converge: Duration) -> Report {
        let stopping = Instant::now();
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.mark(&format!(
            "writers stopped ({} ms to end their last write)",
            stopping.elapsed().as_millis()
        ));
        let final_primary = c.wait_converged(converge);
        self.mark(&format!(
            "converged: {final_primary} primary, every other member streaming"
        ));
        let attempts = std::mem::take(&mut *self.attempts.lock().unwrap());
        let mut acks: Vec<Ack> = attempts.iter().filter_map(|a| a.ack.clone()).collect();
        acks.sort_by_key(|a| a.acked);
        let present: BTreeSet<u64> = wait_until(
            "the checker table on the final primary",
            Duration::from_secs(30),
            || {
                let rows = c.sql(&final_primary, "SELECT id FROM pgha_checker").ok()?;
                Some(
                    rows.iter()
                        .filter_map(|r| r[0].as_deref()?.parse().ok())
                        .collect(),
                )
            },
        );
        let ms = |t: Instant| t.duration_since(self.origin).as_millis() as i64;
        let mut report = Report {
            attempts: attempts.len(),
            acked: acks.len(),
            final_primary,
            origin: Some(self.origin),
            ..Report::default()
        };
        for a in &acks {
            *report.acked_by_member.entry(a.member.clone()).or_default() += 1;
            *report.acked_by_writer.entry(a.writer.clone()).or_default() += 1;
        }
        let mut first: BTreeMap<&str, Instant> = BTreeMap::new();
        let mut last: BTreeMap<&str, Instant> = BTreeMap::new();
        for a in &acks {
            first.entry(&a.member).or_insert(a.acked);
            last.insert(&a.member, a.acked);
        }
        let mut order: Vec<(&str, Instant)> = first.iter().map(|(m, t)| (*m, *t)).collect();
        order.sort_by_key(|(_, t)| *t);
        report.members_in_order = order
            .iter()
            .map(|(m, t)| (m.to_string(), ms(*t), ms(last[m])))
            .collect();
        let (two_writers, late_acks) = judge_writers(&acks, &present, ms);
        report.two_writers = two_writers;
        report.late_acks = late_acks;
        report.lost = acks
            .iter()
            .filter(|a| !present.contains(&a.id))
            .cloned()
            .collect();
        report.lost.sort_by_key(|a| a.id);
        for a in &acks {
            if let Some(off) = a.server_clock_off_us() {
                let e = report
                    .server_clock_off
                    .entry(a.member.clone())
                    .or_insert((0, 0));
                e.0 += 1;
                if off.abs() > e.1.abs() {
                    e.1 = off;
                }
            }
        }
        let mut prev = self.origin;
        for a in &acks {
            let gap = ms(a.acked) - ms(prev);
            if gap > report.longest_gap_ms {
                report.longest_gap_ms = gap;
                report.longest_gap_from_ms = ms(prev);
            }
            prev = prev.max(a.acked);
        }
        report.marks = self
            .marks
            .lock()
            .unwrap()
            .iter()
            .map(|(l, t)| (l.clone(), ms(*t)))
            .collect();
        let _ = &self.members_by_ip;
        report
    }
}

impl Drop for Checker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

async fn write_loop(
    writer: String,
    conninfo: String,
    timeout: Duration,
    attempts: Arc<Mutex<Vec<Attempt>>>,
    stop: Arc<AtomicBool>,
    ids: Arc<AtomicU64>,
    by_ip: BTreeMap<String, String>,
) {
    let mut client: Option<tokio_postgres::Client> = None;
    let mut next = tokio::time::Instant::now();
    while !stop.load(Ordering::SeqCst) {
        tokio::time::sleep_until(next).await;
        next = tokio::time::Instant::now().max(next) + WRITE_EVERY;
        if client.as_ref().is_none_or(|c| c.is_closed()) {
            client = connect_within(&conninfo, Duration::from_secs(4)).await.ok();
        }
        let Some(c) = &client else {
            continue;
        };
        let id = ids.fetch_add(1, Ordering::SeqCst);
        let sql = format!(
            "INSERT INTO pgha_checker(id, writer) VALUES ({id}, '{writer}') \
             RETURNING member, (extract(epoch FROM at) * 1000000)::bigint, \
             pg_walfile_name(pg_current_wal_insert_lsn())"
        );
        let (sent, sent_us) = (Instant::now(), wall_us());
        let result = tokio::time::timeout(timeout, c.simple_query(&sql)).await;
        let (acked, acked_us) = (Instant::now(), wall_us());
        let read_only = matches!(&result, Ok(Err(e))
            if e.code() == Some(&tokio_postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION));
        let ack = match result {
            Ok(Ok(msgs)) => simple_rows(msgs).first().and_then(|r| {
                let ip = r.first().cloned().flatten()?;
                Some(Ack {
                    id,
                    writer: writer.clone(),
                    member: by_ip.get(&ip).cloned().unwrap_or(ip),
                    sent,
                    acked,
                    sent_us,
                    acked_us,
                    executed_us: r.get(1).cloned().flatten().and_then(|v| v.parse().ok()),
                    timeline: r
                        .get(2)
                        .cloned()
                        .flatten()
                        .and_then(|f| u32::from_str_radix(f.get(..8)?, 16).ok()),
                })
            }),
            _ => None,
        };
        // Timed out or broken: a new connection finds the primary again. A local writer keeps
        // its session on a standby (it can write once that standby is promoted).
        if ack.is_none() && !(read_only && writer.contains("local-")) {
            client = None;
        }
        attempts.lock().unwrap().push(Attempt { ack });
    }
}
