//! The proxy terminating TLS with its own certificate (issue 11), in front of PostgreSQL 18
//! members whose certificates come from a pgha cluster CA: real clients (psql 15 and 18,
//! psycopg 3 with its bundled libpq 18) verify the proxy's name (`sslmode=verify-full`, direct
//! TLS too), the proxy verifies each member's, cancels sent inside TLS reach the session's own
//! backend on both listeners (the read-only one with two standbys, sessions of a SCRAM role
//! the proxy authenticated itself, with libpq's default settings), and `require` turns
//! plaintext clients away. SCRAM through the proxy: tests/tls_scram.rs. Needs what
//! `scripts/install-deps.sh test` installs.

mod common;

use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::ca_cluster::{start_ca_cluster, CaCluster, APP_PASSWORD, PROXY_HOST};
use common::clients::*;
use common::*;
use serde_json::{json, Value};

fn cluster() -> &'static CaCluster {
    static CLUSTER: OnceLock<CaCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| start_ca_cluster("pg18-ca", &pg18_bin(), 2))
}

/// psql from `bin` as [`psql_as`] with the SCRAM role's password.
async fn psql(bin: &Path, conninfo: &str, commands: &[&str]) -> (bool, String, String, Duration) {
    psql_as(bin, conninfo, APP_PASSWORD, commands).await
}

