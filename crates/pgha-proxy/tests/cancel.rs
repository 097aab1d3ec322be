//! Cancels through the proxy as real clients send them: psycopg 3 with its bundled libpq (17 and
//! newer open the new API's cancel connection with the session's sslmode: SSLRequest first) and
//! the legacy API, psql 18 with protocol 3.2's longer keys, against PostgreSQL 15 without TLS and
//! PostgreSQL 18 with TLS, on both listeners. Needs what `scripts/install-deps.sh test` installs.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use pgha_testkit::free_port;
use serde_json::{json, Value};

/// A statement must end this soon after the cancel was asked for.
const CANCEL_WITHIN: Duration = Duration::from_secs(2);

struct Case {
    name: String,
    dsn: String,
    monitor: String,
    api: &'static str,
    wrong_key_first: bool,
}

fn direct(port: u16) -> String {
    format!("host=127.0.0.1 port={port} user=postgres dbname=postgres sslmode=disable")
}

fn case(
    listener: &str,
    proxy: std::net::SocketAddr,
    backend_port: u16,
    extra: &str,
    api: &'static str,
) -> Case {
    Case {
        name: format!("{listener} {api} {extra}"),
        dsn: format!("{} {extra}", conninfo(proxy)),
        monitor: direct(backend_port),
        api,
        wrong_key_first: false,
    }
}

/// Runs tests/cancel_clients.py over `cases`; returns its header (libpq version) and reports.
async fn run_clients(cases: &[Case]) -> (Value, Vec<Value>) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cancel_clients.py");
    let config = json!({
        "cases": cases.iter().map(|c| json!({
            "name": c.name, "dsn": c.dsn, "monitor": c.monitor, "api": c.api,
            "wrong_key_first": c.wrong_key_first,
        })).collect::<Vec<_>>()
    });
    let out = tokio::process::Command::new(test_python())
        .arg(script)
        .arg(config.to_string())
        .env_remove("PGHOST")
        .env_remove("PGPORT")
        .env_remove("PGSSLMODE")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(180), out)
        .await
        .expect("cancel_clients.py did not finish in 180 s")
        .expect("run cancel_clients.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cancel_clients.py failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines = stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap());
    let head = lines.next().expect("header line");
    let reports: Vec<Value> = lines.collect();
    assert_eq!(reports.len(), cases.len(), "{stdout}");
    eprintln!("{stdout}");
    (head, reports)
}

