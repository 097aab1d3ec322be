//! The prober: what it confirms, and what it does without its feed or with a hung or slow member.

use super::*;

/// The task that feeds the prober is gone (it ended or panicked): nobody can tell the proxy
/// of a leader change any more, so it routes to nobody rather than to the last primary for
/// good (before: the targets froze as last published).
#[tokio::test]
async fn without_its_feed_the_prober_leaves_no_target() {
    let c = cluster();
    let mut run = ProberRun::start(
        Candidates {
            leader: Some(member(c.primary())),
            standbys: vec![member(c.standby())],
        },
        Duration::from_secs(2),
    );
    let primary = c.primary();
    let limit = Duration::from_secs(10);
    let is_primary = |t: &Targets| t.rw.as_ref() == Some(&primary);
    assert!(run.within(limit, is_primary).await.is_some());
    let ProberRun {
        candidates,
        mut targets,
        task,
        ..
    } = run;
    drop(candidates);
    let nothing = |t: &Targets| t.rw.is_none() && t.ro.is_empty();
    let emptied = tokio::time::timeout(limit, targets.wait_for(|t| nothing(t)))
        .await
        .is_ok();
    assert!(emptied, "targets stayed {:?}", *targets.borrow());
    task.await.unwrap();
}

/// A standby that accepts connections and never answers (a host blackholed after the
/// handshake, or a hung postmaster) makes every round last the whole check timeout. That must
/// delay neither the withdrawal of a leader the store no longer names, nor the confirmation
/// of the one it names; nor may standbys that keep changing keep the leader unconfirmed
/// (before: both waited for the round, and a round whose standbys changed was thrown away).
#[tokio::test]
async fn a_hung_standby_delays_neither_the_leader_nor_its_withdrawal() {
    let c = cluster();
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hung = Member::new("hung", hung.local_addr().unwrap().to_string());
    let primary = c.primary();
    let led = Candidates {
        leader: Some(member(primary.clone())),
        standbys: vec![member(c.standby()), hung.clone()],
    };
    let mut run = ProberRun::start(led.clone(), Duration::from_secs(5));
    let is_primary = |t: &Targets| t.rw.as_ref() == Some(&primary);
    let confirmed = run.within(Duration::from_secs(10), is_primary).await;
    assert!(
        confirmed.is_some_and(|d| d < Duration::from_secs(2)),
        "leader confirmed after {confirmed:?}"
    );
    // The store names no leader any more.
    run.candidates.send_replace(Candidates {
        leader: None,
        ..led.clone()
    });
    let withdrawn = run
        .within(Duration::from_secs(10), |t| t.rw.is_none())
        .await;
    assert!(
        withdrawn.is_some_and(|d| d < Duration::from_millis(500)),
        "rw withdrawn after {withdrawn:?}"
    );
    // The leader back, while the standbys change every second.
    run.candidates.send_replace(led.clone());
    let churn = {
        let candidates = run.candidates.clone();
        let led = led.clone();
        tokio::spawn(async move {
            for round in 0.. {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let mut next = led.clone();
                if round % 2 == 0 {
                    next.standbys.pop();
                }
                candidates.send_replace(next);
            }
        })
    };
    let reconfirmed = run.within(Duration::from_secs(12), is_primary).await;
    churn.abort();
    run.stop.cancel();
    run.task.await.unwrap();
    eprintln!("confirmed after {confirmed:?}, withdrawn after {withdrawn:?}, confirmed again with standbys changing after {reconfirmed:?}");
    assert!(
        reconfirmed.is_some_and(|d| d < Duration::from_secs(2)),
        "with standbys changing, leader confirmed after {reconfirmed:?}"
    );
}

/// Found by review: a standby taking the leader key leaves the store's standby list at once
/// (its record still in recovery, so no leader is named yet), but it stayed a read-only target
/// until the round under way ended, the whole check timeout with a hung standby; promoted
/// meanwhile, it was given read-only sessions as a standby. A standby the store no longer lists
/// is withdrawn at once.
#[tokio::test]
async fn a_standby_the_store_no_longer_lists_leaves_the_read_only_targets_at_once() {
    let c = cluster();
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hung = Member::new("hung", hung.local_addr().unwrap().to_string());
    let standby = c.standby();
    let led = Candidates {
        leader: Some(member(c.primary())),
        standbys: vec![member(standby.clone()), hung.clone()],
    };
    let mut run = ProberRun::start(led.clone(), Duration::from_secs(5));
    let serves = |t: &Targets| t.ro.iter().any(|s| s.backend == standby);
    let listed = run.within(Duration::from_secs(10), serves).await;
    assert!(
        listed.is_some(),
        "the standby never became a read-only target"
    );
    // It takes the leader key: no leader named yet, and it is not listed as a standby.
    run.candidates.send_replace(Candidates {
        leader: None,
        standbys: vec![hung],
    });
    let withdrawn = run.within(Duration::from_secs(10), |t| !serves(t)).await;
    run.stop.cancel();
    run.task.await.unwrap();
    assert!(
        withdrawn.is_some_and(|d| d < Duration::from_millis(500)),
        "withdrawn from the read-only targets after {withdrawn:?}"
    );
}

