//! The etcd key layout: the cluster prefix, a lease per key, history trimming, the shared term.

use super::*;

#[tokio::test]
async fn keys_live_under_the_cluster_prefix_with_their_own_leases() {
    let etcd = Etcd::start();
    let store = etcd.store("main").await;
    assert_eq!(store.prefix(), "/pgha/main/");
    let ttl = Ttl::from_secs(5);
    let term = store.acquire_leader("n1", ttl).await.unwrap();
    store.put_member("n1", "{}", ttl).await.unwrap();
    store.put_member("n2", "{}", ttl).await.unwrap();
    store.put(Key::Config, "{}", Guard::Absent).await.unwrap();
    store
        .put(Key::Initialize, "7001", Guard::Absent)
        .await
        .unwrap();
    let leader = Guard::Leader {
        holder: "n1".into(),
        revision: term,
    };
    store.put(Key::Sync, "[]", leader.clone()).await.unwrap();
    store
        .append_history(&HistoryId::fresh(), "bootstrap", leader)
        .await
        .unwrap();

    let keys = raw_keys(&etcd.server.endpoint(), "/pgha/main/").await;
    let names: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names.len(), 8, "{names:?}");
    for expected in [
        "/pgha/main/config",
        "/pgha/main/failsafe",
        "/pgha/main/initialize",
        "/pgha/main/leader",
        "/pgha/main/members/n1",
        "/pgha/main/members/n2",
        "/pgha/main/sync",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    assert!(names.iter().any(|k| k.starts_with("/pgha/main/history/")));
    let lease = |key: &str| keys.iter().find(|(k, _)| k == key).unwrap().1;
    let (l, m1, m2) = (
        lease("/pgha/main/leader"),
        lease("/pgha/main/members/n1"),
        lease("/pgha/main/members/n2"),
    );
    assert!(
        l != 0 && m1 != 0 && m2 != 0,
        "leader and members are leased"
    );
    assert!(l != m1 && m1 != m2 && l != m2, "each has its own lease");
    assert_eq!(lease("/pgha/main/config"), 0, "durable keys are not leased");
    assert_eq!(
        lease("/pgha/main/failsafe"),
        0,
        "the failsafe list is not leased"
    );

    // Releasing and deleting revoke the leases: nothing stays behind.
    store.release_leader("n1", term).await.unwrap();
    store.delete_member("n1").await.unwrap();
    let mut client = etcd_client::Client::connect([etcd.server.endpoint()], None)
        .await
        .unwrap();
    let live: Vec<i64> = client
        .leases()
        .await
        .unwrap()
        .leases()
        .iter()
        .map(|l| l.id())
        .collect();
    assert_eq!(live, [m2], "only n2's lease is left");
}

/// etcd keeps every revision until it is compacted (and refuses every write once they fill
/// its quota): `trim_history` compacts what is older than the retention, by the revisions it
/// saw, and keeps what is newer; a revision compacted already by someone else is no error.
#[tokio::test]
async fn trimming_the_history_compacts_what_is_older_than_the_retention() {
    let etcd = Etcd::start();
    let store = etcd.store("trim").await;
    let mut client = etcd_client::Client::connect([etcd.server.endpoint()], None)
        .await
        .unwrap();
    let old = store.put(Key::Config, "1", Guard::Any).await.unwrap();
    store.put(Key::Config, "2", Guard::Any).await.unwrap();
    let at = |revision: u64| etcd_client::GetOptions::new().with_revision(revision as i64);
    // Nothing is a retention old yet: nothing is compacted.
    let keep = Duration::from_millis(1500);
    assert_eq!(store.trim_history(keep).await.unwrap(), None);
    assert!(client.get("/pgha/trim/config", Some(at(old))).await.is_ok());
    tokio::time::sleep(keep).await;
    let newer = store.put(Key::Config, "3", Guard::Any).await.unwrap();
    let cut = store.trim_history(keep).await.unwrap().expect("compacted");
    assert!(
        cut > old && cut < newer,
        "compacted to {cut}: {old} .. {newer}"
    );
    let gone = client.get("/pgha/trim/config", Some(at(old))).await;
    assert!(
        gone.as_ref()
            .is_err_and(|e| e.to_string().contains("compacted")),
        "{gone:?}"
    );
    let kept = client
        .get("/pgha/trim/config", Some(at(newer)))
        .await
        .unwrap();
    assert_eq!(kept.kvs()[0].value(), b"3");
    // Compacted further by someone else: nothing to do, no error.
    let now = store.put(Key::Config, "4", Guard::Any).await.unwrap();
    client.compact(now as i64, None).await.unwrap();
    assert_eq!(store.trim_history(Duration::ZERO).await.unwrap(), None);
    assert_eq!(
        store
            .snapshot()
            .await
            .unwrap()
            .keys
            .get(&Key::Config)
            .map(|c| c.value.clone()),
        Some("4".to_string())
    );
}

