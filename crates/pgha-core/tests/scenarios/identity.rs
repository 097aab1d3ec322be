//! A second agent under this member's name on another host takes nothing.

use super::*;

fn at_host(n: &str, ip: &str) -> Member {
    Member::new(MemberSettings {
        name: name(n),
        tags: Tags::default(),
        addresses: [("api".to_string(), format!("{ip}:8008"))].into(),
        config: ClusterConfig::default(),
    })
}

/// Found by `faults::impostors::a_second_agent_under_the_leaders_name_takes_nothing`: a second
/// agent started under the leader's name on another host (a configuration copied without changing
/// `member.name`) found the leader key naming it, renewed the leader's lease as its own and, having
/// no data, let it go; it also rewrote the leader's record with its own addresses. The store's
/// record of a member that names other addresses than this member's is another agent's: this member
/// takes nothing under that name (no lease, no record, no candidacy), demotes what it may have made
/// writable, and says why.
#[test]
fn a_member_whose_name_the_store_gives_other_addresses_takes_nothing() {
    let leader = primary(1, 5000);
    let mut theirs = record(&leader, Some("n1"));
    theirs.addresses = [("api".to_string(), "10.0.0.1:8008".to_string())].into();
    let view = View::new().leader("n1", 7).with("n1", theirs.clone());
    let mut copy = at_host("n1", "10.0.0.9");
    let empty = LocalPg {
        data: DataDir::Missing,
        ..LocalPg::default()
    };
    for at in [0, 1000, 20_000] {
        let d = copy.step(&obs(at, empty.clone(), &view, vec![]));
        assert!(
            matches!(&d.reason, Reason::NameTaken { theirs, .. } if theirs.contains("10.0.0.1:8008")),
            "{:?}",
            d.reason
        );
        assert!(d.reason.to_string().contains("is taken"), "{}", d.reason);
        assert!(d.actions.is_empty(), "{:?}", d.actions);
    }
    // A copy that runs a writable PostgreSQL demotes it.
    let mut writable = at_host("n1", "10.0.0.9");
    let d = writable.step(&obs(0, primary(1, 5000), &view, vec![]));
    assert!(has(&d, |a| matches!(a, Action::Demote { .. })), "{d:?}");
    // The member whose addresses the record names is at home; so is one whose record names
    // none (an agent of an older version).
    let mut own = at_host("n1", "10.0.0.1");
    let d = own.step(&obs(0, leader.clone(), &view, vec![]));
    assert_not_reason!(d, Reason::NameTaken { .. });
    let unaddressed = View::new()
        .leader("n1", 7)
        .with("n1", record(&leader, Some("n1")));
    let d = at_host("n1", "10.0.0.9").step(&obs(0, empty, &unaddressed, vec![]));
    assert_not_reason!(d, Reason::NameTaken { .. });
}
