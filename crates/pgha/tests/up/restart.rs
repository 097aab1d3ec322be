//! `pgha up` started again on a cluster directory whose store holds no leader.

use super::*;

/// Found by review: n1 was stopped as the primary (`pgha stop`: its data stays a primary's),
/// another member led on a newer timeline and took writes, then demoted for a switchover
/// (`standby.signal` written), and `pgha up` died before the target took the key. Started
/// again, it gave the key to n1, the one member without `standby.signal`: n1 ran as the
/// primary on its old timeline, the others rewound to it, and the writes were thrown away.
/// The store's `position` key names the member that led last: nobody is seeded, the members
/// elect the one with the newest data, and the writes stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_stopped_before_another_led_is_not_given_the_key_on_a_restart() {
    let tmp = test_dir();
    let dir = tmp.path().join("stale");
    let d = dir.to_str().unwrap().to_string();
    let mut up = UpProcess::start(&dir, 3);
    let status = up.status().unwrap();
    let first = status["leader"].as_str().unwrap().to_string();
    succeeded("pgha stop", &pgha(&["stop", "--dir", &d, &first]));
    let leader_other_than_first = || {
        let status = up.status()?;
        let leader = status["leader"].as_str()?.to_string();
        let runs = status["members"].as_array()?.iter().any(|m| {
            m["name"] == leader.as_str() && m["role"] == "primary" && m["state"] == "running"
        });
        (leader != first && runs).then_some(leader)
    };
    let second = pgha_testkit::poll(
        Duration::from_secs(30),
        Duration::from_millis(100),
        leader_other_than_first,
    )
    .unwrap_or_else(|| panic!("no member took over from {first}:\n{}", up.log()));
    let primary = connect(&up.url(None)).await;
    primary
        .batch_execute("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('after the stop')")
        .await
        .unwrap();
    assert_eq!(up.terminate(), Some(0), "{}", up.log());

    // The instant `pgha up` died in: `second` demoted for a switchover (standby.signal), the
    // leader key let go, the target not yet holding it.
    let second_data = dir.join(&second).join("data");
    std::fs::write(second_data.join("standby.signal"), "").unwrap();
    let store_file = dir.join("store.json");
    let mut store: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&store_file).unwrap()).unwrap();
    store.as_object_mut().unwrap().remove("leader");
    std::fs::write(&store_file, serde_json::to_string(&store).unwrap()).unwrap();

    up.restart(&[]);
    up.wait_streaming(Duration::from_secs(90));
    let primary = connect(&up.url(None)).await;
    let kept = primary.query_one("SELECT v FROM kept", &[]).await;
    assert_eq!(
        kept.map(|row| row.get::<_, String>(0)).ok().as_deref(),
        Some("after the stop"),
        "the write {second} acknowledged is gone:\n{}",
        up.log()
    );
    assert!(
        up.log().contains(&format!("but {second} led after it")),
        "the restart did not say why {first} was not given the key:\n{}",
        up.log()
    );
}
