//! A PostgreSQL that runs but does not answer, refuses connections, or whose disk stalls.

use super::*;

fn unresponsive(pg: LocalPg) -> LocalPg {
    LocalPg {
        unresponsive: true,
        ..pg
    }
}

/// Issue 9, item 4: a primary whose postmaster lives but does not answer the probe (slots
/// exhausted, I/O stall) is neither restarted, nor reconfigured as a standby, nor given up at
/// once: the leader keeps its lease, then after `primary_start_timeout_ms` demotes and lets go
/// only once its PostgreSQL is not writable.
#[test]
fn an_unresponsive_primary_keeps_its_lease_then_demotes_before_letting_go() {
    let (mut n1, view) = established_leader();
    let silent = unresponsive(primary(1, 1000));
    let d = n1.step(&obs(1000, silent.clone(), &view, vec![]));
    assert_eq!(d.reason, Reason::PostgresUnresponsive { for_ms: 0 });
    assert!(has(&d, |a| matches!(a, Action::RenewLeader { .. })));
    assert!(!has(&d, |a| matches!(
        a,
        Action::StartPostgres(_) | Action::ReleaseLeader { .. } | Action::Demote { .. }
    )));
    let timeout = ClusterConfig::default().primary_start_timeout_ms;
    let d = n1.step(&obs(1000 + timeout + 1, silent.clone(), &view, vec![]));
    assert!(
        has(&d, |a| *a
            == Action::Demote {
                mode: StopMode::Immediate,
                fencing: true
            }),
        "{:?}",
        d.reason
    );
    assert!(!has(&d, |a| matches!(
        a,
        Action::ReleaseLeader { .. } | Action::RenewLeader { .. }
    )));
    let done = job_done(JobKind::Demote);
    let d = n1.step(&obs(
        1000 + timeout + 500,
        standby(1, 1000, None),
        &view,
        vec![done],
    ));
    assert_eq!(d.reason, Reason::UnresponsivePrimaryDemoted);
    assert!(has(&d, |a| matches!(a, Action::ReleaseLeader { .. })));
    assert!(!has(&d, |a| matches!(a, Action::Promote { .. })));
}

/// Issue 9 (connection slots exhausted on the leader): a primary that answers "too many
/// clients" is alive and busy; its leader keeps the lease however long that lasts.
#[test]
fn a_primary_refusing_connections_for_want_of_slots_keeps_its_lease() {
    let (mut n1, view) = established_leader();
    let busy = LocalPg {
        refusing_connections: true,
        ..unresponsive(primary(1, 1000))
    };
    let mut now = 1000;
    while now < 60_000 {
        let renewed = renewed(now);
        let d = n1.step(&obs(now, busy.clone(), &view, vec![renewed]));
        assert!(
            !has(&d, |a| matches!(
                a,
                Action::Demote { .. } | Action::ReleaseLeader { .. } | Action::StartPostgres(_)
            )),
            "at {now} ms: {:?}",
            d.reason
        );
        now += 1000;
    }
}

#[test]
fn an_unresponsive_standby_neither_restarts_nor_runs_for_leader() {
    let mut n2 = member("n2");
    let view = View::new().with("n2", record(&standby(1, 900, None), None));
    let silent = unresponsive(stopped(standby(1, 900, None)));
    for now in [0, 20_000, 40_000] {
        let d = n2.step(&obs(now, silent.clone(), &view, vec![]));
        assert_reason!(d, Reason::PostgresUnresponsive { .. });
        assert!(!has(&d, |a| matches!(
            a,
            Action::StartPostgres(_) | Action::AcquireLeader { .. } | Action::Follow { .. }
        )));
    }
}

/// Found by `faults::disk_stalls::leader_disk_stalled`: a primary whose disk stalls still answers
/// the agent's probes (they read), so the leader kept its lease while every commit waited for as
/// long as the disk did. WAL that waits at the same flush position for a loop is a stalled disk:
/// the leader says so, keeps its lease up to `primary_start_timeout_ms` (a short stall passes),
/// then demotes and lets the lease run out, as for an unresponsive primary.
#[test]
fn a_primary_whose_wal_stops_reaching_its_disk_is_demoted_after_the_timeout() {
    let (mut n1, view) = established_leader();
    let stalled = LocalPg {
        wal_waiting_at: Some(Lsn(900)),
        ..primary(1, 1000)
    };
    let config = ClusterConfig::default();
    let demotes = |d: &Decision| has(d, |a| matches!(a, Action::Demote { .. }));
    // WAL waiting that gets flushed (another position each loop) is only a busy disk.
    for (t, flushed) in [(500, 600), (1500, 700), (2500, 800)] {
        let busy = LocalPg {
            wal_waiting_at: Some(Lsn(flushed)),
            ..primary(1, 1000)
        };
        let d = n1.step(&obs(t, busy, &view, vec![renewed(t)]));
        assert!(matches!(d.reason, Reason::Leading { .. }), "{:?}", d.reason);
    }
    let mut t = 3000;
    let d = n1.step(&obs(t, stalled.clone(), &view, vec![renewed(t)]));
    assert!(matches!(d.reason, Reason::Leading { .. }), "{:?}", d.reason);
    // Stuck for a loop: stalled, and the clock towards the demotion runs.
    t += config.loop_wait_ms;
    let d = n1.step(&obs(t, stalled.clone(), &view, vec![renewed(t)]));
    assert!(
        matches!(
            d.reason,
            Reason::WalFlushStalled {
                flushed: Lsn(900),
                ..
            }
        ),
        "{:?}",
        d.reason
    );
    assert!(
        d.reason.to_string().contains("disk stalled?"),
        "{}",
        d.reason
    );
    let stalled_at = t;
    while t < stalled_at + config.primary_start_timeout_ms {
        t += 500;
        let d = n1.step(&obs(t, stalled.clone(), &view, vec![renewed(t)]));
        if t <= stalled_at + config.primary_start_timeout_ms {
            assert!(!demotes(&d), "demoted after {} ms of stall", t - stalled_at);
        }
    }
    t += 500;
    let d = n1.step(&obs(t, stalled, &view, vec![renewed(t)]));
    assert!(demotes(&d), "{:?}: {:?}", d.reason, d.actions);
    assert_eq!(
        d.reason,
        Reason::PrimaryUnresponsiveDemoting {
            for_ms: t - stalled_at
        }
    );
}

