//! Promotions that fail, are vetoed by `pre_promote`, or cannot arm the fence.

use super::*;

/// n2, ahead of n3, wins the lease and its promotion ends with `failure`: n2, what it decides
/// then, its state and n3's.
fn winner_whose_promotion_failed(failure: JobFailure) -> (Member, Decision, LocalPg, LocalPg) {
    winner_whose_promotion_failed_leaving(failure, |a| a)
}

/// [`winner_whose_promotion_failed`], its PostgreSQL then as `after` makes it of n2's.
fn winner_whose_promotion_failed_leaving(
    failure: JobFailure,
    after: impl Fn(LocalPg) -> LocalPg,
) -> (Member, Decision, LocalPg, LocalPg) {
    let mut n2 = member("n2");
    let (a, b) = (standby(1, 5000, None), standby(1, 4000, None));
    let mine = View::new()
        .leader("n2", 11)
        .with("n2", record(&a, Some("n2")))
        .with("n3", record(&b, None));
    let d = n2.step(&obs(0, a.clone(), &mine, vec![acquired(0, 11)]));
    assert!(matches!(d.actions.last(), Some(Action::Promote { .. })));
    let failed = Outcome::Job {
        kind: JobKind::Promote,
        result: Err(failure),
    };
    let d = n2.step(&obs(500, after(a.clone()), &mine, vec![failed]));
    (n2, d, a, b)
}

/// `pg_ctl promote` gave up (its wait timed out: a stalled disk, a paused startup process)
/// while PostgreSQL still runs in recovery: the promotion may yet complete. The winner stops
/// PostgreSQL before it lets go of the lease, renewing it meanwhile (asking again if the stop
/// fails), and releases it once PostgreSQL is down: never a member writable beside the next
/// leader. A server that shut down by itself lets go at once.
#[test]
fn a_promotion_that_failed_with_postgresql_running_stops_it_before_the_lease_goes() {
    let failed = JobFailure::Failed("pg_ctl promote failed: server did not promote in time".into());
    let (mut n2, d, a, _) = winner_whose_promotion_failed(failed.clone());
    assert!(
        matches!(d.reason, Reason::PromoteFailedStopping { .. }),
        "{}",
        d.reason
    );
    assert!(has(&d, |a| *a == Action::StopPostgres(StopMode::Immediate)));
    assert!(!has(&d, |a| matches!(a, Action::ReleaseLeader { .. })));
    let mine = View::new()
        .leader("n2", 11)
        .with("n2", record(&a, Some("n2")));
    // The stop failed: still running, the lease renewed, the stop asked for again.
    let stop_failed = Outcome::Job {
        kind: JobKind::Stop,
        result: Err(JobFailure::Failed("pg_ctl stop timed out".into())),
    };
    let d = n2.step(&obs(4000, a.clone(), &mine, vec![stop_failed]));
    assert!(
        has(&d, |a| *a == Action::StopPostgres(StopMode::Immediate)),
        "{:?}",
        d.actions
    );
    assert!(
        has(&d, |a| matches!(a, Action::RenewLeader { .. })),
        "{:?}",
        d.actions
    );
    assert!(!has(&d, |a| matches!(a, Action::ReleaseLeader { .. })));
    // Down: the lease goes, saying why; nothing restarts it as a primary.
    let d = n2.step(&obs(
        4500,
        stopped(a.clone()),
        &mine,
        vec![job_done(JobKind::Stop)],
    ));
    assert_released_after_failed_promotion(&d);
    assert!(!has(&d, |a| matches!(
        a,
        Action::StartPostgres(_) | Action::Promote { .. }
    )));

    // PostgreSQL that shut down by itself (a promotion it could not carry out): at once.
    let (_, d, _, _) = winner_whose_promotion_failed_leaving(failed, stopped);
    assert_released_after_failed_promotion(&d);
}

/// `d` lets go of the lease of term 11, saying the promotion failed.
fn assert_released_after_failed_promotion(d: &Decision) {
    assert!(
        matches!(d.reason, Reason::PromoteFailed { .. }),
        "{}",
        d.reason
    );
    assert!(has(d, |a| matches!(
        a,
        Action::ReleaseLeader { revision: 11 }
    )));
}

