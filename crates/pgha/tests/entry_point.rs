//! The read-write entry point (pgha's proxy) through a switchover and a failover: clients
//! opening a new connection per write are never refused, only held for a bounded time, and
//! the read-only entry point never accepts a write.
// The serial() guard is held for a whole test on purpose: it orders tests that each run a
// cluster, it guards no data an await could race on.
#![allow(clippy::await_holding_lock)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use pgha_testkit::{assert_read_only, connect, wait_until};

/// What the writer saw.
#[derive(Default, Debug)]
struct Seen {
    /// Connections refused: an OS-level refusal or an ErrorResponse at connect.
    refused: Vec<String>,
    /// Connections whose startup was cut because the leader changed at that very moment
    /// (the proxy closes sessions to a backend that stopped being the primary).
    cut_in_startup: usize,
    /// Writes that failed after connecting (a session closed by a leader change).
    failed_writes: usize,
    acknowledged: Vec<i64>,
    /// Longest time a connection took to be established.
    longest_connect: Duration,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_are_held_not_refused_through_switchover_and_failover() {
    let up = UpProcess::start_in_temp(3);
    let dir = up.dir.clone();
    let rw = up.url(None);
    let setup = connect(&rw).await;
    setup
        .batch_execute("CREATE TABLE ticks(id bigint PRIMARY KEY)")
        .await
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let writer = tokio::spawn({
        let (stop, seen, rw) = (stop.clone(), seen.clone(), rw.clone());
        async move {
            let mut id = 0i64;
            while !stop.load(Ordering::Relaxed) {
                id += 1;
                let started = Instant::now();
                match tokio_postgres::connect(&rw, tokio_postgres::NoTls).await {
                    // Closed or reset mid-startup (not refused, no ErrorResponse).
                    Err(e) if e.code().is_none() && !e.to_string().contains("connecting") => {
                        seen.lock().unwrap().cut_in_startup += 1
                    }
                    Err(e) => seen.lock().unwrap().refused.push(e.to_string()),
                    Ok((client, conn)) => {
                        let took = started.elapsed();
                        tokio::spawn(conn);
                        let ok = client
                            .execute("INSERT INTO ticks VALUES ($1)", &[&id])
                            .await
                            .is_ok();
                        let mut s = seen.lock().unwrap();
                        s.longest_connect = s.longest_connect.max(took);
                        if ok {
                            s.acknowledged.push(id);
                        } else {
                            s.failed_writes += 1;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let out = pgha(&["switchover", "--dir", dir.to_str().unwrap(), "--to", "n2"]);
    assert!(out.status.success(), "switchover: {}", stderr_of(&out));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let out = pgha(&["stop", "--dir", dir.to_str().unwrap(), "n2"]);
    assert!(out.status.success(), "stop: {}", stderr_of(&out));
    // Writes flow again on the new primary.
    let before = seen.lock().unwrap().acknowledged.len();
    wait_until("writes after the failover", Duration::from_secs(30), || {
        (seen.lock().unwrap().acknowledged.len() > before + 5).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();

    let seen = seen.lock().unwrap();
    assert!(
        seen.refused.is_empty(),
        "connections refused during the changes: {:?}",
        seen.refused
    );
    // At most the sessions in startup at each of the two leader changes.
    assert!(
        seen.cut_in_startup <= 4,
        "too many sessions cut in startup: {}",
        seen.cut_in_startup
    );
    assert!(
        seen.longest_connect < Duration::from_secs(10),
        "held too long: {:?}",
        seen.longest_connect
    );
    // Every acknowledged write is on the new primary.
    let primary = connect(&up.url(None)).await;
    let rows = primary.query("SELECT id FROM ticks", &[]).await.unwrap();
    let present: std::collections::HashSet<i64> = rows.iter().map(|r| r.get(0)).collect();
    let lost: Vec<i64> = seen
        .acknowledged
        .iter()
        .copied()
        .filter(|id| !present.contains(id))
        .collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    eprintln!(
        "acknowledged {}, failed in flight {}, cut in startup {}, longest connect {:?}",
        seen.acknowledged.len(),
        seen.failed_writes,
        seen.cut_in_startup,
        seen.longest_connect
    );

    // The read-only entry point never accepts a write.
    let ro = rw.replace(&format!(":{}/", up.base), &format!(":{}/", up.base + 1));
    let reader = connect(&ro).await;
    assert_read_only(&reader, "INSERT INTO ticks VALUES (-1)").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_runs_through_the_entry_point() {
    let up = UpProcess::start_in_temp(2);
    let rw = up.url(None);
    let run = |args: &[&str]| {
        std::process::Command::new("pgbench")
            .args(args)
            .arg(&rw)
            .output()
            .expect("pgbench is installed by test.sh (postgresql-contrib)")
    };
    let init = run(&["-i", "-s", "1", "-q"]);
    assert!(
        init.status.success(),
        "pgbench -i: {}",
        String::from_utf8_lossy(&init.stderr)
    );
    let out = run(&["-c", "4", "-j", "2", "-T", "3", "-n"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "pgbench: {}{}",
        text,
        String::from_utf8_lossy(&out.stderr)
    );
    let tps: f64 = text
        .lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse().ok())
        .expect("pgbench prints tps");
    assert!(tps > 10.0, "pgbench through the proxy: {tps} tps\n{text}");
    assert!(text.contains("number of failed transactions: 0"), "{text}");
}