const BACKEND_TLS: &str =
    "select pg_is_in_recovery(), ssl from pg_stat_ssl where pid = pg_backend_pid()";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_verify_the_proxy_and_the_proxy_verifies_members() {
    let c = cluster();
    let p = c.terminating_proxy(false).await;
    let psql15 = Path::new(PG_BIN);
    let mut sessions = 0;
    for (listener, addr, recovery) in [("rw", p.rw, "f"), ("ro", p.ro, "t")] {
        let verified = format!("{} user=postgres", c.verify_full(addr));
        let direct_tls = format!("{verified} sslnegotiation=direct");
        let plain = format!("{} sslmode=disable", conninfo(addr));
        for (bin, info) in [
            (psql15, &verified),
            (c.bin.as_path(), &verified),
            (c.bin.as_path(), &direct_tls),
            (c.bin.as_path(), &plain),
        ] {
            let (ok, out, err, _) = psql(bin, info, &["\\conninfo", BACKEND_TLS]).await;
            sessions += 1;
            let client_tls = out.contains("SSL connection (protocol")
                || conninfo_row(&out, "SSL Connection", "true");
            let want_tls = !info.contains("sslmode=disable");
            // The last line is the member's own view: this session reached it over TLS.
            assert!(
                ok && out.trim_end().ends_with(&format!("{recovery}|t")) && client_tls == want_tls,
                "{listener} {} {info}: {out}{err}",
                bin.display()
            );
        }
        // The client checks the proxy's name, not a member's: another name is refused.
        let other = c
            .verify_full(addr)
            .replace(PROXY_HOST, "n1")
            .replace("dbname", "user=postgres dbname");
        let (ok, _, err, _) = psql(psql15, &other, &["select 1"]).await;
        assert!(!ok && err.contains("does not match host name"), "{err}");
    }
    let snap = p.metrics.snapshot();
    let terminated: u64 = snap.listeners.iter().map(|l| l.tls_terminated).sum();
    assert!(terminated >= sessions - 2, "{snap:?}");
    assert!(p
        .metrics
        .render_prometheus()
        .contains("pgha_proxy_tls_terminated_total{listener=\"ro\"}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_certificate_names_another_is_never_used() {
    let c = cluster();
    let mut tls = c.proxy_tls.clone();
    tls.require = false;
    // n1's address published under n2's name: n1's certificate does not name n2.
    let mut targets = c.targets();
    targets.rw = Some(pgha_proxy::Backend::new("n2", c.backend(0).addr));
    let p = TestProxy::start(targets, |cfg| {
        cfg.tls = Some(tls);
        cfg.hold_timeout = Duration::from_secs(2);
    })
    .await;
    let info = format!("{} user=postgres", c.verify_full(p.rw));
    let (ok, _, err, took) = psql(&c.bin, &info, &["select 1"]).await;
    assert!(!ok && err.contains("no primary available"), "{err}");
    assert!(took < Duration::from_secs(10), "{took:?}");
}

fn tls_case(
    c: &CaCluster,
    listener: &str,
    addr: std::net::SocketAddr,
    extra: &str,
    api: &'static str,
) -> Case {
    let monitor = match listener {
        "rw" => direct(c.port(0)),
        _ => direct(0).replace("port=0", "port={port}"),
    };
    Case {
        name: format!("{listener} {api} {extra}"),
        dsn: format!(
            "{} user=app password={APP_PASSWORD} {extra}",
            c.verify_full(addr)
        ),
        monitor,
        api,
        wrong_key_first: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancels_inside_tls_reach_the_sessions_backend() {
    let c = cluster();
    let p = c.terminating_proxy(false).await;
    let started = Instant::now();
    let mut cases = Vec::new();
    for (listener, addr) in [("rw", p.rw), ("ro", p.ro)] {
        for api in ["safe", "legacy", "async", "copy"] {
            cases.push(tls_case(c, listener, addr, "", api));
        }
        // The read-only listener has two standbys: new-API cancels (inside TLS) from sessions
        // on each of them.
        for _ in 0..3 {
            cases.push(tls_case(c, listener, addr, "", "safe"));
        }
        cases.push(tls_case(c, listener, addr, "sslnegotiation=direct", "safe"));
        cases.push(tls_case(
            c,
            listener,
            addr,
            "sslnegotiation=direct",
            "async",
        ));
        let mut wrong = tls_case(c, listener, addr, "max_protocol_version=3.2", "safe");
        wrong.wrong_key_first = true;
        wrong.name += " wrong-key-first";
        cases.push(wrong);
        let plain = tls_case(c, listener, addr, "", "safe");
        cases.push(Case {
            name: plain.name + " sslmode=disable",
            dsn: format!("{} sslmode=disable", conninfo(addr)),
            ..plain
        });
    }
    let (head, reports) = run_clients(&cases).await;
    check(&cases, &reports);
    assert!(head["libpq"].as_i64().unwrap() >= 180_000, "{head}");
    let mut ro_ports = Vec::new();
    for r in &reports {
        let name = r["name"].as_str().unwrap();
        assert_eq!(r["ssl"], json!(!name.contains("disable")), "{r}");
        let want = if name.contains("3.2") { 30002 } else { 30000 };
        assert_eq!(r["protocol"], json!(want), "{r}");
        if name.starts_with("ro") {
            ro_ports.push(r["port"].as_u64().unwrap() as u16);
        }
    }
    for standby in [c.port(1), c.port(2)] {
        assert!(
            ro_ports.contains(&standby),
            "no session on {standby}: {ro_ports:?}"
        );
    }
    // Every right cancel went to its owner only; the wrong key (sent in plaintext; after
    // SSLRequest the proxy answered 'S' and the script stopped) went nowhere.
    let snap = p.metrics.snapshot();
    let per_listener = (cases.len() / 2) as u64;
    for listener in ["rw", "ro"] {
        let l = snap.listener(listener).unwrap();
        let counts = (l.cancels, l.cancels_unmatched, l.cancel_forwards);
        assert_eq!(
            counts,
            (per_listener + 1, 1, per_listener),
            "{listener}: {l:?}"
        );
        // Every session inside TLS was authenticated by the proxy (default channel_binding).
        assert_eq!(l.scram_by_proxy, per_listener - 1, "{listener}: {l:?}");
    }
    eprintln!("{} cases in {:?}", reports.len(), started.elapsed());
}

/// Without termination (TLS passed through), the same new-API cancel on the read-only listener
/// with two standbys is lost: its connection goes to the least-loaded standby, the one without
/// the session. This is what termination fixes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_loses_tls_cancels_on_the_ro_listener_with_two_standbys() {
    let c = cluster();
    let p = TestProxy::start(c.targets(), |_| {}).await;
    let case = Case {
        name: "ro safe passthrough".into(),
        dsn: format!("{} sslmode=require", conninfo(p.ro)),
        monitor: direct(0).replace("port=0", "port={port}"),
        api: "safe",
        wrong_key_first: false,
    };
    let (_, reports) = run_clients(std::slice::from_ref(&case)).await;
    let r: &Value = &reports[0];
    assert_eq!(r["ssl"], json!(true), "{r}");
    assert_eq!(r["started"], json!(true), "{r}");
    assert_ne!(
        r["sqlstate"],
        json!("57014"),
        "cancel reached the session: {r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_refuses_plaintext_clients_but_not_their_cancels() {
    let c = cluster();
    let p = c.terminating_proxy(true).await;
    let plain = format!("{} sslmode=disable", conninfo(p.rw));
    let (ok, _, err, _) = psql(&c.bin, &plain, &["select 1"]).await;
    assert!(!ok && err.contains("accepts TLS connections only"), "{err}");
    let prefer = format!("{} sslmode=prefer", conninfo(p.rw));
    let (ok, out, err, _) = psql(&c.bin, &prefer, &[BACKEND_TLS]).await;
    assert!(ok && out.trim() == "f|t", "{out}{err}");
    // psql's Ctrl-C sends the legacy cancel in plaintext, whatever the session's TLS.
    let info = format!("{} user=postgres", c.verify_full(p.rw));
    let (took, stderr) = psql_ctrl_c(&c.bin, &info, c.port(0)).await;
    assert!(
        stderr.contains("canceling statement due to user request") && took < CANCEL_WITHIN,
        "{took:?} {stderr}"
    );
}

/// A cancel the proxy forwards goes inside TLS to the member that issued the key, verified by
/// the name it proved when the session opened (kept with the key), whatever the targets say
/// of that address now: another name there does not make the proxy verify it under that name
/// (nor, before, send it in plaintext when none did).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_cancels_go_inside_tls_to_the_member_that_issued_the_key() {
    let c = cluster();
    let p = c.terminating_proxy(false).await;
    let client = connect(p.rw).await.unwrap();
    let token = client.cancel_token();
    let sleeping = tokio::spawn(async move { client.simple_query("select pg_sleep(10)").await });
    let monitor = connect_direct(c.port(0)).await;
    let active = "select count(*) from pg_stat_activity where state = 'active' \
                  and query = 'select pg_sleep(10)'";
    let deadline = Instant::now() + Duration::from_secs(10);
    while monitor
        .query_one(active, &[])
        .await
        .unwrap()
        .get::<_, i64>(0)
        != 1
    {
        assert!(Instant::now() < deadline, "the statement never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rename = |name: &str| {
        let backend = pgha_proxy::Backend::new(name, c.backend(0).addr);
        p.set(move |t| t.rw = Some(backend));
    };
    // The address is now said to be n2's (the session stays: same address).
    rename("n2");
    let asked = Instant::now();
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), sleeping).await;
    let err = ended.expect("cancel not delivered").unwrap().unwrap_err();
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::QUERY_CANCELED)
    );
    assert!(asked.elapsed() < CANCEL_WITHIN, "{:?}", asked.elapsed());
}

#[tokio::test]
async fn bind_names_the_tls_file_it_cannot_read() {
    let tls = pgha_proxy::ProxyTls {
        cert_file: "/nonexistent/proxy.crt".into(),
        key_file: "/nonexistent/proxy.key".into(),
        ca_file: "/nonexistent/ca.crt".into(),
        require: false,
    };
    let cfg = pgha_proxy::ProxyConfig {
        rw_listen: Some("127.0.0.1:0".into()),
        ro_listen: None,
        tls: Some(tls),
        ..Default::default()
    };
    let (_tx, rx) = tokio::sync::watch::channel(pgha_proxy::Targets::none());
    let shutdown = pgha_proxy::CancellationToken::new();
    let err = pgha_proxy::Proxy::bind(cfg, rx, shutdown)
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("/nonexistent/proxy.crt"), "{err}");
}
