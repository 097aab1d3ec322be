//! Leaving: the leader key stays while PostgreSQL still runs; a leader leaves a failsafe list naming only itself.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::Arc;

use pgha_pg::{Instance, PgBinaries, StopMode};
use pgha_store::{MemoryStore, Store, TokioClock};

use crate::agent::{Agent, Shutdown};
use crate::test_spec::{spec, RunningPrimary};

/// PostgreSQL's programs in `dir`, but a `pg_ctl` that fails at everything except telling its
/// version (as one gone after a package upgrade, or that cannot fork, would).
fn programs_whose_pg_ctl_fails(real: &PgBinaries, dir: &Path) -> PgBinaries {
    std::fs::create_dir_all(dir).unwrap();
    for program in pgha_pg::binaries::REQUIRED {
        if program != "pg_ctl" {
            std::os::unix::fs::symlink(real.program(program), dir.join(program)).unwrap();
        }
    }
    let script = format!(
        "#!/bin/sh\n[ \"$1\" = --version ] && exec '{}' --version\nexit 1\n",
        real.program("pg_ctl").display()
    );
    let pg_ctl = dir.join("pg_ctl");
    std::fs::write(&pg_ctl, script).unwrap();
    std::fs::set_permissions(&pg_ctl, std::fs::Permissions::from_mode(0o755)).unwrap();
    PgBinaries::at(dir).unwrap()
}

/// Found by review: leaving released the leader key whether or not PostgreSQL had stopped.
/// With its stop failed, the primary stays writable until its supervisor's deadline, while
/// another member, seeing the key gone, takes it and promotes at once: two writers. The key
/// now stays, and expires after that deadline, as when an agent dies.
#[tokio::test]
async fn a_leader_whose_postgres_did_not_stop_keeps_the_key_as_it_leaves() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut node = spec(dir.path());
    let inst = node.instance.clone();
    let primary = RunningPrimary::start(&inst).await;
    let failing = programs_whose_pg_ctl_fails(&inst.bins, &dir.path().join("bin"));
    node.instance = Instance::new("n1", &inst.member_dir, failing, inst.run_as.clone());

    let store = Arc::new(MemoryStore::new(Arc::new(TokioClock::new())));
    let term = store
        .acquire_leader("n1", pgha_core::Ttl::from_secs(10))
        .await
        .unwrap();
    let (mut agent, _report) = Agent::new(node, store.clone(), Default::default()).unwrap();
    agent.held_term = Some(term);
    agent.leave(Shutdown::Leave(StopMode::Fast)).await;
    let still_running = inst.is_running();
    let leader = store.snapshot().await.unwrap().leader;
    drop(primary);
    assert!(still_running, "the test's PostgreSQL stopped after all");
    assert_eq!(
        leader.map(|l| (l.holder, l.revision)),
        Some(("n1".to_string(), term)),
        "the leader key was released while PostgreSQL ran"
    );
}

/// Found by the whole suite (`failover::stalls_and_crashes::a_member_that_never_saw_a_timeline_promotes_to_a_newer_one`,
/// under load): n1, leading with the failsafe list {n1, n2}, was stopped; n2 took over and was
/// stopped before its first list went out; n3, started, was outside n1's list and waited for
/// a listed member to read the store for a ttl: none ever would. A leader whose PostgreSQL
/// stopped leaves a list naming only itself before it releases the key.
#[tokio::test]
async fn a_leader_leaving_leaves_a_failsafe_list_naming_only_itself() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new(Arc::new(TokioClock::new())));
    let ttl = pgha_core::Ttl::from_secs(10);
    let term = store.acquire_leader("n1", ttl).await.unwrap();
    let list = |members: &[&str]| pgha_core::FailsafeList {
        leader: pgha_core::MemberName::new("n1"),
        members: members
            .iter()
            .map(|m| pgha_core::MemberName::new(*m))
            .collect(),
    };
    let guard = pgha_store::Guard::LeaderAndKey {
        holder: "n1".into(),
        revision: term,
        key_revision: term,
    };
    let json = serde_json::to_string(&list(&["n1", "n2"])).unwrap();
    store
        .put(pgha_store::Key::Failsafe, &json, guard)
        .await
        .unwrap();
    let (mut agent, _report) =
        Agent::new(spec(dir.path()), store.clone(), Default::default()).unwrap();
    agent.held_term = Some(term);
    agent.leave(Shutdown::Leave(StopMode::Fast)).await;
    let snapshot = store.snapshot().await.unwrap();
    assert!(snapshot.leader.is_none(), "the key is released");
    let view = pgha_store::cluster_view(&snapshot).unwrap();
    assert_eq!(view.failsafe, Some(list(&["n1"])));
}