/// Issue 14: a `pre_promote` callback that refuses makes the winner let go of the lease and
/// publish itself vetoed; the next candidate, behind it, then runs (asynchronous mode), and
/// the veto ends once another member leads.
#[test]
fn a_vetoed_promotion_releases_the_lease_and_the_next_candidate_runs() {
    let vetoed = JobFailure::Vetoed("exit status: 1 (VIP still held)".into());
    let (mut n2, d, a, b) = winner_whose_promotion_failed(vetoed);
    assert!(
        matches!(d.reason, Reason::PromotionVetoed { .. }),
        "{}",
        d.reason
    );
    assert!(has(&d, |a| matches!(
        a,
        Action::ReleaseLeader { revision: 11 }
    )));
    assert!(!has(&d, |a| matches!(a, Action::Promote { .. })));
    // Without a leader it publishes itself vetoed and stays out.
    let gone = leaderless(&a, &b, None);
    let d = n2.step(&obs(600, a.clone(), &gone, vec![]));
    assert!(!acquires(&d));
    assert_eq!(
        d.reason,
        Reason::NotEligible(election::Ineligible::PromotionVetoed)
    );
    let published = d.actions.iter().find_map(|a| match a {
        Action::PublishMember(r) => Some(r.clone()),
        _ => None,
    });
    let published = published.expect("a vetoed member publishes its record");
    assert!(published.promotion_vetoed);
    // n3, behind it, is the best eligible candidate now.
    let seen = View::new()
        .with("n2", published)
        .with("n3", record(&b, None));
    let d3 = member("n3").step(&obs(600, b.clone(), &seen, vec![]));
    assert!(acquires(&d3), "{}", d3.reason);
    // n3 holding the key, not promoted yet (it may veto too), does not end n2's veto.
    let holding = View::new()
        .leader("n3", 12)
        .with("n3", record(&b, Some("n3")))
        .with("n2", record(&a, Some("n3")));
    n2.step(&obs(700, a.clone(), &holding, vec![]));
    let followed = job_done(JobKind::Follow);
    let gone = leaderless(&a, &b, None);
    let d = n2.step(&obs(800, a.clone(), &gone, vec![followed]));
    assert_eq!(
        d.reason,
        Reason::NotEligible(election::Ineligible::PromotionVetoed)
    );
    // Once n3 leads, n2's veto is over: its next record is not vetoed.
    let led = View::led_by("n3", 12, &primary(2, 4100)).with("n2", record(&a, Some("n3")));
    let d = n2.step(&obs(1200, a, &led, vec![]));
    let published = d.actions.iter().find_map(|a| match a {
        Action::PublishMember(r) => Some(r.clone()),
        _ => None,
    });
    assert!(published.is_some_and(|r| !r.promotion_vetoed));
}

/// A winner whose agent could not write its fencing deadline (a full or read-only file
/// system) is not promoted: it lets go of the lease and is held out like a vetoed member, so
/// the next candidate runs instead of it winning and failing again.
#[test]
fn a_winner_that_cannot_arm_its_fence_lets_go_and_is_held_out() {
    let unfenced = JobFailure::Unfenced("No space left on device".into());
    let (mut n2, d, a, b) = winner_whose_promotion_failed(unfenced);
    assert!(
        matches!(&d.reason, Reason::PromotionVetoed { why, .. } if why.contains("fencing deadline")),
        "{}",
        d.reason
    );
    assert!(has(&d, |a| matches!(
        a,
        Action::ReleaseLeader { revision: 11 }
    )));
    let gone = leaderless(&a, &b, None);
    let d = n2.step(&obs(600, a, &gone, vec![]));
    assert!(!acquires(&d));
    let published = d.actions.iter().find_map(|a| match a {
        Action::PublishMember(r) => Some(r.clone()),
        _ => None,
    });
    assert!(published.expect("its record").promotion_vetoed);
}

