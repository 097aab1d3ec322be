//! What a winner of the lease writes to the store's synchronous set before its PostgreSQL
//! takes a write: the set must name it as the leader and count no more standbys than
//! PostgreSQL will, or the next election reads a set that no longer describes the commits.

use super::*;

/// The set `leader` published: `members`, `count`, priority.
fn set(leader: &str, members: &[&str], count: u32) -> SyncSet {
    SyncSet {
        leader: Some(name(leader)),
        members: members.iter().map(|m| name(m)).collect(),
        count,
        method: SyncMethod::Priority,
        mode: None,
    }
}

/// What `decision` publishes as the synchronous set before it promotes (`None` if it
/// publishes none, or promotes first).
fn published_before_promoting(decision: &Decision) -> Option<SyncSet> {
    let promote = decision
        .actions
        .iter()
        .position(|a| matches!(a, Action::Promote { .. }))
        .unwrap_or_else(|| panic!("no promotion: {decision:?}"));
    decision.actions[..promote].iter().find_map(|a| match a {
        Action::PublishSync { set, .. } => Some(set.clone()),
        _ => None,
    })
}

/// `me` holds the lease (term 11) after `old` led; `published` is the set `old` left, and
/// `me`'s PostgreSQL still counts `applied`. The decision of its first step as leader.
fn first_step_as_leader(me: &str, applied: SyncApplied, published: SyncSet) -> Decision {
    let local = LocalPg {
        sync_applied: applied,
        ..standby(1, 5000, None)
    };
    let mut view = View::new()
        .leader(me, 11)
        .with(me, record(&local, Some(me)))
        .config(|c| c.synchronous_mode = SyncMode::On);
    view.0.sync = published;
    member(me).step(&obs(200, local, &view, vec![acquired(100, 11)]))
}

/// Found by review: n1 published [n2, n3] and died; n2 won. Until n2 names itself in the set,
/// the set says n1 leads, and n1, which needs no quorum as the set's leader, could take over
/// from a dead n2 while n3 (holding what n2 acknowledged) restarts: every commit n2 took lost.
/// The winner publishes itself as the set's leader before its PostgreSQL takes a write.
#[test]
fn a_winner_names_itself_the_sets_leader_before_it_takes_a_write() {
    let counting_n3 = SyncApplied {
        method: SyncMethod::Priority,
        count: 1,
        names: vec![name("n3")],
    };
    let d = first_step_as_leader("n2", counting_n3, set("n1", &["n2", "n3"], 1));
    assert_eq!(
        published_before_promoting(&d),
        Some(set("n2", &["n2", "n3"], 1)),
        "{d:?}"
    );

    // Why: n2 gone, n3 restarting, n1 back as a standby. With the set as n1 left it, n1 runs
    // (and loses what n2 acknowledged through n3); with the set n2 published, it may not.
    let n1 = standby(1, 4000, None);
    let n1_back = |sync: SyncSet| {
        let mut view = View::new()
            .with("n1", record(&n1, None))
            .with("n3", record(&stopped(standby(1, 6000, None)), None))
            .config(|c| c.synchronous_mode = SyncMode::On);
        view.0.sync = sync;
        member("n1").step(&obs(0, n1.clone(), &view, vec![]))
    };
    assert!(acquires(&n1_back(set("n1", &["n2", "n3"], 1))));
    let d = n1_back(set("n2", &["n2", "n3"], 1));
    assert!(!acquires(&d), "{}", d.reason);
}

