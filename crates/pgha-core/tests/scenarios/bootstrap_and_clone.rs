//! A new cluster's bootstrap, a store that lost the cluster, and cloning members.

use super::*;

/// Issue 14: a member without data clones from the furthest standby tagged `clonefrom` that
/// streams from the leader, not from the primary; without one (or once it no longer streams),
/// from the leader.
#[test]
fn a_new_member_clones_from_a_streaming_clonefrom_standby() {
    let clonefrom = Tags {
        clonefrom: true,
        ..Tags::default()
    };
    let tagged = |pg: &LocalPg| MemberRecord {
        tags: clonefrom.clone(),
        ..record(pg, Some("n1"))
    };
    let streaming = standby(1, 900, Some("n1"));
    let behind = standby(1, 800, Some("n1"));
    let view = View::led_by("n1", 7, &primary(1, 1000))
        .with("n2", tagged(&streaming))
        .with("n4", tagged(&behind));
    let empty = LocalPg {
        data: DataDir::Missing,
        ..stopped(standby(0, 0, None))
    };
    let d = member("n3").step(&obs(0, empty.clone(), &view, vec![]));
    assert_eq!(d.reason, Reason::CloningFrom { source: name("n2") });
    assert!(has(&d, |a| *a
        == Action::Reclone {
            from: name("n2"),
            move_aside: false
        }));
    // n2 stopped streaming: the leader.
    let view = View::led_by("n1", 7, &primary(1, 1000)).with("n2", tagged(&standby(1, 900, None)));
    let d = member("n3").step(&obs(0, empty, &view, vec![]));
    assert_eq!(d.reason, Reason::CloningFrom { source: name("n1") });
}

/// Found by `faults::impostors::a_standby_pointed_at_an_empty_etcd_does_not_promote`: a standby
/// whose agent was restarted pointed at another etcd, an empty one, saw no leader, no member and no
/// cluster, and promoted itself in its first step beside the primary that lived on (3 writes
/// acknowledged by it, then lost). A store without the cluster's identifier is led again only once
/// a majority of the members this one formed the cluster with publish data there; after etcd's data
/// is lost they all do.
#[test]
fn a_store_without_the_cluster_is_led_only_by_a_majority_of_its_members() {
    let local = standby(1, 5000, Some("n2"));
    // n3 learns who formed the cluster from a store that holds it.
    let mut n3 = member("n3");
    let whole = View::led_by("n2", 7, &primary(1, 5000))
        .with("n1", record(&standby(1, 5000, Some("n2")), Some("n2")));
    n3.step(&obs(0, local.clone(), &whole, vec![]));
    assert_eq!(n3.peers(), vec![name("n1"), name("n2"), name("n3")]);
    // Restarted (its agent reads the peers back) and pointed at an empty store.
    let mut restarted = member("n3");
    restarted.knows_peers(n3.peers());
    let empty = View(ClusterView::default());
    for at in [0, 5_000, 60_000] {
        let d = restarted.step(&obs(at, local.clone(), &empty, vec![]));
        assert_eq!(
            d.reason,
            Reason::StoreWithoutItsPeers {
                present: 1,
                known: vec![name("n1"), name("n2"), name("n3")]
            }
        );
        assert!(!acquires(&d), "{d:?}");
    }
    // The store wiped under the whole cluster: the others publish again, and the election
    // goes on.
    let wiped = View(ClusterView::default())
        .with("n1", record(&standby(1, 4000, None), None))
        .with("n2", record(&standby(1, 4500, None), None));
    let mut at = 61_000;
    loop {
        let d = restarted.step(&obs(at, local.clone(), &wiped, vec![]));
        assert_not_reason!(d, Reason::StoreWithoutItsPeers { .. });
        if acquires(&d) {
            break;
        }
        at += 1000;
        assert!(at < 120_000, "never ran: {}", d.reason);
    }
    // A member that never formed a cluster with others is not held back.
    let d = member("n3").step(&obs(0, local.clone(), &empty, vec![]));
    assert_not_reason!(d, Reason::StoreWithoutItsPeers { .. });
    // Nor does it learn peers from another cluster's store.
    let mut foreign = whole.clone();
    foreign.0.initialize = Some(SystemId(2));
    let mut n3 = member("n3");
    let d = n3.step(&obs(0, local, &foreign, vec![]));
    assert!(matches!(d.reason, Reason::SystemIdMismatch { .. }), "{d:?}");
    assert!(n3.peers().is_empty(), "{:?}", n3.peers());
}