/// Every case's statement was running, and ended by the cancel (57014) within `CANCEL_WITHIN`;
/// a wrong key sent first had cancelled nothing.
fn check(cases: &[Case], reports: &[Value]) {
    let mut failures = Vec::new();
    for (c, r) in cases.iter().zip(reports) {
        let ok = r.get("error").is_none()
            && r["started"] == json!(true)
            && r["sqlstate"] == json!("57014")
            && r["seconds"]
                .as_f64()
                .is_some_and(|s| s < CANCEL_WITHIN.as_secs_f64())
            && (!c.wrong_key_first || r["after_wrong_key_running"] == json!(true));
        if !ok {
            failures.push(r.to_string());
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cancels failed:\n{}",
        failures.len(),
        reports.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_cancels_through_both_listeners() {
    let c = cluster();
    let p = TestProxy::start(c.targets(), |_| {}).await;
    let mut cases = Vec::new();
    for (listener, addr, port) in [("rw", p.rw, c.primary_port), ("ro", p.ro, c.standby_port)] {
        for sslmode in ["sslmode=prefer", "sslmode=disable"] {
            for api in ["safe", "legacy"] {
                cases.push(case(listener, addr, port, sslmode, api));
            }
        }
        // asyncio: cancelling the task makes psycopg send the cancel (new API) and wait.
        cases.push(case(listener, addr, port, "sslmode=prefer", "async"));
        // A client asking for 3.2 gets NegotiateProtocolVersion from PostgreSQL 15 through the
        // proxy; first a cancel with this session's pid and a wrong secret must cancel nothing.
        let mut wrong = case(
            listener,
            addr,
            port,
            "sslmode=prefer max_protocol_version=3.2",
            "safe",
        );
        wrong.wrong_key_first = true;
        wrong.name += " wrong-key-first";
        cases.push(wrong);
    }
    let started = Instant::now();
    let (head, reports) = run_clients_checked(cases).await;
    let libpq = head["libpq"].as_i64().unwrap();
    assert!(
        libpq >= 170_000,
        "psycopg's libpq {libpq} has no new cancel API"
    );
    for r in &reports {
        assert_eq!(r["ssl"], json!(false), "{r}");
        assert_eq!(r["protocol"], json!(30000), "{r}");
    }
    // Per listener: 5 right cancels, then the wrong-key case's 2 wrong ones and its right one.
    // No session's key was hidden (no TLS): each right one went to its owner only, the wrong
    // ones nowhere.
    let snap = p.metrics.snapshot();
    for listener in ["rw", "ro"] {
        let l = snap.listener(listener).unwrap();
        let counts = (l.cancels, l.cancels_unmatched, l.cancel_forwards);
        assert_eq!(counts, (8, 2, 6), "{listener}: {l:?}");
    }
    eprintln!("{} cases in {:?}", reports.len(), started.elapsed());
}

async fn run_clients_checked(cases: Vec<Case>) -> (Value, Vec<Value>) {
    let (head, reports) = run_clients(&cases).await;
    check(&cases, &reports);
    (head, reports)
}

/// Runs `select pg_sleep(30)` in psql (from `bin`), interrupts it once the backend runs it as
/// Ctrl-C would, and returns how long the statement took to end after that, and psql's stderr.
async fn psql_ctrl_c(bin: &Path, dsn: &str, monitor_port: u16) -> (Duration, String) {
    let app = format!("cancel-test-{}", free_port());
    let child = tokio::process::Command::new(bin.join("psql"))
        .arg(format!("{dsn} application_name={app}"))
        .args(["-X", "-c", "select pg_sleep(30)"])
        .env_remove("PGHOST")
        .env_remove("PGPORT")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn psql");
    let monitor = connect_direct(monitor_port).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n: i64 = monitor
            .query_one(
                "select count(*) from pg_stat_activity where application_name = $1 \
                 and state = 'active' and query like '%pg_sleep%'",
                &[&app],
            )
            .await
            .unwrap()
            .get(0);
        if n == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "psql's statement never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let asked = Instant::now();
    let pid = child.id().unwrap() as i32;
    unsafe { libc::kill(pid, libc::SIGINT) };
    // A lost cancel leaves the statement running: stop waiting (and psql) after 5 s.
    let out = tokio::time::timeout(Duration::from_secs(5), child.wait_with_output()).await;
    let took = asked.elapsed();
    match out {
        Ok(out) => (
            took,
            String::from_utf8_lossy(&out.unwrap().stderr).to_string(),
        ),
        Err(_) => {
            let stop =
                "select pg_cancel_backend(pid) from pg_stat_activity where application_name = $1";
            monitor.execute(stop, &[&app]).await.unwrap();
            (took, "(still running 5 s after Ctrl-C)".into())
        }
    }
}

async fn connect_direct(port: u16) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&direct(port), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// psql's `\conninfo` through `dsn`.
async fn psql_conninfo(bin: &Path, dsn: &str) -> String {
    let out = tokio::process::Command::new(bin.join("psql"))
        .arg(dsn)
        .args(["-X", "-c", "\\conninfo"])
        .env_remove("PGHOST")
        .env_remove("PGPORT")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Whether psql 18's `\conninfo` table has the row `name | value`.
fn conninfo_row(info: &str, name: &str, value: &str) -> bool {
    info.lines()
        .any(|l| l.split('|').map(str::trim).eq([name, value]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_3_2_and_tls_cancels_on_postgres_18() {
    let c = start_cluster_with(&ClusterOptions {
        name: "pg18",
        bin: pg18_bin(),
        ssl: true,
    });
    let p = TestProxy::start(c.targets(), |_| {}).await;
    let started = Instant::now();
    let listeners = [("rw", p.rw, c.primary_port), ("ro", p.ro, c.standby_port)];

    // psql 18, protocol 3.2 (32-byte keys), Ctrl-C: the legacy cancel, sent in plaintext. Then
    // direct TLS (sslnegotiation=direct: no SSLRequest) reaches the listener's backend.
    let mut psql_failures = Vec::new();
    for (listener, addr, port) in listeners {
        let dsn = format!(
            "{} sslmode=disable max_protocol_version=3.2",
            conninfo(addr)
        );
        let info = psql_conninfo(&c.bin, &dsn).await;
        assert!(conninfo_row(&info, "Protocol Version", "3.2"), "{info}");
        let (took, stderr) = psql_ctrl_c(&c.bin, &dsn, port).await;
        if !(stderr.contains("canceling statement due to user request") && took < CANCEL_WITHIN) {
            psql_failures.push(format!(
                "{listener}: psql's statement ended {took:?} after Ctrl-C: {stderr}"
            ));
        }
        // Direct TLS through the proxy (psql 18 against PostgreSQL 18).
        let direct_tls = format!("{} sslmode=require sslnegotiation=direct", conninfo(addr));
        let info = psql_conninfo(&c.bin, &direct_tls).await;
        let row = |name, value| conninfo_row(&info, name, value);
        let standby = if listener == "ro" { "on" } else { "off" };
        assert!(
            row("SSL Connection", "true") && row("Hot Standby", standby),
            "{info}"
        );
    }

    let mut cases = Vec::new();
    for (listener, addr, port) in listeners {
        // Protocol 3.2 in plaintext (the proxy reads the 32-byte key) and over TLS (it cannot).
        for mode in ["sslmode=disable", "sslmode=prefer"] {
            let extra = format!("{mode} max_protocol_version=3.2");
            for api in ["safe", "legacy"] {
                cases.push(case(listener, addr, port, &extra, api));
            }
            let mut wrong = case(listener, addr, port, &extra, "safe");
            wrong.wrong_key_first = true;
            wrong.name += " wrong-key-first";
            cases.push(wrong);
        }
        // Protocol 3.0 over TLS: the new API's cancel travels inside TLS.
        for api in ["safe", "legacy", "async"] {
            cases.push(case(listener, addr, port, "sslmode=require", api));
        }
        // Direct TLS (PostgreSQL 17+): no SSLRequest, the TLS handshake first; the new API's
        // cancel comes the same way.
        for api in ["safe", "legacy"] {
            let direct_tls = "sslmode=require sslnegotiation=direct";
            cases.push(case(listener, addr, port, direct_tls, api));
        }
    }
    let (head, reports) = run_clients(&cases).await;
    assert!(psql_failures.is_empty(), "{}", psql_failures.join("\n"));
    check(&cases, &reports);
    assert!(head["libpq"].as_i64().unwrap() >= 180_000, "{head}");
    for r in &reports {
        let name = r["name"].as_str().unwrap();
        let want_32 = name.contains("3.2");
        assert_eq!(
            r["protocol"],
            json!(if want_32 { 30002 } else { 30000 }),
            "{r}"
        );
        assert_eq!(r["ssl"], json!(!name.contains("disable")), "{r}");
    }
    eprintln!("PostgreSQL 18 cancels in {:?}", started.elapsed());
}