/// ... but in a synchronous mode a vetoed synchronous standby that is further ahead may hold
/// commits it acknowledged: nobody behind it runs (found by the simulation, seed 62, before
/// the rule: "n3 became writable at 2/78284 without the commit acknowledged at 1/78318").
#[test]
fn a_vetoed_synchronous_standby_ahead_keeps_the_others_from_running() {
    let (a, b) = (standby(1, 5000, None), standby(1, 4000, None));
    let vetoed = vetoed_record(&a);
    let base = View::new().with("n2", vetoed).with("n3", record(&b, None));
    // Quorum commit, one of n2 and n3 acknowledging each commit: n2 may hold some n3 lacks.
    let mut view = base.clone().sync_set("n1", &["n2", "n3"]);
    view.0.sync.method = SyncMethod::Quorum;
    let d3 = member("n3").step(&obs(0, b.clone(), &view, vec![]));
    assert!(!acquires(&d3));
    assert!(
        matches!(&d3.reason, Reason::IneligibleAhead { member, why: election::Ineligible::PromotionVetoed } if member.as_str() == "n2"),
        "{}",
        d3.reason
    );
    // An operator who would rather lose those commits than wait names n3 by hand, saying so
    // (the reason says how): `pgha failover --to n3 --allow-data-loss`; without the flag, n3
    // is refused (n2, of the set, is ahead).
    assert!(d3
        .reason
        .to_string()
        .contains("`pgha failover --to NAME --allow-data-loss`"));
    let by_hand = view.clone().failover_to("n3");
    let d3 = member("n3").step(&obs(0, b.clone(), &by_hand, vec![]));
    assert!(!acquires(&d3), "{}", d3.reason);
    let mut losing = by_hand;
    losing.0.switchover.as_mut().unwrap().request.kind = RequestKind::Failover {
        force: false,
        allow_data_loss: true,
    };
    let d3 = member("n3").step(&obs(0, b.clone(), &losing, vec![]));
    assert!(acquires(&d3), "{}", d3.reason);
    // Asynchronous: the next candidate runs (nothing was acknowledged synchronously).
    let d3 = member("n3").step(&obs(0, b, &base, vec![]));
    assert!(acquires(&d3), "{}", d3.reason);
}

/// ... even when it is no longer in the set. Found by the 50,000-seed run with vetoes (seed
/// 16273, the same at d537a57): in mode `on` the leader had emptied the set (no healthy
/// standby) after n3 acknowledged commits as its member; the leader died, n3 won, vetoed,
/// and n2, far behind, was promoted without them.
#[test]
fn a_vetoed_standby_ahead_blocks_even_after_the_set_emptied() {
    let (ahead, behind) = (standby(1, 9000, None), standby(1, 4000, None));
    let vetoed = vetoed_record(&ahead);
    let view = View::new()
        .with("n3", vetoed.clone())
        .with("n2", record(&behind, None))
        .sync_set("n1", &[]);
    let d = member("n2").step(&obs(0, behind.clone(), &view, vec![]));
    assert!(!acquires(&d), "n2 took over: {:?}", d.reason);
    assert!(
        matches!(&d.reason, Reason::IneligibleAhead { member, why: election::Ineligible::PromotionVetoed } if member == &name("n3")),
        "{:?}",
        d.reason
    );
    // Asynchronous mode promises nothing: n2 runs.
    let asynchronous = View::new()
        .with("n3", vetoed)
        .with("n2", record(&behind, None));
    let d = member("n2").step(&obs(0, behind, &asynchronous, vec![]));
    assert!(acquires(&d), "{:?}", d.reason);
}

/// ... and so does the vetoed leader that published the set (found by the simulation with
/// vetoes, seed 2366: the old primary, now a standby holding a commit it had acknowledged as
/// a synchronous standby on the timeline before, vetoed; n3, behind it, was promoted). Also:
/// a member that only took the lease and vetoed too does not end n2's veto.
#[test]
fn a_vetoed_set_leader_ahead_keeps_the_others_from_running() {
    let (a, b) = (standby(2, 5000, None), standby(2, 4000, None));
    let vetoed = vetoed_record(&a);
    let mut view = View::new()
        .with("n2", vetoed)
        .with("n3", record(&b, None))
        .sync_set("n2", &[]);
    view.0.sync.count = 0;
    let d3 = member("n3").step(&obs(0, b, &view, vec![]));
    assert!(!acquires(&d3), "{}", d3.reason);
    assert!(
        matches!(&d3.reason, Reason::IneligibleAhead { member, .. } if member.as_str() == "n2"),
        "{}",
        d3.reason
    );
}

