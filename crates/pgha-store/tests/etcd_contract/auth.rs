//! The etcd backend against an etcd with authentication enabled: a user whose role reads and
//! writes its cluster's prefix alone, credentials refused at once, tokens etcd forgot.

use super::*;
use pgha_store::{EtcdAccess, EtcdUser};
use pgha_testkit::etcd_auth::{add_user, enable_auth, jwt_tokens};
use pgha_testkit::poll_async;

const USER: &str = "pgha";
const PASSWORD: &str = "etcd-secret-4711";

fn access(password: &str) -> EtcdAccess {
    EtcdAccess {
        user: Some(EtcdUser {
            name: USER.into(),
            password: password.into(),
        }),
        ..EtcdAccess::default()
    }
}

/// An etcd (flags `extra`) whose authentication is on, `USER` granted `/pgha/authed/`.
fn authed_etcd(extra: &[&str]) -> EtcdServer {
    let server = EtcdServer::start_free_with(extra);
    enable_auth(&server.endpoint(), USER, PASSWORD, "/pgha/authed/");
    server
}

async fn store_of(server: &EtcdServer, cluster: &str, password: &str) -> EtcdStore {
    EtcdStore::connect_with(&[server.endpoint()], cluster, TIMEOUT, &access(password))
        .await
        .expect("connecting is lazy")
}

/// With its user, the store takes, renews and releases the leader key, publishes a member,
/// reads, watches and compacts etcd's history; the prefix of another cluster is refused as a
/// permission (typed, not retried).
#[tokio::test]
async fn a_user_granted_its_prefix_runs_the_leader_cycle_and_nothing_else() {
    let server = authed_etcd(&[]);
    let store = store_of(&server, "authed", PASSWORD).await;
    let ttl = Ttl::from_secs(3);
    let term = store.acquire_leader("n1", ttl).await.expect("leader key");
    store.put_member("n1", "{}", ttl).await.expect("member key");
    assert_eq!(store.renew_leader("n1", term, ttl).await, Ok(ttl));
    let mut watch = store.watch().await.expect("a watch");
    store
        .put(Key::Config, "{}", Guard::Any)
        .await
        .expect("config");
    let event = tokio::time::timeout(Duration::from_secs(5), watch.changed())
        .await
        .expect("the watch saw the write");
    assert!(event.is_ok(), "{event:?}");
    let snap = store.snapshot().await.unwrap();
    assert_eq!(snap.leader.map(|l| l.holder).as_deref(), Some("n1"));
    assert!(snap.members.contains_key("n1"));
    store.release_leader("n1", term).await.expect("released");

    let other = store_of(&server, "other", PASSWORD).await;
    let refused = other.snapshot().await;
    assert!(
        matches!(&refused, Err(e @ StoreError::PermissionDenied(_)) if !e.is_retryable()),
        "{refused:?}"
    );

    let keep = Duration::from_millis(1200);
    assert_eq!(store.trim_history(keep).await, Ok(None));
    tokio::time::sleep(keep).await;
    store.put(Key::Config, "2", Guard::Any).await.unwrap();
    let trimmed = store.trim_history(keep).await;
    assert!(matches!(trimmed, Ok(Some(_))), "{trimmed:?}");
}

