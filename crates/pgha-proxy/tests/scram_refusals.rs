//! What a proxy that terminates TLS and authenticates SCRAM roles itself does with logins that
//! fail, in front of a PostgreSQL 18 primary: malformed exchanges are refused alike whether
//! the role exists or not. Clients reach it in plaintext (offered SCRAM-SHA-256 alone), with
//! a hand-written client for what real clients never send. Needs what
//! `scripts/install-deps.sh test` installs.

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use common::ca_cluster::{start_ca_cluster, CaCluster};
use common::raw_client::{scram_final, some_proof, sqlstate};
use common::*;

fn cluster() -> &'static CaCluster {
    static CLUSTER: OnceLock<CaCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| start_ca_cluster("pg18-refusals", &pg18_bin(), 0))
}

async fn proxy(c: &CaCluster) -> TestProxy {
    let tls = c.proxy_tls.clone();
    TestProxy::start_authenticating(c.targets(), c.superuser(), |cfg| {
        cfg.tls = Some(tls);
        cfg.hold_timeout = Duration::from_secs(3);
    })
    .await
}

/// A final message with the wrong nonce or the wrong `c=` is a protocol violation (08P01) for
/// a role that exists and for one that does not alike, as in PostgreSQL's doomed exchange;
/// a well-formed one with a wrong proof is 28P01 for both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_final_messages_are_refused_alike_for_unknown_roles() {
    let c = cluster();
    let p = proxy(c).await;
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
