//! A synchronous standby that stops flushing (cut off either way, its disk stalled) while its
//! connection stays up: commits stop waiting on it well before the replication timeout.

use super::*;

/// n2, the synchronous standby (`FIRST 1 (n2, n3)`), stands at 5000 while the primary writes
/// on and n3 follows it; its connection stays up (PostgreSQL still shows it streaming, as it
/// would until the replication timeout). After `stalled_standby_ms` (3 s here) the leader has
/// PostgreSQL count n3 alone, and says why; the store's set lets n2 go only once n3 holds the
/// primary's position; n2 flushing again is counted again, behind n3.
#[test]
fn a_synchronous_standby_that_stops_flushing_no_longer_holds_commits_up() {
    let (mut n1, view, both) = leading(SyncMode::On, &["n2", "n3"]);
    assert_eq!(ClusterConfig::default().stalled_standby_ms(), 3000);
    n1.step(&obs(
        0,
        at(5000, &both, &[("n2", 5000), ("n3", 5000)]),
        &view,
        vec![acquired(0, 7)],
    ));
    // n2 stops flushing at 5000 from t=1000
    for t in [1000u64, 2000, 3000, 3999] {
        let lsn = 5000 + t;
        let d = tick(
            &mut n1,
            t,
            at(lsn, &both, &[("n2", 5000), ("n3", lsn)]),
            &view,
        );
        assert_eq!(applies(&d), None, "t={t}: n2 stood still for less than 3 s");
    }
    let d = tick(
        &mut n1,
        4000,
        at(9000, &both, &[("n2", 5000), ("n3", 9000)]),
        &view,
    );
    let n3_alone = SyncApplied {
        method: SyncMethod::Priority,
        count: 1,
        names: vec![name("n3")],
    };
    assert_eq!(applies(&d), Some(n3_alone.clone()), "{:?}", d.actions);
    let event = recorded(&d).expect("the reason in history");
    assert_eq!(event.from, Some(name("n2")));
    assert!(
        event.reason.contains("n2 flushed nothing for 3.0 s"),
        "{}",
        event.reason
    );
    // PostgreSQL counts n3 alone: n2 leaves the store's set once n3 holds the position, after
    // a loop for every WAL sender to have reloaded
    let leaves = |d: &Decision| {
        has(d, |a| {
            matches!(a, Action::PublishSync { set, .. }
                if set.members == [name("n3")].into())
        })
    };
    let d = tick(
        &mut n1,
        4500,
        at(9500, &n3_alone, &[("n2", 5000), ("n3", 9500)]),
        &view,
    );
    assert!(
        !leaves(&d),
        "n2 left before the change settled: {:?}",
        d.actions
    );
    assert!(recorded(&d).is_none(), "told once: {:?}", d.actions);
    let d = tick(
        &mut n1,
        5600,
        at(9600, &n3_alone, &[("n2", 5000), ("n3", 9600)]),
        &view,
    );
    assert!(leaves(&d), "{:?}", d.actions);
    // n2 flushes again: counted again, behind n3 which holds the role
    let mut view = view;
    view.0.sync.members = [name("n3")].into();
    view.0.sync_revision = 1;
    let d = tick(
        &mut n1,
        6600,
        at(9700, &n3_alone, &[("n2", 5100), ("n3", 9700)]),
        &view,
    );
    assert!(
        has(&d, |a| matches!(a, Action::PublishSync { set, .. }
            if set.members == [name("n2"), name("n3")].into())),
        "n2 back in the set first: {:?}",
        d.actions
    );
    view.0.sync.members = [name("n2"), name("n3")].into();
    view.0.sync_revision = 2;
    let d = tick(
        &mut n1,
        7600,
        at(9800, &n3_alone, &[("n2", 9000), ("n3", 9800)]),
        &view,
    );
    assert_eq!(
        applies(&d).map(|a| a.names),
        Some(vec![name("n3"), name("n2")]),
        "{:?}",
        d.actions
    );
}

