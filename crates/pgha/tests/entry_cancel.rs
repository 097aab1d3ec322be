//! Issue 12: cancels from libpq 17+ (its new cancel API opens the cancel connection with the
//! session's sslmode, so inside TLS) reach the session they cancel through `pgha up`'s entry
//! points with default settings, on the read-write listener and on the read-only one with two
//! standbys: the proxy terminates TLS by default and reads each cancel's key. Driven with
//! psycopg 3 (its bundled libpq 18) using the URI `pgha url` gives.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;

/// psycopg's Python that `scripts/install-deps.sh test` set up.
fn python() -> PathBuf {
    let cache = std::env::var_os("PGHA_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/pgha"));
    let python = cache.join("venv/bin/python3");
    assert!(
        python.exists(),
        "psycopg's Python not found at {}: run scripts/install-deps.sh test",
        python.display()
    );
    python
}

/// Runs `SELECT pg_sleep(30)` through `dsn` ROUNDS times, cancelling each with
/// `cancel_safe()` (libpq's new cancel API) once it runs; prints, per round, the server that
/// ran it and how long the statement took to end after the cancel.
const CANCEL: &str = r#"
import sys, threading, time, psycopg
dsn, rounds = sys.argv[1], int(sys.argv[2])
for _ in range(rounds):
    with psycopg.connect(dsn, autocommit=True) as conn:
        port = conn.execute("select current_setting('port')").fetchone()[0]
        ended = {}
        def run():
            try:
                conn.execute("select pg_sleep(30)")
                ended["how"] = "finished"
            except psycopg.errors.QueryCanceled:
                ended["how"] = "cancelled"
            ended["at"] = time.monotonic()
        t = threading.Thread(target=run)
        t.start()
        time.sleep(1.0)
        sent = time.monotonic()
        conn.cancel_safe()
        t.join(40)
        print(port, ended.get("how"), round(ended.get("at", sent + 99) - sent, 3), flush=True)
"#;

#[test]
fn new_api_cancels_reach_their_session_on_both_entry_points() {
    let tmp = test_dir();
    let dir = tmp.path().join("cancels");
    let up = UpProcess::start(&dir, 3);
    let out = pgha(&["url", "--dir", dir.to_str().unwrap()]);
    let rw = pgha_testkit::succeeded("pgha url", &out).trim().to_string();
    let ro = rw.replace(&format!(":{}/", up.base), &format!(":{}/", up.base + 1));
    for (listener, dsn, rounds) in [("read-write", &rw, 2), ("read-only", &ro, 6)] {
        let out = Command::new(python())
            .args(["-c", CANCEL, dsn, &rounds.to_string()])
            .output()
            .unwrap();
        let report = pgha_testkit::succeeded(&format!("psycopg through {listener}"), &out);
        let lines: Vec<&str> = report.lines().collect();
        assert_eq!(lines.len(), rounds, "{report}");
        for line in &lines {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let took: f64 = fields[2].parse().unwrap();
            assert!(
                fields[1] == "cancelled" && took < 5.0,
                "a cancel through the {listener} entry point was lost: {report}"
            );
        }
        if listener == "read-only" {
            let ports: std::collections::BTreeSet<&str> = lines
                .iter()
                .map(|l| l.split_whitespace().next().unwrap())
                .collect();
            assert_eq!(
                ports.len(),
                2,
                "the read-only sessions did not land on both standbys, so the routing of their cancels is untested: {report}"
            );
        }
    }
}