/// A leader whose PostgreSQL stopped answering, renewed while it waited for
/// `primary_start_timeout_ms` (the lease trusted a ttl past the last renewal), that has just
/// demoted it (its stop goes first: no kill in that step): the member, its view, what it
/// observes, and when.
fn demoted_for_not_answering() -> (Member, View, LocalPg, u64) {
    let (mut n1, view) = established_leader();
    let silent = unresponsive(primary(1, 1000));
    let timeout = ClusterConfig::default().primary_start_timeout_ms;
    n1.step(&obs(1000, silent.clone(), &view, vec![renewed(1000)]));
    let t = 1000 + timeout + 1;
    n1.step(&obs(t - 500, silent.clone(), &view, vec![renewed(t - 500)]));
    let d = n1.step(&obs(t, silent.clone(), &view, vec![]));
    assert!(
        has(&d, |a| matches!(a, Action::Demote { .. })),
        "{:?}",
        d.reason
    );
    assert!(!has(&d, |a| *a == Action::KillPostgres), "{:?}", d.actions);
    (n1, view, silent, t)
}

/// A demoted primary whose stop does not take (its processes blocked on a stalled disk cannot
/// end) is killed: a SIGKILL pending on a blocked process ends it before it runs again. Once
/// every process is shown killed, nothing more can commit there, and the lease is released at
/// once instead of running out (a ttl with nobody writing). Not before: a process that may
/// still run keeps the lease held until it runs out.
#[test]
fn a_demoted_primary_shown_killed_releases_its_lease_without_waiting_it_out() {
    let (mut n1, view, silent, t) = demoted_for_not_answering();
    // The demotion's stop hangs: its processes are killed, the lease kept meanwhile.
    let d = n1.step(&obs(t + 1000, silent.clone(), &view, vec![]));
    assert_reason!(d, Reason::PrimaryUnresponsiveDemoting { .. });
    assert!(has(&d, |a| *a == Action::KillPostgres), "{:?}", d.actions);
    assert!(!has(&d, |a| matches!(a, Action::ReleaseLeader { .. })));
    // Killed, but not shown so: one may still run, and the lease stays.
    let d = n1.step(&obs(t + 2000, silent.clone(), &view, vec![]));
    assert!(!has(&d, |a| matches!(a, Action::ReleaseLeader { .. })));
    let killed = LocalPg {
        killed: true,
        ..silent
    };
    let d = n1.step(&obs(t + 3000, killed, &view, vec![]));
    assert_eq!(d.reason, Reason::UnresponsivePrimaryKilled);
    assert!(has(&d, |a| matches!(a, Action::ReleaseLeader { .. })));
    assert!(has(&d, |a| matches!(a, Action::ReturnPromises { .. })));
    assert!(!has(&d, |a| *a == Action::KillPostgres));
    assert!(
        d.reason.to_string().contains("none able to run again"),
        "{}",
        d.reason
    );
}

/// Processes shown killed mean nothing to a primary that was not demoted for being
/// unresponsive: it keeps its lease (and a planned stop is never turned into a kill).
#[test]
fn killed_processes_release_nothing_before_the_demotion() {
    let (mut n1, view) = established_leader();
    let killed = LocalPg {
        killed: true,
        ..unresponsive(primary(1, 1000))
    };
    let d = n1.step(&obs(1000, killed.clone(), &view, vec![]));
    assert!(!has(&d, |a| matches!(
        a,
        Action::ReleaseLeader { .. } | Action::KillPostgres
    )));
    assert!(has(&d, |a| matches!(a, Action::RenewLeader { .. })));
}

/// Found by review: killed, a postmaster that was not itself blocked dies at once, and its
/// PostgreSQL reads as stopped while the demotion (its stop, then the start as a standby) still
/// hangs on the disk. The leader path then renewed the lease for as long as that job ran (the
/// whole stall): no failover. A leader demoted for not answering never renews; it kills what
/// the dead postmaster left, and releases once nothing of it can run.
#[test]
fn a_demoted_primary_whose_postmaster_died_renews_nothing_and_releases_once_all_is_killed() {
    let (mut n1, view, _, t) = demoted_for_not_answering();
    // The postmaster died (the demotion job still runs): what it left may still run.
    let down = stopped(primary(1, 1000));
    for at in [t + 1000, t + 2000] {
        let d = n1.step(&obs(at, down.clone(), &view, vec![]));
        assert_reason!(d, Reason::PrimaryUnresponsiveDemoting { .. });
        assert!(
            !has(&d, |a| matches!(
                a,
                Action::RenewLeader { .. } | Action::ReleaseLeader { .. }
            )),
            "at {at}: {:?}",
            d.actions
        );
        assert!(has(&d, |a| *a == Action::KillPostgres), "{:?}", d.actions);
    }
    let gone = LocalPg {
        killed: true,
        ..down
    };
    let d = n1.step(&obs(t + 3000, gone, &view, vec![]));
    assert_eq!(d.reason, Reason::UnresponsivePrimaryKilled);
    assert!(has(&d, |a| matches!(a, Action::ReleaseLeader { .. })));
}