/// ... and so does a vetoed winner handing over to the next candidate (found by the
/// simulation with vetoes, seed 65231): n3, ahead of n1 in the set {n1, n3} (n3 its leader
/// since it won), was vetoed and asked for a switchover to n1; n1 waited to replay n3's
/// position, until n2, outside the set, came back further ahead than n1. The switchover then
/// left it to the election, which, while the request was pending, did not count the member
/// handing over: n1 won without the commits n3 had confirmed. The member handing over does
/// not compete, but what it may hold still counts.
#[test]
fn a_vetoed_winner_handing_over_still_counts_when_the_election_decides() {
    let n1 = standby(2, 4000, None);
    let n3 = vetoed_record(&standby(2, 4100, None));
    let n2 = record(&standby(2, 4300, None), None);
    let mut view = View::new()
        .with("n1", record(&n1, None))
        .with("n2", n2)
        .with("n3", n3)
        .sync_set("n3", &["n1", "n3"])
        .switchover("n3", Some("n1"), 40);
    view.0.sync.method = SyncMethod::Quorum;
    let mut m1 = member("n1");
    // Still the target, not caught up with n3, but behind n2: the election decides.
    let d = m1.step(&obs(1_000, n1.clone(), &view, vec![]));
    assert!(!acquires(&d), "n1 took over: {}", d.reason);
    assert!(
        matches!(&d.reason, Reason::IneligibleAhead { member, why: election::Ineligible::PromotionVetoed } if member == &name("n3")),
        "{}",
        d.reason
    );
}

/// A winner whose data disk stalls as it promotes waits on it (`pg_ctl promote` writes a file
/// there, the end of recovery a checkpoint) for as long as the stall lasts, its lease renewed
/// and nobody writing. Once its data directory has taken no write for `DATA_DIR_STALL_MS` it
/// gives the promotion up: it demotes, renews no more, kills its PostgreSQL while the stop
/// hangs on the disk, and releases the lease once none of its processes can run again (a
/// promotion asked of that postmaster cannot complete after it); its record keeps it out of
/// the next election.
#[test]
fn a_winner_whose_disk_stalls_as_it_promotes_gives_the_promotion_up() {
    let (mut n2, a, mine) = winner_promoting();
    let stall = pgha_core::DATA_DIR_STALL_MS;
    let stalled_since = |now: u64, local: LocalPg| Observation {
        data_dir_unwritable_since: Some(Millis(1000)),
        ..obs(now, local, &mine, vec![])
    };
    let renews_or_releases = |d: &Decision| {
        has(d, |a| {
            matches!(a, Action::RenewLeader { .. } | Action::ReleaseLeader { .. })
        })
    };
    // A slow write is no stall: the promotion goes on.
    let d = n2.step(&stalled_since(1000 + stall - 1, a.clone()));
    assert_reason!(d, Reason::JobRunning { .. });
    assert!(
        !has(&d, |a| matches!(a, Action::Demote { .. })),
        "{:?}",
        d.actions
    );
    let d = n2.step(&stalled_since(1000 + stall, a.clone()));
    assert_eq!(d.reason, Reason::PromotionStalledOnDisk);
    assert!(
        has(&d, |a| *a
            == Action::Demote {
                mode: StopMode::Immediate,
                fencing: true
            }),
        "{:?}",
        d.actions
    );
    assert!(!renews_or_releases(&d), "{:?}", d.actions);
    assert!(
        has(
            &d,
            |a| matches!(a, Action::PublishMember(r) if r.data_dir_stalled)
        ),
        "{:?}",
        d.actions
    );
    // The stop hangs on the disk: every process is killed, the lease kept but not renewed.
    let d = n2.step(&stalled_since(2000 + stall, a.clone()));
    assert_eq!(d.reason, Reason::PromotionStalledOnDisk);
    assert!(has(&d, |a| *a == Action::KillPostgres), "{:?}", d.actions);
    assert!(!renews_or_releases(&d), "{:?}", d.actions);
    let killed = LocalPg { killed: true, ..a };
    let d = n2.step(&stalled_since(3000 + stall, killed));
    assert_eq!(d.reason, Reason::StalledPromotionKilled);
    assert!(has(&d, |a| matches!(a, Action::ReleaseLeader { .. })));
    assert!(
        d.reason.to_string().contains("none able to run again"),
        "{}",
        d.reason
    );
}