/// Found by `faults::disk_full::leader_data_disk_full`: a clone that fails was begun again every
/// loop, each attempt a base backup on the leader (a checkpoint there, a slot, perhaps gigabytes
/// copied again). After a failure the next waits twice the loop, doubling per failure in a row up
/// to a ttl; a success ends the backoff.
#[test]
fn a_failing_clone_backs_off() {
    let mut n3 = member("n3");
    let view = View::led_by("n1", 7, &primary(1, 1000));
    let empty = LocalPg {
        data: DataDir::Missing,
        ..stopped(standby(0, 0, None))
    };
    let clones = |d: &Decision| has(d, |a| matches!(a, Action::Reclone { .. }));
    let failed = || Outcome::Job {
        kind: JobKind::Reclone,
        result: Err("pg_basebackup failed".into()),
    };
    let config = ClusterConfig::default();
    let (loop_ms, ttl) = (config.loop_wait_ms, config.ttl_ms);
    assert!(clones(&n3.step(&obs(0, empty.clone(), &view, vec![]))));
    let d = n3.step(&obs(100, empty.clone(), &view, vec![failed()]));
    assert_eq!(
        d.reason,
        Reason::CloneFailing {
            failures: 1,
            retry_in_ms: 2 * loop_ms
        }
    );
    assert!(!clones(&d));
    assert!(d.wake_at <= Millis(100 + 2 * loop_ms));
    assert!(clones(&n3.step(&obs(
        100 + 2 * loop_ms,
        empty.clone(),
        &view,
        vec![]
    ))));
    let at = 200 + 2 * loop_ms;
    let d = n3.step(&obs(at, empty.clone(), &view, vec![failed()]));
    assert!(!clones(&d));
    assert!(matches!(d.reason, Reason::CloneFailing { failures: 2, .. }));
    assert!(!clones(&n3.step(&obs(
        at + 4 * loop_ms - 1,
        empty.clone(),
        &view,
        vec![]
    ))));
    assert!(clones(&n3.step(&obs(
        at + 4 * loop_ms,
        empty.clone(),
        &view,
        vec![]
    ))));
    // many failures: a ttl at most
    let mut now = at + 4 * loop_ms;
    for _ in 0..6 {
        now += 1;
        n3.step(&obs(now, empty.clone(), &view, vec![failed()]));
        now += ttl;
        assert!(clones(&n3.step(&obs(now, empty.clone(), &view, vec![]))));
    }
    // once one succeeded, the next failure waits twice the loop again
    n3.step(&obs(
        now + 1,
        empty.clone(),
        &view,
        vec![job_done(JobKind::Reclone)],
    ));
    n3.step(&obs(now + 2, empty.clone(), &view, vec![]));
    let d = n3.step(&obs(now + 3, empty, &view, vec![failed()]));
    assert!(
        matches!(d.reason, Reason::CloneFailing { failures: 1, .. }),
        "{}",
        d.reason
    );
}

#[test]
fn a_new_cluster_races_for_the_key_then_bootstraps() {
    let mut n1 = member("n1");
    let empty = View(ClusterView::default());
    let d = n1.step(&obs(0, LocalPg::default(), &empty, vec![]));
    assert_eq!(d.reason, Reason::RacingToBootstrap);
    let mine = View(ClusterView::default()).leader("n1", 1);
    let d = n1.step(&obs(10, LocalPg::default(), &mine, vec![acquired(0, 1)]));
    assert_eq!(d.actions.last(), Some(&Action::Bootstrap));
}