/// Found by review: n1 published [n2, n3, n4, n5] with a count of 3 (an election then needs
/// two of them); n2 won, its PostgreSQL still counting `FIRST 1 ("n3")` from an earlier term.
/// Its commits wait for n3 alone: if n2 dies, n4 and n5 make the quorum of the set as n1 left
/// it, and neither holds them. The winner lowers the published count to what its PostgreSQL
/// counts before it takes a write: an election then needs all three of n3, n4 and n5.
#[test]
fn a_winner_counting_fewer_standbys_than_the_set_lowers_the_count_first() {
    let counting_one = SyncApplied {
        method: SyncMethod::Priority,
        count: 1,
        names: vec![name("n3")],
    };
    let old = set("n1", &["n2", "n3", "n4", "n5"], 3);
    let d = first_step_as_leader("n2", counting_one, old.clone());
    let published = published_before_promoting(&d);
    assert_eq!(
        published,
        Some(set("n2", &["n2", "n3", "n4", "n5"], 1)),
        "{d:?}"
    );

    // Why: n2 gone, n3 silent; n4 and n5 report.
    let n4 = standby(2, 6000, None);
    let n4_judges = |sync: SyncSet| {
        let mut view = View::new()
            .with("n4", record(&n4, None))
            .with("n5", record(&standby(2, 6000, None), None))
            .config(|c| c.synchronous_mode = SyncMode::On);
        view.0.sync = sync;
        member("n4").step(&obs(0, n4.clone(), &view, vec![]))
    };
    assert!(acquires(&n4_judges(old)));
    let d = n4_judges(published.unwrap());
    assert_eq!(
        d.reason,
        Reason::QuorumIncomplete {
            confirmed: 2,
            needed: 3,
            replaying: vec![],
        }
    );
}

/// A winner whose set already names it, counting as many as it says, publishes nothing before
/// promoting (no store write on the way to the first commit); asynchronous mode, none.
#[test]
fn a_winner_the_set_already_describes_publishes_nothing_first() {
    let counting_n3 = SyncApplied {
        method: SyncMethod::Priority,
        count: 1,
        names: vec![name("n3")],
    };
    let d = first_step_as_leader("n2", counting_n3, set("n2", &["n2", "n3"], 1));
    assert_eq!(published_before_promoting(&d), None, "{d:?}");
}

/// The agent stops a decision at a failed set publication and reports the promotion after it
/// not begun: the next step plans both again (before, the core waited on a promotion nobody
/// ran, holding the lease of a cluster without a primary). Nothing is released or stopped.
#[test]
fn a_promotion_not_begun_for_a_failed_publication_is_planned_again() {
    let local = LocalPg {
        sync_applied: SyncApplied {
            method: SyncMethod::Priority,
            count: 1,
            names: vec![name("n3")],
        },
        ..standby(1, 5000, None)
    };
    let mut view = View::new()
        .leader("n2", 11)
        .with("n2", record(&local, Some("n2")))
        .config(|c| c.synchronous_mode = SyncMode::On);
    view.0.sync = set("n1", &["n2", "n3"], 1);
    let mut n2 = member("n2");
    let d = n2.step(&obs(200, local.clone(), &view, vec![acquired(100, 11)]));
    assert!(published_before_promoting(&d).is_some(), "{d:?}");
    let not_begun = Outcome::Job {
        kind: JobKind::Promote,
        result: Err(JobFailure::NotBegun("publish sync failed: timeout".into())),
    };
    let d = n2.step(&obs(1200, local, &view, vec![not_begun]));
    assert_eq!(
        published_before_promoting(&d),
        Some(set("n2", &["n2", "n3"], 1)),
        "{d:?}"
    );
    assert!(
        !has(&d, |a| matches!(
            a,
            Action::ReleaseLeader { .. } | Action::StopPostgres(_)
        )),
        "{d:?}"
    );
}

/// Found by review of the publication above: the winner n2 is named the set's leader before it
/// promotes, and a set's leader is not counted among its standbys (a set carried over may list
/// it). If its promotion then fails (PostgreSQL stopped, lease let go), n3 needed only its own
/// record and ran, losing what n1 acknowledged through n2 alone. A set leader still listed
/// among the members is waited for while its record is there; gone (left, or expired), it is
/// the failure the set allows for, and the others run.
#[test]
fn a_set_leader_still_listed_is_waited_for_while_its_record_is_there() {
    let n3 = standby(1, 4000, None);
    let base = View::new()
        .with("n3", record(&n3, None))
        .config(|c| c.synchronous_mode = SyncMode::On);
    let mut view = base.clone();
    view.0.sync = set("n2", &["n2", "n3"], 1);
    let failed = view
        .clone()
        .with("n2", record(&stopped(standby(1, 4500, None)), None));
    let d = member("n3").step(&obs(0, n3.clone(), &failed, vec![]));
    assert_eq!(
        d.reason,
        Reason::QuorumIncomplete {
            confirmed: 1,
            needed: 2,
            replaying: vec![],
        }
    );
    let back = view
        .clone()
        .with("n2", record(&standby(1, 4500, None), None));
    let d = member("n3").step(&obs(0, n3.clone(), &back, vec![]));
    assert_eq!(d.reason, Reason::Behind { best: name("n2") });
    let d = member("n3").step(&obs(0, n3, &view, vec![]));
    assert!(acquires(&d), "{}", d.reason);
}