/// A standby that streams, but from another server than the confirmed primary (as one still
/// streaming from the demoted old primary, its WAL past the fork of the new timeline: it reads
/// as caught up while holding writes the cluster does not have) takes no read-only session;
/// the standby the primary streams to does (before: both were routed to).
#[tokio::test]
async fn a_standby_the_confirmed_primary_does_not_stream_to_takes_no_reads() {
    let c = cluster();
    let cascaded = cascaded_standby(c, "cascaded");
    let receiving = connect(cascaded.addr.parse().unwrap()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let row = receiving
            .query_opt("select status from pg_stat_wal_receiver", &[])
            .await
            .unwrap();
        if row.is_some_and(|r| r.get::<_, String>(0) == "streaming") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cascaded standby never streamed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut prober = Prober::new(ProberConfig::new("postgres"));
    let cands = Candidates {
        leader: Some(member(c.primary())),
        standbys: vec![member(c.standby()), member(cascaded.clone())],
    };
    let t = prober.probe(&cands).await;
    assert_eq!(t.rw, Some(c.primary()));
    let streaming = |b: &pgha_proxy::Backend| {
        t.ro.iter()
            .find(|s| s.backend == *b)
            .map(|s| (s.streaming, s.lag_bytes))
    };
    assert!(
        matches!(streaming(&c.standby()), Some((true, Some(_)))),
        "the primary's own standby: {:?}",
        t.ro
    );
    assert!(
        matches!(streaming(&cascaded), Some((false, Some(_)))),
        "the standby fed by another server: {:?}",
        t.ro
    );
    // With no primary confirmed, nothing tells where a standby should stream from: the
    // walreceiver's own status goes (reads then need `ro_max_lag_bytes` unset).
    let leaderless = Candidates {
        leader: None,
        standbys: vec![member(cascaded.clone())],
    };
    let t = prober.probe(&leaderless).await;
    assert!(t.ro.iter().all(|s| s.streaming), "{:?}", t.ro);
}

/// Found by review: when the lease holder changes, the standbys checked against the last one
/// stayed "streaming" until a round against the new one ended (the whole check timeout with a
/// hung standby), and with a holder named but not confirmed (promoting, unanswered) a standby
/// counted as streaming by its own receiver: one following the demoted primary took reads.
/// Under a new holder, none counts as streaming until that holder, confirmed, names it.
#[tokio::test]
async fn under_a_new_unconfirmed_holder_no_standby_counts_as_streaming() {
    let c = cluster();
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hung = Member::new("hung", hung.local_addr().unwrap().to_string());
    let led = Candidates {
        leader: Some(member(c.primary())),
        standbys: vec![member(c.standby()), hung.clone()],
    };
    let mut run = ProberRun::start(led.clone(), Duration::from_secs(5));
    let fed = |t: &Targets| t.ro.iter().any(|s| s.backend == c.standby() && s.streaming);
    assert!(
        run.within(Duration::from_secs(10), fed).await.is_some(),
        "the standby never counted as streaming: {:?}",
        *run.targets.borrow()
    );
    // The store names another holder, which does not answer (gone, or still promoting).
    let dead = Member::new("dead", format!("127.0.0.1:{}", free_port()));
    run.candidates.send_replace(Candidates {
        leader: Some(dead),
        ..led
    });
    let unfed = run
        .within(Duration::from_secs(10), |t| t.rw.is_none() && !fed(t))
        .await;
    // And stays so through the rounds after (each as long as the hung standby's check).
    let later = tokio::time::timeout(Duration::from_secs(7), run.targets.wait_for(|t| fed(t)))
        .await
        .is_ok();
    run.stop.cancel();
    run.task.await.unwrap();
    assert!(
        unfed.is_some_and(|d| d < Duration::from_millis(500)),
        "the standby counted as streaming for {unfed:?} under the new holder"
    );
    assert!(
        !later,
        "the standby counted as streaming again under an unconfirmed holder"
    );
}

#[tokio::test]
async fn prober_confirms_primary_and_standbys() {
    let c = cluster();
    let mut prober = Prober::new(ProberConfig::new("postgres"));
    let cands = Candidates {
        leader: Some(member(c.primary())),
        standbys: vec![member(c.standby())],
    };
    let t = prober.probe(&cands).await;
    assert_eq!(t.rw, Some(c.primary()));
    assert_eq!(t.ro.len(), 1);
    assert!(t.ro[0].lag_bytes.is_some());
    // The lease holder in recovery is not a primary; nor is an unreachable one.
    let wrong = Candidates {
        leader: Some(member(c.standby())),
        standbys: vec![],
    };
    assert_eq!(prober.probe(&wrong).await.rw, None);
    let dead = Member::new("dead", format!("127.0.0.1:{}", free_port()));
    let gone = Candidates {
        leader: Some(dead),
        standbys: vec![member(c.standby())],
    };
    let t = prober.probe(&gone).await;
    assert_eq!(t.rw, None);
    assert_eq!(t.ro[0].lag_bytes, None, "no primary: lag unknown");

    // The run loop publishes, and withdraws rw at once when the lease holder changes.
    let mut run = ProberRun::start(cands, Duration::from_secs(2));
    let primary = c.primary();
    let limit = Duration::from_secs(10);
    let is_primary = |t: &Targets| t.rw.as_ref() == Some(&primary);
    assert!(run.within(limit, is_primary).await.is_some());
    run.candidates.send_replace(gone);
    assert!(run.within(limit, |t| t.rw.is_none()).await.is_some());
    assert!(run.targets.borrow().generation >= 2);
    run.stop.cancel();
    run.task.await.unwrap();
}

/// The lease holder misses a check while the store still names it (the prober's backend on it
/// paused: a probe stuck behind load, as when its connection is lost with `max_connections`
/// full): new read-write sessions wait for its next answer, but the sessions open to it are
/// not closed, for nothing says it stopped being the primary (before: one late probe closed
/// every read-write session).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_that_misses_a_check_keeps_its_sessions() {
    let c = cluster();
    let primary = c.primary();
    // A role of its own, so that its backend is told from the probers of the other tests.
    let direct = connect(primary.addr.parse().unwrap()).await.unwrap();
    direct
        .batch_execute(
            "DO $$ BEGIN CREATE ROLE missed_check_prober LOGIN; \
             EXCEPTION WHEN duplicate_object THEN NULL; END $$",
        )
        .await
        .unwrap();
    let mut run = ProberRun::start_as(
        "missed_check_prober",
        Candidates {
            leader: Some(member(primary.clone())),
            standbys: vec![member(c.standby())],
        },
        Duration::from_millis(500),
    );
    let limit = Duration::from_secs(10);
    let is_primary = |t: &Targets| t.rw.as_ref() == Some(&primary);
    assert!(run.within(limit, is_primary).await.is_some());
    let (p, forward) = proxy_fed_by(&run).await;
    let session = connect(p.rw).await.unwrap();
    assert!(!in_recovery(&session).await);
    let row = direct
        .query_one(
            "select pid from pg_stat_activity where usename = 'missed_check_prober'",
            &[],
        )
        .await
        .unwrap();
    let prober_backend = nix::unistd::Pid::from_raw(row.get::<_, i32>(0));
    nix::sys::signal::kill(prober_backend, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let missed = run
        .within(limit, |t| t.rw.is_none() && t.unanswered.is_some())
        .await;
    nix::sys::signal::kill(prober_backend, nix::sys::signal::Signal::SIGCONT).unwrap();
    assert!(missed.is_some(), "the check never went unanswered");
    let still = session.simple_query("select 1").await;
    assert!(
        still.is_ok(),
        "the session closed on one unanswered check: {still:?}"
    );
    assert!(run.within(limit, is_primary).await.is_some());
    assert!(session.simple_query("select 1").await.is_ok());
    let closed = p
        .metrics
        .snapshot()
        .listener("rw")
        .unwrap()
        .closed_on_change;
    assert_eq!(closed, 0, "sessions closed on a targets change");
    forward.abort();
    run.stop.cancel();
}

/// Found by review: a standby whose check went unanswered left the read-only targets, and every
/// session open on it was closed at once: one late check of a loaded standby turned into a
/// reconnect storm, as it did for the primary before `unanswered`. It now takes no new session
/// while its check goes unanswered, and keeps those it has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_that_misses_a_check_keeps_its_sessions() {
    let c = cluster();
    let (primary, standby) = (c.primary(), c.standby());
    let on_primary = connect(primary.addr.parse().unwrap()).await.unwrap();
    on_primary
        .batch_execute(
            "DO $$ BEGIN CREATE ROLE missed_standby_check_prober LOGIN; \
             EXCEPTION WHEN duplicate_object THEN NULL; END $$",
        )
        .await
        .unwrap();
    let on_standby = connect(standby.addr.parse().unwrap()).await.unwrap();
    let role_there =
        "select count(*)::int from pg_roles where rolname = 'missed_standby_check_prober'";
    let every = Duration::from_millis(50);
    let replicated = pgha_testkit::wait::poll_async(Duration::from_secs(10), every, || async {
        let n: i32 = on_standby.query_one(role_there, &[]).await.ok()?.get(0);
        (n == 1).then_some(())
    })
    .await;
    assert!(replicated.is_some(), "the role never reached the standby");
    let mut run = ProberRun::start_as(
        "missed_standby_check_prober",
        Candidates {
            leader: Some(member(primary.clone())),
            standbys: vec![member(standby.clone())],
        },
        Duration::from_millis(500),
    );
    let limit = Duration::from_secs(10);
    let serves = |t: &Targets| t.ro.iter().any(|s| s.backend == standby && s.streaming);
    assert!(run.within(limit, serves).await.is_some());
    let (p, forward) = proxy_fed_by(&run).await;
    let session = connect(p.ro).await.unwrap();
    assert!(in_recovery(&session).await);
    let prober_backend =
        "select pid from pg_stat_activity where usename = 'missed_standby_check_prober'";
    let row = on_standby.query_one(prober_backend, &[]).await.unwrap();
    let prober_backend = nix::unistd::Pid::from_raw(row.get::<_, i32>(0));
    nix::sys::signal::kill(prober_backend, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let missed = run
        .within(limit, |t| {
            t.ro.is_empty() && t.ro_unanswered.contains(&standby)
        })
        .await;
    nix::sys::signal::kill(prober_backend, nix::sys::signal::Signal::SIGCONT).unwrap();
    assert!(
        missed.is_some(),
        "the standby's check never went unanswered"
    );
    let still = session.simple_query("select 1").await;
    assert!(
        still.is_ok(),
        "the session closed on one unanswered check: {still:?}"
    );
    assert!(run.within(limit, serves).await.is_some());
    assert!(session.simple_query("select 1").await.is_ok());
    let ro = p
        .metrics
        .snapshot()
        .listener("ro")
        .unwrap()
        .closed_on_change;
    assert_eq!(ro, 0, "read-only sessions closed on a targets change");
    forward.abort();
    run.stop.cancel();
}

/// A proxy fed every targets change `run` publishes, and the task that forwards them.
async fn proxy_fed_by(run: &ProberRun) -> (TestProxy, tokio::task::JoinHandle<()>) {
    let p = TestProxy::start(run.targets.borrow().clone(), |_| {}).await;
    let (mut from, to) = (run.targets.clone(), p.targets.clone());
    let forward = tokio::spawn(async move {
        while from.changed().await.is_ok() {
            let t = from.borrow_and_update().clone();
            to.send_replace(t);
        }
    });
    (p, forward)
}

/// Found by review (2026-12-07): the prober's decisions went unsaid. A check that failed (a
/// wrong password, a certificate refused, a member down) was logged at debug only, and which
/// member read-write sessions went to, or why none, at no level: every read-write client
/// waited out `hold_timeout` and failed with nothing in the log to say why. Now each member
/// whose checks begin or stop failing is said once, with the error, and so is every change of
/// where read-write sessions go.
#[tokio::test]
async fn the_prober_says_where_read_write_sessions_go_and_why_none() {
    let logs = pgha_testkit::CapturedLogs::start();
    let c = cluster();
    // the lease holder at an address nothing listens on
    let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gone_addr = gone.local_addr().unwrap().to_string();
    drop(gone);
    let mut run = ProberRun::start(
        Candidates {
            leader: Some(Member::new("n9", gone_addr.as_str())),
            standbys: vec![],
        },
        Duration::from_secs(2),
    );
    let limit = Duration::from_secs(10);
    assert!(run
        .within(limit, |t| t.unanswered.is_some())
        .await
        .is_some());
    // a few more rounds: each failure is said once
    tokio::time::sleep(Duration::from_millis(500)).await;
    let out = logs.take();
    let cannot = out.matches("cannot check n9").count();
    assert_eq!(cannot, 1, "{out}");
    assert!(out.contains("WARN") && out.contains(&gone_addr), "{out}");
    assert!(
        out.contains("the lease holder n9 did not answer its check"),
        "{out}"
    );
    // the store names the real primary: where read-write sessions go now
    let primary = c.primary();
    run.candidates.send_replace(Candidates {
        leader: Some(member(primary.clone())),
        standbys: vec![],
    });
    let is_primary = |t: &Targets| t.rw.as_ref() == Some(&primary);
    assert!(run.within(limit, is_primary).await.is_some());
    let out = logs.take();
    let going = format!("read-write sessions go to {}", primary.name);
    assert!(out.contains(&going), "{out}");
    run.stop.cancel();
    run.task.await.unwrap();
}