/// etcd lost its data while the cluster ran: no leader, no system identifier in the store.
/// A member without data (a new one, or one re-cloning) must not initialise another cluster,
/// which would take the clients with an empty database: neither while a member publishes
/// data, nor, when none does, once it has seen the cluster's identifier itself.
#[test]
fn a_store_that_lost_its_keys_gets_no_new_cluster() {
    let with_data = standby(2, 9_000, None);
    let wiped = View(ClusterView::default()).with("n1", record(&with_data, None));
    let mut n3 = member("n3");
    for now in (0..=20_000).step_by(1_000) {
        let d = n3.step(&obs(now, LocalPg::default(), &wiped, vec![]));
        assert_reason!(d, Reason::StoreLostItsCluster { .. });
        assert!(!acquires(&d), "{:?}", d.actions);
    }
    // n3 saw the cluster before the store lost it, and nobody has published since
    let mut n3 = member("n3");
    let before = View::new().with("n1", record(&with_data, None));
    n3.step(&obs(0, LocalPg::default(), &before, vec![]));
    let empty = View(ClusterView::default());
    for now in (1_000..=20_000).step_by(1_000) {
        let d = n3.step(&obs(now, LocalPg::default(), &empty, vec![]));
        assert_reason!(d, Reason::StoreLostItsCluster { with_data: None });
        assert!(!acquires(&d), "{:?}", d.actions);
    }
    // n3's agent restarted since, its data gone: it remembers the cluster beside its data
    let mut n3 = member("n3");
    n3.knows_cluster(SystemId(1));
    let d = n3.step(&obs(0, LocalPg::default(), &empty, vec![]));
    assert_reason!(d, Reason::StoreLostItsCluster { with_data: None });
    assert!(!acquires(&d), "{:?}", d.actions);
    // Given the key all the same (seeded by `pgha up`), it lets go of it instead of
    // initialising (before: it bootstrapped an empty cluster in its place)
    let seeded = View(ClusterView::default()).leader("n3", 1);
    n3.step(&obs(10, LocalPg::default(), &seeded, vec![]));
    let renewal = Outcome::LeaderRenewed {
        requested_at: Millis(10),
        revision: 1,
        ttl: ClusterConfig::default().ttl(),
    };
    let d = n3.step(&obs(20, LocalPg::default(), &seeded, vec![renewal]));
    assert_reason!(d, Reason::StoreLostItsCluster { with_data: None });
    assert!(
        !has(&d, |a| matches!(a, Action::Bootstrap)),
        "{:?}",
        d.actions
    );
    assert!(has(&d, |a| matches!(a, Action::ReleaseLeader { .. })));
}

#[test]
fn a_new_cluster_given_the_key_says_so_and_records_where_its_wal_begins() {
    let mut n1 = member("n1");
    // `pgha up` gives the key of a cluster without data to the member that bootstraps it.
    let seeded = View(ClusterView::default()).leader("n1", 1);
    let d = n1.step(&obs(0, LocalPg::default(), &seeded, vec![]));
    assert_eq!(d.reason, Reason::AdoptingLease { new_cluster: true });
    let line = d.reason.to_string();
    assert!(
        line.contains("new cluster") && !line.contains("from before"),
        "{line}"
    );
    let renewal = Outcome::LeaderRenewed {
        requested_at: Millis(0),
        revision: 1,
        ttl: ClusterConfig::default().ttl(),
    };
    let d = n1.step(&obs(10, LocalPg::default(), &seeded, vec![renewal]));
    assert_eq!(d.actions.last(), Some(&Action::Bootstrap));
    let bootstrapped = job_done(JobKind::Bootstrap);
    let d = n1.step(&obs(
        500,
        primary(1, 0x0150_0000),
        &seeded,
        vec![bootstrapped],
    ));
    let event = recorded(&d).unwrap_or_else(|| panic!("no history entry: {:?}", d.actions));
    assert_eq!(event.kind, EventKind::Bootstrap);
    assert_eq!(
        event.lsn,
        Lsn(0x0150_0000),
        "the position after initdb, not 0/0"
    );

    // A member that held the key before (with data) adopts it, and says that.
    let mut n1 = member("n1");
    let view = View::led_by("n1", 7, &primary(1, 1000));
    let d = n1.step(&obs(0, primary(1, 1000), &view, vec![]));
    assert_eq!(d.reason, Reason::AdoptingLease { new_cluster: false });
    assert!(d.reason.to_string().contains("from before"));
}

#[test]
fn a_first_clone_is_a_clone_and_a_reclone_says_it_moves_data_aside() {
    let mut n2 = member("n2");
    let view = View::led_by("n1", 7, &primary(1, 1000));
    let d = n2.step(&obs(0, LocalPg::default(), &view, vec![]));
    assert!(has(&d, |a| matches!(
        a,
        Action::Reclone {
            move_aside: false,
            ..
        }
    )));
    let d = n2.step(&obs(3, LocalPg::default(), &view, vec![]));
    assert_eq!(
        d.reason,
        Reason::JobRunning {
            job: JobWhat::CloneFrom(name("n1")),
            for_ms: 3
        }
    );
    assert_eq!(d.reason.to_string(), "clone from n1 running for 3 ms");
    assert_eq!(n2.running_job_what(), Some(&JobWhat::CloneFrom(name("n1"))));
    let reclone = Action::Reclone {
        from: name("n1"),
        move_aside: true,
    };
    let what = JobWhat::of(&reclone).unwrap();
    assert_eq!(what.kind(), JobKind::Reclone);
    assert_eq!(what.to_string(), "re-clone from n1 (old data moved aside)");
    assert_eq!(
        JobWhat::of(&Action::Bootstrap).unwrap().to_string(),
        "Bootstrap"
    );
}
