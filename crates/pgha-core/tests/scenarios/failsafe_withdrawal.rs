//! `pgha failover --to NAME` to a member a down leader's failsafe list left out: refused until
//! the operator says the leader is down (`--leader-down` withdraws the list).

use super::*;

/// n1 led with the list {n1, n2} and is gone; n3 (left out of it) runs as a standby.
fn n1_gone_with_its_list() -> View {
    let mut view = View::new().with("n3", record(&standby(1, 5_000, None), None));
    view.0.failsafe = Some(failsafe_list("n1", &["n1", "n2"]));
    view
}

fn manual_failover_to(target: &str) -> SwitchoverRequest {
    SwitchoverRequest {
        from: None,
        to: Some(name(target)),
        kind: RequestKind::Failover {
            force: false,
            allow_data_loss: false,
        },
        at: None,
    }
}

/// Found by review (session 27's note): with the leader killed and every member of its list
/// gone, `pgha failover --to n3` was accepted and then waited 120 s (n3 does not run while n1
/// may write on the listed members' promises): the CLI refuses it at once, saying what the
/// way out is; with a listed member back on the store (its wait ends within a ttl), or the
/// list withdrawn, it is accepted.
#[test]
fn a_manual_failover_to_a_member_a_down_leaders_list_left_out_is_refused_until_withdrawn() {
    let view = n1_gone_with_its_list();
    let refused = switchover::check(&view.0, Lsn(0), &manual_failover_to("n3"));
    assert_eq!(
        refused,
        Err(switchover::Refusal::OutsideFailsafeList {
            target: name("n3"),
            leader: name("n1")
        })
    );
    assert!(refused
        .unwrap_err()
        .to_string()
        .contains("add --leader-down"));

    let listed_back = view
        .clone()
        .with("n2", record(&standby(1, 4_000, None), None));
    let accepted = switchover::check(&listed_back.0, Lsn(0), &manual_failover_to("n3"));
    assert_eq!(accepted, Ok(name("n3")));

    let mut withdrawn = view.clone();
    withdrawn.0.failsafe = None;
    let accepted = switchover::check(&withdrawn.0, Lsn(0), &manual_failover_to("n3"));
    assert_eq!(accepted, Ok(name("n3")));

    // n3 then takes over on the request, as on any manual failover without a leader.
    let d = member("n3").step(&obs(
        0,
        standby(1, 5_000, None),
        &withdrawn.failover_to("n3"),
        vec![],
    ));
    assert!(acquires(&d), "{:?}", d.reason);
    // Without the withdrawal it keeps waiting, the request pending.
    let d = member("n3").step(&obs(
        0,
        standby(1, 5_000, None),
        &view.failover_to("n3"),
        vec![],
    ));
    assert_eq!(d.reason, Reason::OutsideFailsafeList { leader: name("n1") });
}

#[test]
fn a_withdrawn_list_is_recorded_with_the_leader_it_belonged_to() {
    let list = failsafe_list("n1", &["n1", "n2"]);
    let position = LeaderPosition {
        leader: name("n1"),
        timeline: Timeline(3),
        lsn: Lsn(7_000),
        term: Some(9),
        unfenced: false,
    };
    let event = switchover::failsafe_list_withdrawn(&list, &name("n3"), Some(&position));
    assert_eq!(event.kind, EventKind::FailsafeListWithdrawn);
    assert_eq!(event.kind.label(), "failsafe_list_withdrawn");
    assert_eq!((event.from, event.to), (Some(name("n1")), Some(name("n3"))));
    assert_eq!((event.timeline, event.lsn), (Timeline(3), Lsn(7_000)));
    assert!(
        event
            .reason
            .contains("n1's failsafe list (n1, n2) withdrawn"),
        "{}",
        event.reason
    );
}
