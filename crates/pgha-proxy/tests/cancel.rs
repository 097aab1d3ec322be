//! Cancels through the proxy as real clients send them: psycopg 3 with its bundled libpq (17 and
//! newer open the new API's cancel connection with the session's sslmode: SSLRequest first) and
//! the legacy API, psql 18 with protocol 3.2's longer keys, against PostgreSQL 15 without TLS and
//! PostgreSQL 18 with TLS, on both listeners. Needs what `scripts/install-deps.sh test` installs.

mod common;

use std::time::Instant;

use common::clients::*;
use common::*;
use serde_json::{json, Value};

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