#[tokio::test]
async fn clusters_sharing_one_etcd_are_isolated() {
    let etcd = Etcd::start();
    let a = etcd.store("a").await;
    let b = etcd.store("b").await;
    let ttl = Ttl::from_secs(5);
    a.acquire_leader("n1", ttl).await.unwrap();
    b.acquire_leader("n1", ttl).await.unwrap();
    a.put(Key::Initialize, "1", Guard::Absent).await.unwrap();
    b.put(Key::Initialize, "2", Guard::Absent).await.unwrap();
    let (sa, sb) = (a.snapshot().await.unwrap(), b.snapshot().await.unwrap());
    assert_eq!(sa.get(Key::Initialize).unwrap().value, "1");
    assert_eq!(sb.get(Key::Initialize).unwrap().value, "2");
    assert!(EtcdStore::connect(&["127.0.0.1:1".into()], "a/b", TIMEOUT)
        .await
        .is_err_and(|e| matches!(e, StoreError::Invalid(_))));
}

#[tokio::test]
async fn a_term_is_shared_by_every_client_of_the_cluster() {
    let etcd = Etcd::start();
    let first = etcd.store("c").await;
    let second = etcd.store("c").await;
    let ttl = Ttl::from_secs(2);
    let term = first.acquire_leader("n1", ttl).await.unwrap();
    let mut watch = second.watch().await.unwrap();
    assert!(matches!(
        second.acquire_leader("n2", ttl).await,
        Err(StoreError::Conflict { .. })
    ));
    // An agent that restarted renews the term it finds, by holder and revision.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    second.renew_leader("n1", term, ttl).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let leader = first
        .snapshot()
        .await
        .unwrap()
        .leader
        .expect("renewed by the second client");
    assert_eq!((leader.holder.as_str(), leader.revision), ("n1", term));
    second.release_leader("n1", term).await.unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(5), watch.changed())
        .await
        .expect("watch fired")
        .unwrap();
    assert!(seen > term);
    assert_eq!(first.snapshot().await.unwrap().leader, None);
}

#[tokio::test]
async fn put_member_with_a_new_ttl_moves_the_key_to_a_new_lease() {
    let etcd = Etcd::start();
    let store = etcd.store("ttl").await;
    store
        .put_member("n1", "a", Ttl::from_secs(1))
        .await
        .unwrap();
    store
        .put_member("n1", "b", Ttl::from_millis(5500))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let snap = store.snapshot().await.unwrap();
    assert_eq!(snap.members["n1"].value, "b", "lives by the 6 s lease now");
}

/// The version of the etcd member in use, as its maintenance status tells it: the one the
/// binary says it is.
#[tokio::test]
async fn the_server_version_is_etcds_own() {
    let etcd = Etcd::start();
    let store = etcd.store("version").await;
    let version = store.server_version().await.expect("a status");
    let out = std::process::Command::new(pgha_testkit::etcd_binary())
        .arg("--version")
        .output()
        .expect("etcd --version");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!("etcd Version: {version}")),
        "{version:?} vs {said}"
    );
}
