//! The ttl changed while the cluster runs: member keys stay in the store across a raise.

use super::*;

/// Found by the simulation (seed 435): with the ttl raised live from 3 s to 10 s, a member's
/// heartbeat came a third of the new ttl after its last put (3.3 s), while its key was still on
/// the lease of that put (3 s): the key went for a moment, and an election that did not see
/// that member, the furthest ahead, passed it over. The heartbeat goes by the shorter ttl.
#[test]
fn a_member_key_is_put_again_before_its_lease_of_the_old_ttl_runs_out() {
    let following = standby(1, 5000, Some("n1"));
    let led = |ttl, margin| {
        View::led_by("n1", 9, &primary(1, 6000))
            .with("n2", record(&following, Some("n1")))
            .ttl(ttl, margin)
    };
    let mut n2 = member("n2");
    let d = n2.step(&obs(0, following.clone(), &led(3_000, 600), vec![]));
    assert!(has(&d, |a| matches!(a, Action::PublishMember(_))), "{d:?}");
    let raised = led(10_000, 2_000);
    let put_again = (1..=29).map(|tenth| tenth * 100).find(|&at| {
        let d = n2.step(&obs(at, following.clone(), &raised, vec![]));
        has(&d, |a| matches!(a, Action::PublishMember(_)))
    });
    assert_eq!(
        put_again,
        Some(1_000),
        "a third of the 3 s lease the key is on"
    );
    // from then on, on a lease of the new ttl: a third of it
    let next = (11..=50).map(|tenth| tenth * 100).find(|&at| {
        let d = n2.step(&obs(at, following.clone(), &raised, vec![]));
        has(&d, |a| matches!(a, Action::PublishMember(_)))
    });
    assert_eq!(next, Some(4_400));
}