/// A stalled standby leaves only for another that takes its place, never to count fewer:
/// mode `on` with it alone, `strict` with it alone, and a quorum of two over two standbys
/// one of which stalls all keep waiting on it (until the replication timeout ends its
/// connection, as before). Going asynchronous after a few seconds' cut would open a window in
/// which commits the primary alone acknowledged are lost with it.
#[test]
fn a_stalled_standby_with_none_to_take_its_place_is_waited_for() {
    for (mode, method, count, standbys) in [
        (SyncMode::On, SyncMethod::Priority, 1, vec!["n2"]),
        (SyncMode::Strict, SyncMethod::Priority, 1, vec!["n2"]),
        (SyncMode::On, SyncMethod::Quorum, 2, vec!["n2", "n3"]),
    ] {
        let (mut n1, mut view, _) = leading(mode, &standbys);
        if standbys.len() == 1 {
            view.0.members.remove(&name("n3"));
        }
        view.0.config.synchronous_method = method;
        view.0.config.synchronous_count = count;
        let counted = SyncApplied {
            method,
            count,
            names: standbys.iter().map(|n| name(n)).collect(),
        };
        view.0.sync.method = method;
        view.0.sync.count = count;
        // n2 stands at 5000 from t=0; n3, if there, follows the primary
        let at_t = |t: u64| {
            let lsn = 5000 + t;
            let mut replicas = vec![("n2", 5000)];
            if standbys.len() == 2 {
                replicas.push(("n3", lsn));
            }
            at(lsn, &counted, &replicas)
        };
        n1.step(&obs(0, at_t(0), &view, vec![acquired(0, 7)]));
        for t in (1000u64..=8000).step_by(1000) {
            let d = tick(&mut n1, t, at_t(t), &view);
            assert_eq!(
                applies(&d),
                None,
                "{mode:?} {method:?} t={t}: {:?}",
                d.actions
            );
            assert!(
                recorded(&d).is_none(),
                "{mode:?} {method:?}: {:?}",
                d.actions
            );
        }
    }
}

/// A standby that moves, however slowly (a bulk load it replays behind), or that has caught
/// up with an idle primary, keeps its role.
#[test]
fn a_slow_or_idle_synchronous_standby_keeps_its_role() {
    let (mut n1, view, both) = leading(SyncMode::On, &["n2", "n3"]);
    n1.step(&obs(
        0,
        at(5000, &both, &[("n2", 5000), ("n3", 5000)]),
        &view,
        vec![acquired(0, 7)],
    ));
    for t in (1000u64..=10_000).step_by(1000) {
        // n2 far behind but moving; then both idle and caught up
        let (lsn, n2) = if t <= 6000 {
            (100_000 + t, 5000 + t)
        } else {
            (200_000, 200_000)
        };
        let d = tick(
            &mut n1,
            t,
            at(lsn, &both, &[("n2", n2), ("n3", lsn)]),
            &view,
        );
        assert_eq!(applies(&d), None, "t={t}: {:?}", d.actions);
    }
}

/// The primary's own disk stalls: it writes WAL it cannot flush, and its standbys, which can
/// only receive what it flushed, stand still with it. They are not behind anything they could
/// have: nobody is taken out (a reload now would write to the stalled disk too).
#[test]
fn a_primary_whose_own_disk_stalls_takes_no_standby_out() {
    let (mut n1, view, both) = leading(SyncMode::On, &["n2", "n3"]);
    n1.step(&obs(
        0,
        at(5000, &both, &[("n2", 5000), ("n3", 5000)]),
        &view,
        vec![acquired(0, 7)],
    ));
    for t in (1000u64..=8000).step_by(1000) {
        let local = LocalPg {
            lsn: Lsn(5000 + t),
            flushed_lsn: Lsn(5000),
            ..at(5000, &both, &[("n2", 5000), ("n3", 5000)])
        };
        let d = tick(&mut n1, t, local, &view);
        assert_eq!(applies(&d), None, "t={t}: {:?}", d.actions);
    }
}
