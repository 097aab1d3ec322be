//! The records of synchronous standbys gone from the store while their PostgreSQL streams on.

use super::*;

/// Found by the distributed campaign's new fault, etcd's disk frozen for 15 s (mode `on`):
/// etcd answered no read, but kept the leader's lease alive, while the members' keys, which
/// their agents renew only with a record they could not publish, expired; once it thawed the
/// leader's first step read a store with no member record, and emptied
/// `synchronous_standby_names` ("degraded to asynchronous: no standby to confirm commits")
/// while both standbys streamed and confirmed, until they published again 43 ms later. A
/// standby PostgreSQL counts, still streaming, whose record is missing, keeps being counted
/// with the record last read for a ttl from when the leader first misses it; then it goes as
/// before (its agent may be gone for good: the published set must let the others take over).
#[test]
fn standbys_whose_records_expired_in_a_store_outage_stay_synchronous_for_a_ttl() {
    let (mut n1, mut view, applied) = leading(SyncMode::On, &["n2", "n3"]);
    let pg = at(5000, &applied, &[("n2", 5000), ("n3", 5000)]);
    let d = n1.step(&obs(0, pg.clone(), &view, vec![acquired(0, 7)]));
    assert_eq!(applies(&d), None, "settled, yet changed: {d:?}");
    // the store back after an outage longer than a ttl: no member record but the leader key
    view.0.members.clear();
    let ttl = view.0.config.ttl_ms;
    for at in (1..=ttl / 1_000).map(|s| s * 1_000) {
        let d = tick(&mut n1, at, pg.clone(), &view);
        assert_eq!(
            applies(&d),
            None,
            "{at} ms in, standbys that stream lost their place for want of a record: {d:?}"
        );
    }
    // still missing a ttl after it was first missed: n2 and n3 are not counted any more
    let d = tick(&mut n1, 1_000 + ttl, pg, &view);
    assert!(
        applies(&d).is_some_and(|a| a.is_async()),
        "standbys without a record for a ttl still counted: {d:?}"
    );
}
