//! What a proxy that terminates TLS and authenticates SCRAM roles itself does with logins that
//! fail, in front of a PostgreSQL 18 primary: malformed exchanges are refused alike whether
//! the role exists or not, and counted; a startup naming its user twice is refused; a burst of logins opens one verifier connection. Clients reach it in plaintext (offered SCRAM-SHA-256 alone), with
//! a hand-written client for what real clients never send. Needs what
//! `scripts/install-deps.sh test` installs.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use common::ca_cluster::{start_ca_cluster, CaCluster, APP_PASSWORD};
use common::clients::{connect_direct, psql_as};
use common::raw_client::{read_msg, scram_final, some_proof, sqlstate, startup};
use common::*;

fn cluster() -> &'static CaCluster {
    static CLUSTER: OnceLock<CaCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| start_ca_cluster("pg18-refusals", &pg18_bin(), 0))
}

/// A primary of its own for the test that counts the proxy's verifier connections.
fn lone_cluster() -> &'static CaCluster {
    static CLUSTER: OnceLock<CaCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| start_ca_cluster("pg18-burst", &pg18_bin(), 0))
}

/// A final message with the wrong nonce or the wrong `c=` is a protocol violation (08P01) for
/// a role that exists and for one that does not alike, as in PostgreSQL's doomed exchange;
/// a well-formed one with a wrong proof is 28P01 for both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_final_messages_are_refused_alike_for_unknown_roles() {
    let c = cluster();
    let p = c.terminating_proxy(false).await;
    let proof = some_proof();
    let last = |what: &str, r: &str| match what {
        "wrong nonce" => format!("c=biws,r={r}x,p={proof}"),
        "wrong c=" => format!("c=eSws,r={r},p={proof}"),
        _ => format!("c=biws,r={r},p={proof}"),
    };
    for what in ["wrong nonce", "wrong c=", "wrong proof"] {
        let mut seen = Vec::new();
        for role in ["app", "ghost"] {
            let (tag, body) = scram_final(p.rw, role, |r| last(what, r)).await;
            assert_eq!(tag, b'E', "{what} {role}: {body:?}");
            seen.push(sqlstate(&body));
        }
        let expected = match what {
            "wrong proof" => "28P01",
            _ => "08P01",
        };
        assert_eq!(seen, [expected, expected], "{what}: app, ghost");
    }
}

/// The proxy's connections that read verifiers, on the member at `port`.
const AUTH_CONNECTIONS: &str =
    "select count(*) from pg_stat_activity where application_name = 'pgha-proxy-auth'";

/// 40 logins at once as roles the proxy never read, after its verifier connection was
/// terminated: one connection is opened again for all of them, not one each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_logins_opens_one_verifier_connection() {
    let c = lone_cluster();
    let p = c.terminating_proxy(false).await;
    let admin = connect_direct(c.port(0)).await;
    let proof = some_proof();
    let wrong = |r: &str| format!("c=biws,r={r},p={proof}");
    let (tag, _) = scram_final(p.rw, "ghost", wrong).await;
    assert_eq!(tag, b'E');
    let count = |a: tokio_postgres::Client| async move {
        let n: i64 = a.query_one(AUTH_CONNECTIONS, &[]).await.unwrap().get(0);
        (a, n)
    };
    let (admin, n) = count(admin).await;
    assert_eq!(n, 1, "the first login's verifier connection");
    admin
        .batch_execute(
            "select pg_terminate_backend(pid) from pg_stat_activity \
             where application_name = 'pgha-proxy-auth'",
        )
        .await
        .unwrap();
    let mut admin = admin;
    loop {
        let (a, n) = count(admin).await;
        admin = a;
        if n == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let watch = tokio::spawn({
        let stop = Arc::clone(&stop);
        async move {
            let mut most = 0;
            while !stop.load(Ordering::Relaxed) {
                let n: i64 = admin.query_one(AUTH_CONNECTIONS, &[]).await.unwrap().get(0);
                most = most.max(n);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            most
        }
    });
    let logins: Vec<_> = (0..40)
        .map(|i| {
            let (addr, proof) = (p.rw, proof.clone());
            tokio::spawn(async move {
                let role = format!("ghost_{i}");
                let (tag, body) =
                    scram_final(addr, &role, |r| format!("c=biws,r={r},p={proof}")).await;
                (tag, sqlstate(&body))
            })
        })
        .collect();
    for login in logins {
        assert_eq!(login.await.unwrap(), (b'E', "28P01".to_string()));
    }
    stop.store(true, Ordering::Relaxed);
    let most = watch.await.unwrap();
    assert!(most <= 2, "{most} verifier connections at once");
}

/// Refused logins (wrong proofs, malformed exchanges, roles that exist or not) are counted
/// per listener and exported; logins that pass are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_logins_are_counted() {
    let c = cluster();
    let p = c.terminating_proxy(false).await;
    let proof = some_proof();
    for (role, last) in [
        ("app", format!("c=biws,r={{r}},p={proof}")),
        ("ghost", format!("c=biws,r={{r}},p={proof}")),
        ("app", format!("c=biws,r={{r}}x,p={proof}")),
    ] {
        let (tag, _) = scram_final(p.rw, role, |r| last.replace("{r}", r)).await;
        assert_eq!(tag, b'E');
    }
    let info = format!(
        "host=127.0.0.1 port={} sslmode=disable dbname=postgres user=app",
        p.rw.port()
    );
    let (ok, _, err, _) = psql_as(&c.bin, &info, APP_PASSWORD, &["select 1"]).await;
    assert!(ok, "{err}");
    let text = p.metrics.snapshot().render_prometheus();
    assert!(
        text.contains("pgha_proxy_scram_failed_total{listener=\"rw\"} 3\n"),
        "{text}"
    );
    assert!(text.contains("pgha_proxy_scram_failed_total{listener=\"ro\"} 0\n"));
    assert!(text.contains("pgha_proxy_scram_by_proxy_total{listener=\"rw\"} 1\n"));
}

/// A startup packet that names its user twice: the proxy cannot authenticate one role while
/// PostgreSQL logs in the other (it uses the last), so it refuses it, as a protocol violation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_user_parameter_is_refused() {
    let c = cluster();
    let p = c.terminating_proxy(false).await;
    let params = [("user", "ghost"), ("database", "postgres"), ("user", "app")];
    let mut s = startup(p.rw, &params).await;
    let (tag, body) = read_msg(&mut s).await;
    assert_eq!((tag, sqlstate(&body).as_str()), (b'E', "08P01"), "{body:?}");
}
