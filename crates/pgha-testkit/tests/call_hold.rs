//! The call-holding forwarder against a real etcd: the call it catches lands after its delay,
//! though its caller gave up, while a call made after it on the same connection passes at once.

use std::time::{Duration, Instant};

use pgha_testkit::{small_runtime, CallHold, Calls, EtcdServer};

#[test]
fn a_held_call_lands_late_while_a_later_one_on_the_same_connection_does_not() {
    let etcd = EtcdServer::start_free();
    let target = format!("127.0.0.1:{}", etcd.client_port()).parse().unwrap();
    let hold = CallHold::start("127.0.0.1:0".parse().unwrap(), target).unwrap();
    let rt = small_runtime();
    let endpoint = format!("http://{}", hold.addr());
    let mut kv = rt
        .block_on(etcd_client::Client::connect([endpoint], None))
        .expect("etcd through the forwarder")
        .kv_client();
    rt.block_on(kv.put("before", "1", None))
        .expect("a call passes");

    let delay = Duration::from_secs(2);
    hold.hold_next(
        Calls::to("/etcdserverpb.KV/Put").holding(b"held-key"),
        delay,
    );
    let sent = Instant::now();
    let given_up = rt.block_on(async {
        tokio::time::timeout(Duration::from_millis(300), kv.put("held-key", "late", None)).await
    });
    assert!(
        given_up.is_err(),
        "the held call was answered: {given_up:?}"
    );
    assert!(hold.wait_held(Duration::ZERO).is_some(), "nothing was held");

    rt.block_on(kv.put("after", "2", None))
        .expect("a call after the held one passes");
    let read = |key: &str| {
        let got = rt.block_on(kv.clone().get(key, None)).expect("a get");
        got.kvs().first().map(|kv| kv.value().to_vec())
    };
    assert_eq!(read("after"), Some(b"2".to_vec()));
    assert_eq!(read("held-key"), None, "the held call landed at once");
    assert!(sent.elapsed() < delay, "the calls after it waited for it");

    std::thread::sleep(delay);
    let landed = (0..20).find_map(|_| {
        read("held-key").or_else(|| {
            std::thread::sleep(Duration::from_millis(100));
            None
        })
    });
    assert_eq!(landed, Some(b"late".to_vec()), "the held call never landed");
    assert!(hold.sent_on().is_some_and(|at| at >= sent + delay));
    assert_eq!(hold.held_answer().as_deref(), Some("grpc-status 0"));
}

/// Every call caught is held until the test releases it, the first first; the others stay
/// held, and a call that matches nothing passes meanwhile.
#[test]
fn held_calls_land_one_at_a_time_as_released() {
    let etcd = EtcdServer::start_free();
    let target = format!("127.0.0.1:{}", etcd.client_port()).parse().unwrap();
    let hold = CallHold::start("127.0.0.1:0".parse().unwrap(), target).unwrap();
    let rt = small_runtime();
    let endpoint = format!("http://{}", hold.addr());
    let kv = rt
        .block_on(etcd_client::Client::connect([endpoint], None))
        .expect("etcd through the forwarder")
        .kv_client();
    hold.hold_all(Calls::to("/etcdserverpb.KV/Put").holding(b"held-"));
    for key in ["held-1", "held-2"] {
        let mut kv = kv.clone();
        let given_up = rt.block_on(async {
            tokio::time::timeout(Duration::from_millis(300), kv.put(key, "late", None)).await
        });
        assert!(given_up.is_err(), "{key} was answered: {given_up:?}");
    }
    assert_eq!(hold.held(), 2);
    rt.block_on(kv.clone().put("other", "1", None))
        .expect("a call the rule does not catch passes");
    let read = |key: &str| {
        let got = rt.block_on(kv.clone().get(key, None)).expect("a get");
        got.kvs().first().map(|kv| kv.value().to_vec())
    };
    assert_eq!(read("held-1"), None);
    assert!(hold.release_first());
    let answer = pgha_testkit::poll(Duration::from_secs(5), Duration::from_millis(20), || {
        hold.held_answer()
    });
    assert_eq!(answer.as_deref(), Some("grpc-status 0"));
    assert_eq!(read("held-1"), Some(b"late".to_vec()));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(read("held-2"), None, "a call not released landed");
    assert_eq!(hold.held(), 1);
}

/// Rules catch a stream by its first message (a lease's keep-alive, which never ends its
/// request) and calls that lack some bytes; several rules hold at once, and calls held and
/// never released are lost: the lease they would have kept alive runs out. Cleared, calls
/// pass again and the lost ones never land.
#[test]
fn a_lost_keep_alive_and_a_lost_put_never_land_while_the_others_pass() {
    let etcd = EtcdServer::start_free();
    let target = format!("127.0.0.1:{}", etcd.client_port()).parse().unwrap();
    let hold = CallHold::start("127.0.0.1:0".parse().unwrap(), target).unwrap();
    let rt = small_runtime();
    let endpoint = format!("http://{}", hold.addr());
    let client = rt
        .block_on(etcd_client::Client::connect([endpoint], None))
        .expect("etcd through the forwarder");
    let (kv, leases) = (client.kv_client(), client.lease_client());
    let lease = rt
        .block_on(leases.clone().grant(2, None))
        .expect("a lease")
        .id();
    let put_on_lease = etcd_client::PutOptions::new().with_lease(lease);
    rt.block_on(kv.clone().put("leased", "1", Some(put_on_lease)))
        .expect("a put on the lease");

    hold.hold_all(Calls::to("/etcdserverpb.Lease/LeaseKeepAlive"));
    hold.hold_all(
        Calls::to("/etcdserverpb.KV/Put")
            .holding(b"lost-")
            .lacking(b"-kept"),
    );
    let give_up = Duration::from_millis(300);
    let kept = rt
        .block_on(async { tokio::time::timeout(give_up, leases.clone().keep_alive(lease)).await });
    assert!(kept.is_err(), "the keep-alive was answered");
    let lost = rt.block_on(async {
        tokio::time::timeout(give_up, kv.clone().put("lost-1", "x", None)).await
    });
    assert!(lost.is_err(), "the put was answered: {lost:?}");
    assert_eq!(hold.held(), 2);
    rt.block_on(kv.clone().put("lost-kept", "1", None))
        .expect("a put lacking what the rule needs to be absent passes");
    let read = |key: &str| {
        let got = rt.block_on(kv.clone().get(key, None)).expect("a get");
        got.kvs().first().map(|kv| kv.value().to_vec())
    };
    let expired = pgha_testkit::poll(Duration::from_secs(6), Duration::from_millis(100), || {
        read("leased").is_none().then_some(())
    });
    assert!(expired.is_some(), "the lease was kept alive");

    hold.clear();
    assert_eq!(hold.held(), 0);
    let lease = rt
        .block_on(leases.clone().grant(5, None))
        .expect("a lease")
        .id();
    rt.block_on(leases.clone().keep_alive(lease))
        .expect("a keep-alive passes once cleared");
    rt.block_on(kv.clone().put("lost-2", "y", None))
        .expect("a put passes once cleared");
    assert_eq!(read("lost-2"), Some(b"y".to_vec()));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(read("lost-1"), None, "a call dropped unsent landed");
    assert_eq!(hold.sent_on(), None);
}
