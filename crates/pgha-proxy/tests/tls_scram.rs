//! SCRAM through a proxy that terminates TLS, in front of PostgreSQL 18 members with
//! certificates from a pgha cluster CA: the proxy authenticates clients of roles with a SCRAM
//! verifier itself (SCRAM-SHA-256-PLUS bound to its own certificate), then logs in to the
//! member for them; other roles' authentication is relayed to PostgreSQL. Real clients with
//! their default settings and with `channel_binding=require`: psql 15 and 18, psycopg 3 (its
//! bundled libpq 18) and tokio-postgres. Needs what `scripts/install-deps.sh test` installs.

mod common;

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use common::ca_cluster::{
    start_ca_cluster, CaCluster, APP_PASSWORD, MD5_PASSWORD, MD5_ROLE, PROXY_HOST,
};
use common::clients::{connect_direct, finish, libpq_client, psql_as};
use common::*;
use serde_json::Value;
use tokio_postgres::error::SqlState;

fn cluster() -> &'static CaCluster {
    static CLUSTER: OnceLock<CaCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| start_ca_cluster("pg18-scram", &pg18_bin(), 1))
}

/// A PostgreSQL 17 primary alone: it answers a client asking for protocol 3.2 with
/// NegotiateProtocolVersion before the authentication request.
fn cluster17() -> &'static CaCluster {
    static CLUSTER: OnceLock<CaCluster> = OnceLock::new();
    let bin = pgha_testkit::servers::bin_dir(17);
    CLUSTER.get_or_init(|| start_ca_cluster("pg17-scram", &bin, 0))
}

/// The session's role, and whether the member sees it over TLS (pg_stat_ssl).
const WHO: &str = "select current_user || '|' || ssl from pg_stat_ssl where pid = pg_backend_pid()";

/// psycopg 3 logs in with `dsn`: {"ok", "who"} or {"ok": false, "error"}.
async fn psycopg(dsn: &str) -> Value {
    let script = format!(
        "import json, sys, psycopg\n\
         try:\n    \
             with psycopg.connect(sys.argv[1]) as c:\n        \
                 who = c.execute(\"{WHO}\").fetchone()[0]\n        \
                 print(json.dumps({{'ok': True, 'who': who, 'libpq': psycopg.pq.version()}}))\n\
         except psycopg.Error as e:\n    \
             print(json.dumps({{'ok': False, 'error': str(e)}}))\n"
    );
    let mut cmd = libpq_client(test_python());
    cmd.args(["-c", &script, dsn]);
    let out = finish(cmd, Duration::from_secs(30), "psycopg").await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
        panic!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    })
}

/// tokio-postgres (default channel binding: prefer) logs in as `user` through the proxy at
/// `addr`, verifying its certificate.
async fn tokio_pg(
    c: &CaCluster,
    addr: std::net::SocketAddr,
    user: &str,
    password: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let pem = std::fs::read_to_string(&c.ca_cert).unwrap();
    let tls = pgha_pg::tls::ClientTls::from_ca_pem(&pem, "ca.crt").unwrap();
    let mut cfg = tokio_postgres::Config::new();
    pgha_pg::tls::target(
        &mut cfg,
        PROXY_HOST,
        &addr.ip().to_string(),
        addr.port(),
        true,
    );
    cfg.user(user).password(password).dbname("postgres");
    pgha_pg::probe::open(cfg, Some(&tls)).await
}

