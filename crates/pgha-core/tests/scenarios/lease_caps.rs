//! Caps on a leader's trust from renewals with a shorter ttl whose answers have not come.

use super::*;

/// Found by the simulation (five members, seed 73100): the leader's renewals went
/// unanswered for a while (the store slow, then cut off); the ttl was lowered live, and a
/// renewal with the shorter ttl was sent, which may land and end the lease at send + 6 s.
/// Then the answer to a renewal sent earlier, with the longer ttl, came in. Only the cap of
/// the oldest unanswered renewal was remembered (it was the lowest), and that answer cleared
/// it: the leader trusted its lease (and its supervisor's deadline) up to 10 s from the older
/// send, past the instant the store would expire it. The answer clears only the caps of
/// renewals sent before its request; the shorter one sent after it still caps the trust.
#[test]
fn a_shorter_renewal_sent_after_an_answered_one_still_caps_the_trust() {
    let (mut n1, view) = established_leader();
    let mut now = 0;
    // Renewals every half loop from 500 ms on, none answered.
    while now < 4_500 {
        now += 500;
        n1.step(&obs(now, primary(1, 1000), &view, vec![]));
    }
    // The ttl lowered to 6 s: the next renewal, sent at 5000, may end the lease at 11000.
    let shorter = view.clone().config(|c| c.ttl_ms = 6_000);
    now += 500;
    let d = n1.step(&obs(now, primary(1, 1000), &shorter, vec![]));
    assert!(
        has(
            &d,
            |a| matches!(a, Action::RenewLeader { ttl, .. } if ttl.millis() == 6_000)
        ),
        "{d:?}"
    );
    // The answer to the renewal sent at 4500 (10 s) comes in.
    n1.step(&obs(
        5_100,
        primary(1, 1000),
        &shorter,
        vec![renewed(4_500)],
    ));
    let store_may_expire_at = 5_000 + 6_000;
    let fence = n1.fence_deadline().expect("a lease held");
    assert!(
        fence.0 < store_may_expire_at,
        "the supervisor's deadline {fence:?} is past {store_may_expire_at} ms, when the store may \
         expire the lease"
    );
    let trusted = n1.lease_deadline().expect("a lease held");
    assert!(trusted.0 <= store_may_expire_at - 2_500, "{trusted:?}");
}

/// An agent restarted beside its running primary holds no lease yet: it renews to adopt the
/// key, with the ttl the configuration has now (lowered to 6 s since its predecessor armed
/// the supervisor's deadline). Until an answer comes the member reports how late the
/// supervisor may let PostgreSQL write as far as that renewal goes: send + 6 s − margin / 2.
#[test]
fn an_agent_adopting_its_key_caps_the_fence_by_the_renewal_it_sent() {
    let view = View::led_by("n1", 7, &primary(1, 1000)).config(|c| c.ttl_ms = 6_000);
    let mut n1 = member("n1");
    assert_eq!(n1.fence_cap(), None);
    let d = n1.step(&obs(100, primary(1, 1000), &view, vec![]));
    assert!(
        has(
            &d,
            |a| matches!(a, Action::RenewLeader { ttl, .. } if ttl.millis() == 6_000)
        ),
        "{d:?}"
    );
    assert_eq!(n1.fence_deadline(), None, "no lease trusted yet");
    assert_eq!(n1.fence_cap(), Some(Millis(100 + 6_000 - 2_500 / 2)));
}

/// Found by review: a host's watchdog resets it up to its timeout (1 s at least) after the
/// supervisor's last keep-alive, which stops at the fencing deadline, half a margin before
/// the store may expire the lease. With the margin lowered live below twice that timeout
/// (`pgha config set ttl_ms=6000` brings it to 1.5 s), a supervisor stalled at its deadline
/// left PostgreSQL writing after another member could lead. The deadline (and a cap without a
/// lease) leaves the watchdog's timeout before the expiry too; never, though, sooner than the
/// supervisor's stop may begin after the trust's end (a second review: a timeout chosen from a
/// far larger margin put the deadline in the past, and every primary was killed at once).
#[test]
fn the_fence_leaves_a_watchdogs_timeout_before_the_store_may_expire_the_lease() {
    let leader_with = |margin: u64| {
        let view = View::led_by("n1", 7, &primary(1, 1000)).config(|c| {
            c.ttl_ms = 6_000;
            c.safety_margin_ms = margin;
            c.loop_wait_ms = 500;
        });
        let acquired = Outcome::LeaderAcquired {
            requested_at: Millis(100),
            revision: 7,
            ttl: view.0.config.ttl(),
        };
        let mut n1 = member("n1");
        n1.step(&obs(100, primary(1, 1000), &view, vec![acquired]));
        (n1, view)
    };
    let (watchdog, stop_before) = (Millis(1_000), Millis(250));
    let expires = 100 + 6_000;
    let (n1, view) = leader_with(1_500);
    assert_eq!(n1.fence_deadline(), Some(Millis(expires - 750)));
    assert_eq!(
        n1.fence_deadline_leaving(watchdog, stop_before),
        Some(Millis(expires - 1_000)),
        "the watchdog's reset would come after the store may expire the lease"
    );
    assert_eq!(
        n1.fence_deadline_leaving(Millis(200), stop_before),
        n1.fence_deadline(),
        "a short timeout fits in half the margin: nothing moves"
    );
    // A timeout far past the margin: as early as the supervisor may stop, no earlier.
    let trusted_until = expires - 1_500;
    assert_eq!(
        n1.fence_deadline_leaving(Millis(5_000), stop_before),
        Some(Millis(trusted_until + 250))
    );
    // Without a trusted lease, the cap of an unanswered renewal leaves the same room.
    let mut adopting = member("n1");
    adopting.step(&obs(100, primary(1, 1000), &view, vec![]));
    assert_eq!(adopting.fence_cap(), Some(Millis(expires - 750)));
    assert_eq!(
        adopting.fence_cap_leaving(watchdog, stop_before),
        Some(Millis(expires - 1_000))
    );
    assert_eq!(
        adopting.fence_cap_leaving(Millis(5_000), stop_before),
        Some(Millis(expires - 1_250))
    );
}
