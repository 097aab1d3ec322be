//! Write probe for bench/failover.sh: one INSERT every INTERVAL ms on one connection, one line
//! per attempt to OUT: `start_epoch_s end_epoch_s ok|fail`. On a failure the connection is
//! dropped and made again, re-resolving the target with RESOLVE (a shell command printing a
//! libpq URI, e.g. `pgha url --dir DIR`) when given. Runs until killed.
//!
//! Usage: write_probe URL_OR_- INTERVAL_MS OUT [RESOLVE]

use std::io::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn resolve(cmd: &str) -> Option<String> {
    let out = std::process::Command::new("sh")
        .args(["-c", cmd])
        .output()
        .ok()?;
    let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !url.is_empty()).then_some(url)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: write_probe URL_OR_- INTERVAL_MS OUT [RESOLVE]");
        std::process::exit(2);
    }
    let mut url = args[1].clone();
    let interval = Duration::from_millis(args[2].parse().expect("INTERVAL_MS"));
    let mut out = std::fs::File::create(&args[3]).expect("OUT");
    let resolver = args.get(4).cloned();
    if url == "-" {
        url = resolver
            .as_deref()
            .and_then(resolve)
            .expect("resolve the URL");
    }
    let mut client: Option<tokio_postgres::Client> = None;
    let mut next = Instant::now();
    loop {
        tokio::time::sleep_until(next.into()).await;
        next += interval;
        if next < Instant::now() {
            next = Instant::now();
        }
        let start = epoch();
        let ok = async {
            if client.as_ref().is_none_or(|c| c.is_closed()) {
                let (c, conn) = tokio::time::timeout(
                    Duration::from_secs(2),
                    tokio_postgres::connect(&url, tokio_postgres::NoTls),
                )
                .await
                .ok()?
                .ok()?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                c.batch_execute(
                    "CREATE TABLE IF NOT EXISTS write_probe(id bigserial PRIMARY KEY, at timestamptz DEFAULT now())",
                )
                .await
                .ok()?;
                client = Some(c);
            }
            let c = client.as_ref()?;
            tokio::time::timeout(
                Duration::from_secs(2),
                c.execute("INSERT INTO write_probe DEFAULT VALUES", &[]),
            )
            .await
            .ok()?
            .ok()
        }
        .await
        .is_some();
        if !ok {
            client = None;
            if let Some(cmd) = &resolver {
                if let Some(u) = resolve(cmd) {
                    url = u;
                }
            }
        }
        let end = epoch();
        let _ = writeln!(
            out,
            "{start:.3} {end:.3} {}",
            if ok { "ok" } else { "fail" }
        );
    }
}