fn by_proxy(p: &TestProxy) -> u64 {
    let snap = p.metrics.snapshot();
    snap.listeners.iter().map(|l| l.scram_by_proxy).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_clients_log_in_with_channel_binding_to_the_proxy() {
    let c = cluster();
    let p = c.terminating_proxy(false).await;
    let psql15 = Path::new(PG_BIN);
    let mut logins = 0;
    for (listener, addr) in [("rw", p.rw), ("ro", p.ro)] {
        let base = format!("{} user=app", c.verify_full(addr));
        for extra in ["", "channel_binding=require", "channel_binding=disable"] {
            let info = format!("{base} {extra}");
            for bin in [psql15, c.bin.as_path()] {
                let (ok, out, err, _) = psql_as(bin, &info, APP_PASSWORD, &[WHO]).await;
                logins += 1;
                // The member sees the proxy's session over TLS.
                assert!(
                    ok && out.trim() == "app|true",
                    "{listener} {info}: {out}{err}"
                );
            }
            let r = psycopg(&format!("{info} password={APP_PASSWORD}")).await;
            logins += 1;
            assert_eq!(r["who"], "app|true", "{listener} psycopg {info}: {r}");
            assert!(r["libpq"].as_i64().unwrap() >= 180_000, "{r}");
        }
        let client = tokio_pg(c, addr, "app", APP_PASSWORD).await.unwrap();
        logins += 1;
        let who: String = client.query_one(WHO, &[]).await.unwrap().get(0);
        assert_eq!(who, "app|true", "{listener} tokio-postgres");
    }
    assert_eq!(by_proxy(&p), logins);
}

/// Plaintext clients (`sslmode=disable`) of a SCRAM role: the proxy, which knows they are not
/// on TLS, offers SCRAM-SHA-256 alone, as PostgreSQL does (libpq refuses -PLUS offered
/// outside TLS).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_clients_are_offered_scram_without_plus() {
    let c = cluster();
    let p = c.terminating_proxy(false).await;
    let mut logins = 0;
    for addr in [p.rw, p.ro] {
        let info = format!(
            "host=127.0.0.1 port={} sslmode=disable dbname=postgres user=app connect_timeout=20",
            addr.port()
        );
        for bin in [Path::new(PG_BIN), c.bin.as_path()] {
            let (ok, out, err, _) = psql_as(bin, &info, APP_PASSWORD, &[WHO]).await;
            logins += 1;
            assert!(ok && out.trim() == "app|true", "{info}: {out}{err}");
        }
        let r = psycopg(&format!("{info} password={APP_PASSWORD}")).await;
        logins += 1;
        assert_eq!(r["who"], "app|true", "psycopg {info}: {r}");
    }
    assert_eq!(by_proxy(&p), logins);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_are_refused_with_28p01() {
    let c = cluster();
    let p = c.terminating_proxy(false).await;
    let says = "password authentication failed for user \"app\"";
    for extra in ["", "channel_binding=require"] {
        let info = format!("{} user=app {extra}", c.verify_full(p.rw));
        for bin in [Path::new(PG_BIN), c.bin.as_path()] {
            let (ok, _, err, took) = psql_as(bin, &info, "wrong", &["select 1"]).await;
            assert!(!ok && err.contains(says), "{info}: {err}");
            assert!(took < Duration::from_secs(5), "{took:?}");
        }
        let r = psycopg(&format!("{info} password=wrong")).await;
        assert!(r["error"].as_str().unwrap().contains(says), "{r}");
    }
    let err = tokio_pg(c, p.rw, "app", "wrong").await.err().unwrap();
    assert_eq!(err.code(), Some(&SqlState::INVALID_PASSWORD), "{err}");
    assert_eq!(by_proxy(&p), 0);
    // The right one still works.
    tokio_pg(c, p.rw, "app", APP_PASSWORD).await.unwrap();
    assert_eq!(by_proxy(&p), 1);
}

/// A role that does not exist looks like one with another password, as in PostgreSQL: the same
/// offer (-PLUS included), the same exchange, the same refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_roles_look_like_wrong_passwords() {
    let c = cluster();
    let p = c.terminating_proxy(false).await;
    for role in ["ghost", "app"] {
        let info = format!(
            "{} user={role} channel_binding=require",
            c.verify_full(p.rw)
        );
        let (ok, _, err, _) = psql_as(&c.bin, &info, "wrong", &["select 1"]).await;
        let says = format!("password authentication failed for user \"{role}\"");
        assert!(!ok && err.contains(&says), "{info}: {err}");
        let err = tokio_pg(c, p.rw, role, "wrong").await.err().unwrap();
        assert_eq!(err.code(), Some(&SqlState::INVALID_PASSWORD), "{err}");
    }
    assert_eq!(by_proxy(&p), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn md5_and_trusted_roles_are_relayed_to_postgresql() {
    let c = cluster();
    let p = c.terminating_proxy(false).await;
    let info = format!("{} user={MD5_ROLE}", c.verify_full(p.rw));
    let (ok, out, err, _) = psql_as(&c.bin, &info, MD5_PASSWORD, &[WHO]).await;
    assert!(ok && out.trim() == format!("{MD5_ROLE}|true"), "{out}{err}");
    let r = psycopg(&format!("{info} password={MD5_PASSWORD}")).await;
    assert_eq!(r["who"], format!("{MD5_ROLE}|true"), "{r}");
    // md5 cannot bind: libpq refuses when told to require it.
    let required = format!("{info} channel_binding=require");
    let (ok, _, err, _) = psql_as(&c.bin, &required, MD5_PASSWORD, &["select 1"]).await;
    assert!(!ok && err.contains("channel binding required"), "{err}");
    // PostgreSQL itself refuses a wrong md5 password.
    let err = tokio_pg(c, p.rw, MD5_ROLE, "wrong").await.err().unwrap();
    assert_eq!(err.code(), Some(&SqlState::INVALID_PASSWORD), "{err}");
    // postgres is trusted: no password asked.
    let trusted = format!("{} user=postgres", c.verify_full(p.ro));
    let (ok, out, err, _) = psql_as(&c.bin, &trusted, "", &[WHO]).await;
    assert!(ok && out.trim() == "postgres|true", "{out}{err}");
    assert_eq!(by_proxy(&p), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_password_is_read_again() {
    let c = cluster();
    let p = c.terminating_proxy(false).await;
    let admin = connect_direct(c.port(0)).await;
    let set = |pw: &str| format!("alter role rotating password '{pw}'");
    admin
        .batch_execute("create role rotating login")
        .await
        .unwrap();
    admin.batch_execute(&set("one")).await.unwrap();
    let login = |pw: &'static str| tokio_pg(c, p.rw, "rotating", pw);
    login("one").await.unwrap();
    admin.batch_execute(&set("two")).await.unwrap();
    // The proxy still remembers "one", but PostgreSQL has the last word.
    let err = login("one").await.err().unwrap();
    assert_eq!(err.code(), Some(&SqlState::INVALID_PASSWORD), "{err}");
    login("two").await.unwrap();
    // A login refused with a remembered verifier reads it again: the next one works.
    admin.batch_execute(&set("three")).await.unwrap();
    if let Err(e) = login("three").await {
        assert_eq!(e.code(), Some(&SqlState::INVALID_PASSWORD), "{e}");
    }
    login("three").await.unwrap();
    let err = login("two").await.err().unwrap();
    assert_eq!(err.code(), Some(&SqlState::INVALID_PASSWORD), "{err}");
}

/// A verifier the proxy cannot read (its superuser cannot log in): the authentication is
/// relayed as before, -PLUS stripped, and a client that could bind is told how to connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_readable_verifier_scram_is_relayed_and_binding_refused_clearly() {
    let c = cluster();
    let tls = c.proxy_tls.clone();
    let mut nobody = c.superuser();
    nobody.user = "no_such_superuser".into();
    let p = TestProxy::start_authenticating(c.targets(), nobody, |cfg| {
        cfg.tls = Some(tls);
        cfg.hold_timeout = Duration::from_secs(3);
    })
    .await;
    let app = |extra: &str| format!("{} user=app {extra}", c.verify_full(p.rw));
    let psql15 = Path::new(PG_BIN);
    for bin in [psql15, c.bin.as_path()] {
        let info = app("channel_binding=disable");
        let (ok, out, err, _) = psql_as(bin, &info, APP_PASSWORD, &[WHO]).await;
        assert!(ok && out.trim() == "app|true", "{info}: {out}{err}");
        for (info, says) in [
            (app(""), "channel_binding=disable"),
            (app("channel_binding=require"), "did not offer"),
        ] {
            let (ok, _, err, took) = psql_as(bin, &info, APP_PASSWORD, &["select 1"]).await;
            assert!(!ok && err.contains(says), "{info}: {err}");
            assert!(took < Duration::from_secs(5), "{info}: {took:?}");
        }
    }
    assert_eq!(by_proxy(&p), 0);
}

/// libpq 18 asking for protocol 3.2 of a PostgreSQL 17 member: NegotiateProtocolVersion comes
/// first, then the proxy's own SCRAM, with default channel binding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_negotiated_protocol_version_comes_before_the_proxys_scram() {
    let c = cluster17();
    let p = c.terminating_proxy(false).await;
    let psql18 = pg18_bin();
    for extra in [
        "max_protocol_version=3.2",
        "channel_binding=require max_protocol_version=3.2",
    ] {
        let info = format!("{} user=app {extra}", c.verify_full(p.rw));
        let (ok, out, err, _) = psql_as(&psql18, &info, APP_PASSWORD, &[WHO]).await;
        assert!(ok && out.trim() == "app|true", "{info}: {out}{err}");
    }
    assert_eq!(by_proxy(&p), 2);
}
