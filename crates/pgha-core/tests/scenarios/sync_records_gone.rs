//! The records of synchronous standbys gone from the store while their PostgreSQL streams on.

use super::*;

fn streaming(n: &str, flush: u64) -> ReplicaState {
    ReplicaState {
        name: name(n),
        streaming: true,
        flush_lsn: Lsn(flush),
        replay_lsn: Lsn(flush),
    }
}

fn applied_sync(d: &Decision) -> Option<SyncApplied> {
    d.actions.iter().find_map(|a| match a {
        Action::SetSync(applied) => Some(applied.clone()),
        _ => None,
    })
}

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
    let mut n1 = member("n1");
    let mut view = View::new()
        .leader("n1", 7)
        .with("n1", record(&primary(1, 5000), None))
        .with("n2", record(&standby(1, 5000, Some("n1")), None))
        .with("n3", record(&standby(1, 5000, Some("n1")), None))
        .config(|c| c.synchronous_mode = SyncMode::On);
    let applied = SyncApplied {
        method: SyncMethod::Priority,
        count: 1,
        names: vec![name("n2"), name("n3")],
    };
    view.0.sync = SyncSet {
        leader: Some(name("n1")),
        members: [name("n2"), name("n3")].into(),
        count: 1,
        method: SyncMethod::Priority,
    };
    view.0.sync_revision = 12;
    let pg = LocalPg {
        replicas: vec![streaming("n2", 5000), streaming("n3", 5000)],
        sync_applied: applied.clone(),
        ..primary(1, 5000)
    };
    let d = n1.step(&obs(0, pg.clone(), &view, vec![acquired(0, 7)]));
    assert_eq!(applied_sync(&d), None, "settled, yet changed: {d:?}");
    // the store back after an outage longer than a ttl: no member record but the leader key
    view.0.members.retain(|n, _| n.as_str() == "n1");
    view.0.members.remove(&name("n1"));
    let ttl = view.0.config.ttl_ms;
    let mut renewal_sent = 0;
    for at in (1..=ttl / 1_000).map(|s| s * 1_000) {
        let renewal = vec![renewed(renewal_sent)];
        renewal_sent = at;
        let d = n1.step(&obs(at, pg.clone(), &view, renewal));
        assert_eq!(
            applied_sync(&d),
            None,
            "{at} ms in, standbys that stream lost their place for want of a record: {d:?}"
        );
    }
    // still missing a ttl after it was first missed: n2 and n3 are not counted any more
    let d = n1.step(&obs(1_000 + ttl, pg, &view, vec![renewed(renewal_sent)]));
    assert!(
        applied_sync(&d).is_some_and(|a| a.is_async()),
        "standbys without a record for a ttl still counted: {d:?}"
    );
}