/// Found by review: leaving released the leader key held under its name at whatever revision
/// it read. A second agent of the same member (`pgha start` while the first still stops a
/// slow PostgreSQL, past its lease) takes the key at a later term; the first one's leave
/// then released the second's key: another member could take it and promote while the
/// second's primary still wrote. Only the term this agent held is released.
#[tokio::test]
async fn leaving_keeps_a_key_of_its_name_taken_in_a_later_term() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new(Arc::new(TokioClock::new())));
    let ttl = pgha_core::Ttl::from_secs(10);
    let first = store.acquire_leader("n1", ttl).await.unwrap();
    store.release_leader("n1", first).await.unwrap();
    let second = store.acquire_leader("n1", ttl).await.unwrap();
    let (mut agent, _report) =
        Agent::new(spec(dir.path()), store.clone(), Default::default()).unwrap();
    agent.held_term = Some(first);
    agent.leave(Shutdown::Leave(StopMode::Fast)).await;
    let leader = store.snapshot().await.unwrap().leader;
    assert_eq!(
        leader.map(|l| (l.holder, l.revision)),
        Some(("n1".to_string(), second)),
        "the later term's key was released"
    );
}

/// Found by review: a leave whose cancelled job had not ended within its wait stopped
/// PostgreSQL, disarmed the fence and released the key anyway, while that job (blocked in a
/// system call, a configuration write on a stalled disk) could still start PostgreSQL as a
/// primary once the call returned: another member would take the key and promote meanwhile.
/// The key stays, as when the stop fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_cancelled_job_has_not_ended_keeps_the_key_as_it_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new(Arc::new(TokioClock::new())));
    let term = store
        .acquire_leader("n1", pgha_core::Ttl::from_secs(10))
        .await
        .unwrap();
    let (mut agent, _report) =
        Agent::new(spec(dir.path()), store.clone(), Default::default()).unwrap();
    agent.held_term = Some(term);
    let (blocked_tx, blocked_rx) = std::sync::mpsc::channel();
    agent.jobs.start(
        pgha_core::JobKind::Start,
        true,
        move |_cancelled| async move {
            blocked_tx.send(()).unwrap();
            std::thread::sleep(std::time::Duration::from_secs(2));
        },
    );
    tokio::task::spawn_blocking(move || blocked_rx.recv().unwrap())
        .await
        .unwrap();
    agent
        .leave_waiting(
            Shutdown::Leave(StopMode::Fast),
            std::time::Duration::from_millis(200),
        )
        .await;
    let leader = store.snapshot().await.unwrap().leader;
    assert_eq!(
        leader.map(|l| (l.holder, l.revision)),
        Some(("n1".to_string(), term)),
        "the key was released while a job that may start a primary ran"
    );
}

/// Found by review of the fix above: the term was known only from the step after the store's
/// answer, so a stop that came in between kept a key this agent held (failover then waited a
/// ttl). The answer to an acquisition, and to a renewal of a key left under its name (an
/// earlier process of this member, or the one `pgha up` seeds), says the term at once.
#[tokio::test]
async fn a_term_taken_or_renewed_is_released_by_a_leave_before_the_next_step() {
    let ttl = pgha_core::Ttl::from_secs(10);
    for renewed in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(MemoryStore::new(Arc::new(TokioClock::new())));
        let (mut agent, _report) =
            Agent::new(spec(dir.path()), store.clone(), Default::default()).unwrap();
        if renewed {
            let revision = store.acquire_leader("n1", ttl).await.unwrap();
            agent
                .execute(vec![pgha_core::Action::RenewLeader { revision, ttl }])
                .await;
        } else {
            agent
                .execute_one(&pgha_core::Action::AcquireLeader {
                    ttl,
                    failsafe_revision: 0,
                })
                .await
                .unwrap();
        }
        assert!(store.snapshot().await.unwrap().leader.is_some());
        agent.leave(Shutdown::Leave(StopMode::Fast)).await;
        let leader = store.snapshot().await.unwrap().leader;
        assert!(
            leader.is_none(),
            "renewed {renewed}: the key was kept: {leader:?}"
        );
    }
}