/// Found by `faults::hosts::etcd_host_lossy` (mode `on`, etcd's host losing packets): n2, a
/// standby that never led (its configuration lists nobody), won the lease from n1, whose set
/// was [n2, n3]. It promoted asynchronous while the set it published still said each commit
/// was on n3; it acknowledged 16 commits that only n1 (streaming from it, outside the set)
/// received, its own lease lapsed, and n3 was elected without them. A winner counting nobody
/// counts the set's other members before promoting (strict too, rather than a placeholder),
/// and mode `on` keeps counting them while none streams for a replication timeout after the
/// promotion (they connect once their agents have read who leads, and one that followed n2
/// before it promoted connects again after the timeline switch); after it, asynchronous.
#[test]
fn a_winner_counting_nobody_counts_the_sets_other_members_while_they_connect() {
    let n3_counted = SyncApplied {
        method: SyncMethod::Priority,
        count: 1,
        names: vec![name("n3")],
    };
    for mode in [SyncMode::On, SyncMode::Strict] {
        let local = standby(1, 5000, None);
        assert!(local.sync_applied.is_async());
        let mut view = View::new()
            .leader("n2", 11)
            .with("n2", record(&local, Some("n2")))
            .with("n3", record(&standby(1, 5000, None), None))
            .config(|c| c.synchronous_mode = mode);
        view.0.sync = set("n1", &["n2", "n3"], 1);
        let mut n2 = member("n2");
        let d = n2.step(&obs(200, local, &view, vec![acquired(100, 11)]));
        assert_eq!(applies(&d), Some(n3_counted.clone()), "{mode:?}: {d:?}");
        assert_eq!(
            published_before_promoting(&d),
            Some(set("n2", &["n2", "n3"], 1)),
            "{mode:?}"
        );
        if mode == SyncMode::Strict {
            continue;
        }

        // Writable at 1000, the promotion job ending a step later; n3 not streaming yet. The
        // replication timeout is a ttl (10 s).
        view.0.sync = set("n2", &["n2", "n3"], 1);
        let promoted = at(5100, &n3_counted, &[]);
        let d = n2.step(&obs(1000, promoted.clone(), &view, vec![]));
        assert!(
            recorded(&d).is_some_and(|e| e.kind == EventKind::Failover),
            "{d:?}"
        );
        n2.step(&obs(
            1100,
            promoted.clone(),
            &view,
            vec![job_done(JobKind::Promote)],
        ));
        let mut t = 1500;
        while t < 11_000 {
            let d = lead(&mut n2, t, &promoted, &view);
            assert_eq!(applies(&d), None, "at {t}: {d:?}");
            t += 500;
        }
        let d = lead(&mut n2, 11_000, &promoted, &view);
        assert!(applies(&d).is_some_and(|a| a.is_async()), "{d:?}");
        let event = recorded(&d).expect("history says commits stopped waiting");
        assert!(
            event.reason.starts_with("degraded to asynchronous"),
            "{}",
            event.reason
        );

        // n3 connecting within the timeout takes its place as ever: nothing changes.
        let mut n2 = member("n2");
        let mut fresh = view.clone();
        fresh.0.sync = set("n1", &["n2", "n3"], 1);
        n2.step(&obs(
            200,
            standby(1, 5000, None),
            &fresh,
            vec![acquired(100, 11)],
        ));
        n2.step(&obs(
            1000,
            promoted.clone(),
            &view,
            vec![job_done(JobKind::Promote)],
        ));
        let streaming = at(5100, &n3_counted, &[("n3", 5100)]);
        for t in [1500, 2000] {
            let d = lead(&mut n2, t, &streaming, &view);
            assert_eq!(applies(&d), None, "at {t}: {d:?}");
        }
        // Its stream ending within the timeout (a standby that followed n2 before it promoted
        // reconnects on the new timeline) leaves it counted; after the timeout, the ordinary
        // degradation.
        let d = lead(&mut n2, 2500, &promoted, &view);
        assert_eq!(applies(&d), None, "{d:?}");
        let d = lead(&mut n2, 11_000, &promoted, &view);
        assert!(applies(&d).is_some_and(|a| a.is_async()), "{d:?}");
    }
}

