//! Which endpoint the calls go to after one fails, fast or at its bound.

use super::*;

/// The store's bound of a call in these tests.
const BOUND: Duration = Duration::from_millis(20);

/// Three endpoints nobody listens on (nothing is reached: the clients connect lazily).
async fn three() -> Endpoints {
    let addresses: Vec<String> = (1..=3).map(|i| format!("http://127.0.0.1:{i}")).collect();
    Endpoints::connect(&addresses, &ConnectOptions::new(), None, BOUND)
        .await
        .expect("lazy clients")
}

/// A call to the endpoint in use that runs to the store's bound without an answer.
async fn runs_to_its_bound(endpoints: &Endpoints) {
    let attempt = endpoints.attempt();
    tokio::time::sleep(BOUND).await;
    drop(attempt);
}

/// Found by CI (`faults::etcd_stalls::etcd_member_stalled`, /primary 503 for 200 ms): etcd's
/// leader (the endpoint in use) stalled; while the other two elected a new one they answered
/// "no leader" at once, and after two such answers the calls went back to the stalled member,
/// a whole bound each time, until the leader's trust in its lease ran out.
#[tokio::test]
async fn a_member_that_ran_a_call_to_its_bound_is_passed_over_while_others_answer() {
    let endpoints = three().await;
    endpoints.in_use.store(1, Ordering::SeqCst);
    runs_to_its_bound(&endpoints).await; // m1 stalled
    assert_eq!(endpoints.in_use(), 2);
    for _ in 0..4 {
        endpoints.attempt().refused(); // no leader yet
        assert_ne!(
            endpoints.in_use(),
            1,
            "back to the stalled member while the others answer"
        );
    }
    // once it answers, it is a member like the others again
    endpoints.in_use.store(1, Ordering::SeqCst);
    endpoints.attempt().answered();
    endpoints.in_use.store(0, Ordering::SeqCst);
    endpoints.attempt().refused();
    assert_eq!(endpoints.in_use(), 1);
}

/// When every member ran a call to its bound lately, the calls go round them all as before.
#[tokio::test]
async fn when_every_member_was_slow_the_next_one_is_tried() {
    let endpoints = three().await;
    for expected in [1, 2, 0, 1] {
        runs_to_its_bound(&endpoints).await;
        assert_eq!(endpoints.in_use(), expected);
    }
}

/// From the review: a call its caller gave up on before the store's bound (a leader close to
/// its deadline bounds its calls by it) says nothing of the endpoint's speed: passed over for
/// it, a healthy endpoint a little slower than that caller's bound was left out while the
/// others refused every call.
#[tokio::test]
async fn a_call_its_caller_gave_up_on_sooner_does_not_make_a_member_slow() {
    let endpoints = three().await;
    drop(endpoints.attempt()); // m0: its caller gave up at once
    assert_eq!(endpoints.in_use(), 1);
    endpoints.attempt().refused(); // m1
    endpoints.attempt().refused(); // m2
    assert_eq!(endpoints.in_use(), 0, "m0 left out");
}