/// A wrong password, a user given to an etcd without authentication, or no user given to one
/// with it: each is said at once (not retried as an unreachable etcd would be).
#[tokio::test]
async fn refused_credentials_end_the_wait_for_etcd_at_once() {
    let server = authed_etcd(&[]);
    let started = Instant::now();
    let wrong = EtcdStore::connect_patiently(
        &[server.endpoint()],
        "authed",
        TIMEOUT,
        &access("not-the-password"),
        None,
    )
    .await;
    assert!(
        matches!(&wrong, Err(e @ StoreError::Credentials(_)) if !e.is_retryable()),
        "{wrong:?}"
    );
    let nobody = EtcdStore::connect_patiently(
        &[server.endpoint()],
        "authed",
        TIMEOUT,
        &EtcdAccess::default(),
        None,
    )
    .await;
    assert!(
        matches!(&nobody, Err(e @ StoreError::Invalid(_)) if !e.is_retryable()),
        "{nobody:?}"
    );
    let open = EtcdServer::start_free();
    let not_enabled = EtcdStore::connect_patiently(
        &[open.endpoint()],
        "authed",
        TIMEOUT,
        &access(PASSWORD),
        None,
    )
    .await;
    assert!(
        matches!(&not_enabled, Err(StoreError::Credentials(_))),
        "{not_enabled:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// Tokens etcd no longer knows, because they idled past `--auth-token-ttl` or because etcd
/// restarted (it keeps them in memory), are replaced on the call that meets them: the leader
/// key is renewed, members published and the store read as before.
#[tokio::test]
async fn tokens_etcd_forgot_are_replaced_on_the_next_call() {
    let mut server = authed_etcd(&["--auth-token-ttl=1"]);
    let store = store_of(&server, "authed", PASSWORD).await;
    let ttl = Ttl::from_secs(10);
    let term = store.acquire_leader("n1", ttl).await.unwrap();
    store.put_member("n1", "a", ttl).await.unwrap();
    // idle for three token ttls
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(store.renew_leader("n1", term, ttl).await, Ok(ttl));
    store
        .put_member("n1", "b", ttl)
        .await
        .expect("after the token expired");

    server.terminate();
    server.start();
    let renewed = poll_async(
        Duration::from_secs(10),
        Duration::from_millis(200),
        || async { store.renew_leader("n1", term, ttl).await.ok() },
    )
    .await;
    assert_eq!(renewed, Some(ttl), "renewal after etcd restarted");
    store
        .put_member("n1", "c", ttl)
        .await
        .expect("after the restart");
    let snap = store.snapshot().await.unwrap();
    assert_eq!(snap.members.get("n1").map(|v| v.value.as_str()), Some("c"));
}

/// With JWT tokens (`--auth-token jwt`), etcd refuses every token issued before its users or
/// roles changed, as an invalid request ("revision of auth store is old"); the client replaced
/// only tokens refused as unknown. Found by review: once an operator added a user, every call
/// of every agent failed for good. One call may fail; the next logs in again.
#[tokio::test]
async fn a_token_issued_before_an_operator_changed_etcds_users_is_replaced() {
    let keys = tempfile::tempdir().unwrap();
    let server = authed_etcd(&[&jwt_tokens(keys.path())]);
    let store = store_of(&server, "authed", PASSWORD).await;
    let ttl = Ttl::from_secs(10);
    let term = store.acquire_leader("n1", ttl).await.unwrap();
    add_user(&server.endpoint(), "someone-else");
    let mut failed = 0;
    for round in 0..4 {
        match store.renew_leader("n1", term, ttl).await {
            Ok(granted) => assert_eq!(granted, ttl),
            Err(e) => {
                failed += 1;
                eprintln!("renewal {round} after the auth store changed: {e}");
            }
        }
    }
    assert!(
        failed <= 1,
        "{failed} renewals failed after the auth store changed"
    );
    store
        .put_member("n1", "d", ttl)
        .await
        .expect("after the change");
}

/// A login costs etcd a password hash (bcrypt, `--bcrypt-cost`), longer on a loaded host than
/// the bound of a caller with a small safety margin. Found by review: the login ran inside the
/// call, so a caller that gave up cancelled it, and with every call's bound shorter than the
/// hash no call ever got through. The login now outlives the caller: the calls after it wait
/// for the same one, and get through once it is done.
#[tokio::test]
async fn a_login_longer_than_a_callers_bound_completes_for_the_calls_after_it() {
    // Cost 14: each hash takes about a second here (cost 10, the default, some 60 ms).
    let server = authed_etcd(&["--bcrypt-cost=14"]);
    let store = store_of(&server, "authed", PASSWORD).await;
    let started = std::time::Instant::now();
    let given_up = std::sync::atomic::AtomicU32::new(0);
    let read = poll_async(
        Duration::from_secs(20),
        Duration::from_millis(10),
        || async {
            let call = tokio::time::timeout(Duration::from_millis(150), store.snapshot()).await;
            if call.is_err() {
                given_up.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            call.ok().and_then(Result::ok)
        },
    )
    .await;
    let given_up = given_up.into_inner();
    assert!(
        read.is_some(),
        "no call got through in 20 s ({given_up} given up at 150 ms)"
    );
    assert!(
        given_up > 0,
        "the login took under 150 ms: the test shows nothing"
    );
    eprintln!(
        "read after {:?}, {given_up} calls given up",
        started.elapsed()
    );
}