/// A step of n2 leading term 11 at `t`, its lease renewed then.
fn lead(n2: &mut Member, t: u64, local: &LocalPg, view: &View) -> Decision {
    let renewed = Outcome::LeaderRenewed {
        requested_at: Millis(t),
        revision: 11,
        ttl: ClusterConfig::default().ttl(),
    };
    n2.step(&obs(t, local.clone(), view, vec![renewed]))
}

/// Found by review: the winner counts every other member of the set an election may promote,
/// whatever the store shows of it now: one whose record is gone (its agent cut from a lossy
/// store) or tagged `nosync` since may still be elected from the set, and holds nothing of the
/// new term unless counted. Only one whose record says `nofailover` is left out.
#[test]
fn a_winner_counts_set_members_without_a_record_or_tagged_nosync_not_nofailover() {
    let local = standby(1, 5000, None);
    let first_step = |n3: Option<Tags>| {
        let mut view = View::new()
            .leader("n2", 11)
            .with("n2", record(&local, Some("n2")))
            .config(|c| c.synchronous_mode = SyncMode::On);
        if let Some(tags) = n3 {
            let mut r = record(&standby(1, 5000, None), None);
            r.tags = tags;
            view = view.with("n3", r);
        }
        view.0.sync = set("n1", &["n2", "n3"], 1);
        member("n2").step(&obs(200, local.clone(), &view, vec![acquired(100, 11)]))
    };
    for (what, tags) in [
        ("no record", None),
        (
            "tagged nosync",
            Some(Tags {
                nosync: true,
                ..Tags::default()
            }),
        ),
    ] {
        let d = first_step(tags);
        assert_eq!(
            applies(&d).map(|a| a.names),
            Some(vec![name("n3")]),
            "n3 with {what}: {d:?}"
        );
    }
    let d = first_step(Some(Tags {
        nofailover: true,
        ..Tags::default()
    }));
    assert_eq!(
        applies(&d),
        None,
        "n3 tagged nofailover is not counted: {d:?}"
    );
}

/// Found by review: an agent restarted within the wait adopts the lease of a primary counting
/// n3, no standby streaming yet; it keeps counting n3 for a replication timeout from the
/// adoption, as the promotion's wait would have (before: asynchronous at its first step). One
/// whose counted standby streams as it adopts starts no wait.
#[test]
fn a_restarted_leader_adopting_the_lease_gives_its_standbys_the_same_wait() {
    let n3_counted = SyncApplied {
        method: SyncMethod::Priority,
        count: 1,
        names: vec![name("n3")],
    };
    let primary = at(5100, &n3_counted, &[]);
    let mut view = View::new()
        .leader("n2", 11)
        .with("n2", record(&primary, Some("n2")))
        .with("n3", record(&standby(1, 5000, None), None))
        .config(|c| c.synchronous_mode = SyncMode::On);
    view.0.sync = set("n2", &["n2", "n3"], 1);
    let mut n2 = member("n2");
    let d = n2.step(&obs(1000, primary.clone(), &view, vec![]));
    assert!(matches!(d.reason, Reason::AdoptingLease { .. }), "{d:?}");
    for t in [1100, 5000, 10_900] {
        let d = lead(&mut n2, t, &primary, &view);
        assert_eq!(applies(&d), None, "at {t}: {d:?}");
    }
    let d = lead(&mut n2, 11_000, &primary, &view);
    assert!(applies(&d).is_some_and(|a| a.is_async()), "{d:?}");

    // Found by review: adopting the lease of a primary whose counted standby streams starts no
    // wait (they have connected): its stream ending later is the ordinary degradation.
    let streaming = at(5100, &n3_counted, &[("n3", 5100)]);
    let mut n2 = member("n2");
    n2.step(&obs(1000, streaming.clone(), &view, vec![]));
    lead(&mut n2, 1100, &streaming, &view);
    let gone = at(5100, &n3_counted, &[]);
    let d = lead(&mut n2, 2000, &gone, &view);
    assert!(applies(&d).is_some_and(|a| a.is_async()), "{d:?}");
}
