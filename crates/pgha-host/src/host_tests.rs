//! Starting and stopping a host's agents: a start waits for a stop of the same member.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use pgha_agent::agent::Shutdown;
use pgha_pg::{Instance, PgBinaries, StopMode};
use pgha_store::{MemoryStore, TokioClock};

use super::{Host, HostSetup};

/// A host running `spec`'s member over `store`.
fn one_member_host(
    store: Arc<dyn pgha_store::Store>,
    spec: pgha_agent::spec::NodeSpec,
) -> Arc<Host> {
    Host::new(HostSetup {
        cluster: "c".into(),
        store,
        members: vec![spec],
        token: None,
        credentials: pgha_pg::probe::Credentials {
            user: "postgres".into(),
            password: "secret".into(),
            dbname: "postgres".into(),
            tls: None,
        },
        entry_points: Default::default(),
    })
}

/// PostgreSQL's programs in `dir`, but a `pg_ctl` that takes `delay` before each stop.
fn programs_with_a_slow_stop(real: &PgBinaries, dir: &Path, delay: Duration) -> PgBinaries {
    programs_whose_stop_first(real, dir, &format!("sleep {}", delay.as_secs_f32()))
}

/// PostgreSQL's programs in `dir`, but a `pg_ctl` that runs `first` (shell) before each stop.
fn programs_whose_stop_first(real: &PgBinaries, dir: &Path, first: &str) -> PgBinaries {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for program in pgha_pg::binaries::REQUIRED {
        if program != "pg_ctl" {
            std::os::unix::fs::symlink(real.program(program), dir.join(program)).unwrap();
        }
    }
    let pg_ctl = real.program("pg_ctl").display().to_string();
    let script = format!(
        "#!/bin/sh\ncase \" $* \" in *' stop '*) {first} ;; esac\nexec '{pg_ctl}' \"$@\"\n"
    );
    let wrapper = dir.join("pg_ctl");
    std::fs::write(&wrapper, script).unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    PgBinaries::at(dir).unwrap()
}

/// Found by review (2026-12-04): `pgha stop n1` took the agent out of the host before it had
/// stopped, so a `pgha start n1` meanwhile ran a second agent of n1 beside the first, still
/// leaving: both may hold n1's leader key as their own (the same term, adopted), and the first
/// one's leaving released it while the second's primary ran on it. The start now waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_waits_for_the_stop_of_the_same_member() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut spec = pgha_agent::test_spec::spec(dir.path());
    let inst = spec.instance.clone();
    let _primary = pgha_agent::test_spec::RunningPrimary::start(&inst).await;
    let slow =
        programs_with_a_slow_stop(&inst.bins, &dir.path().join("bin"), Duration::from_secs(2));
    spec.instance = Instance::new("n1", &inst.member_dir, slow, inst.run_as.clone());
    let store = MemoryStore::new(Arc::new(TokioClock::new()));
    crate::ops::ensure_config(&store, &Default::default())
        .await
        .unwrap();
    let host = one_member_host(Arc::new(store), spec);
    assert!(host.start_member("n1").await.unwrap());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopping = {
        let host = host.clone();
        tokio::spawn(async move {
            host.stop_member("n1", Shutdown::Leave(StopMode::Fast))
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(inst.is_running(), "the first agent's stop is not under way");
    let started = host.start_member("n1").await.unwrap();
    // The first agent stops PostgreSQL before it ends; the second has not started it yet.
    let first_still_stopping = inst.is_running();
    assert!(stopping.await.unwrap(), "the first agent was running");
    host.stop_member("n1", Shutdown::Leave(StopMode::Fast))
        .await
        .unwrap();
    assert!(started, "the second start did not start an agent");
    assert!(
        !first_still_stopping,
        "a second agent of n1 started while the first was still stopping"
    );
}

/// Found by review (2026-12-07): an agent started by `pgha start` or a restart while the store
/// held no configuration (etcd lost its data) started with the defaults, and put them into the
/// store ahead of the running members: a strict cluster ran asynchronous with nobody told. It
/// starts with the configuration its member kept beside its data; with none kept, not at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_started_while_the_store_holds_no_configuration_starts_with_the_kept_one() {
    use pgha_core::{ClusterConfig, SyncMode};
    use pgha_store::{Key, Store as _};
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let spec = pgha_agent::test_spec::spec(dir.path());
    spec.instance.create_member_dir().unwrap();
    let inst = spec.instance.clone();
    let store = Arc::new(MemoryStore::new(Arc::new(TokioClock::new())));
    let host = one_member_host(store.clone(), spec);
    let refused = host.start_member("n1").await.unwrap_err();
    assert!(
        matches!(refused, super::HostError::NoConfiguration { .. }),
        "{refused}"
    );
    let strict = ClusterConfig {
        synchronous_mode: SyncMode::Strict,
        ttl_ms: 6_000,
        safety_margin_ms: 1_500,
        ..ClusterConfig::default()
    };
    let json = serde_json::to_string(&strict).unwrap();
    pgha_pg::kept_config::remember(&inst, &json).unwrap();
    assert!(host.start_member("n1").await.unwrap());
    let mut stored = None;
    for _ in 0..100 {
        let snapshot = store.snapshot().await.unwrap();
        stored = pgha_store::stored_config(&snapshot).unwrap();
        if stored.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    host.stop_member("n1", Shutdown::Leave(StopMode::Fast))
        .await
        .unwrap();
    assert_eq!(stored, Some(strict), "the configuration the agent put back");
    assert!(store.snapshot().await.unwrap().get(Key::Config).is_some());
}

/// Found by review (2026-12-07): `pgha reinit` moved the data directory aside once the agent had
/// left, whether or not its PostgreSQL had stopped (a stop that fails on a hung disk, reinit's
/// own use): a running postmaster's directory renamed under it, and a clone started beside it.
/// Nothing moves while it runs; the agent runs again and the refusal says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reinit_moves_nothing_while_postgresql_still_runs() {
    use pgha_store::Store as _;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut spec = pgha_agent::test_spec::spec(dir.path());
    let inst = spec.instance.clone();
    let primary = pgha_agent::test_spec::RunningPrimary::start(&inst).await;
    let failing = programs_whose_stop_first(&inst.bins, &dir.path().join("bin"), "exit 1");
    spec.instance = Instance::new("n1", &inst.member_dir, failing, inst.run_as.clone());
    let store = MemoryStore::new(Arc::new(TokioClock::new()));
    crate::ops::ensure_config(&store, &Default::default())
        .await
        .unwrap();
    store
        .acquire_leader("n0", pgha_core::Ttl::from_secs(60))
        .await
        .unwrap();
    let host = one_member_host(Arc::new(store), spec);
    assert!(host.start_member("n1").await.unwrap());
    let refused = host.reinit_member("n1").await.unwrap_err();
    let still = host.is_running(&pgha_core::MemberName::new("n1"));
    host.stop_member("n1", Shutdown::Leave(StopMode::Fast))
        .await
        .unwrap();
    assert!(
        refused
            .to_string()
            .contains("still runs after its agent stopped"),
        "{refused}"
    );
    assert!(
        inst.data_dir().join("PG_VERSION").exists(),
        "the data moved"
    );
    assert!(still, "its agent does not run again");
    assert!(inst.is_running());
    drop(primary);
}

/// Found by review (2026-12-07): `pgha reinit` of a paused cluster moved the data aside and
/// started an agent that clones nothing in maintenance mode: the member stayed without data
/// until `pgha resume`, the command saying it was cloning. Refused, touching nothing.
#[tokio::test]
async fn reinit_is_refused_while_the_cluster_is_paused() {
    use pgha_store::Store as _;
    let dir = tempfile::tempdir().unwrap();
    let spec = pgha_agent::test_spec::spec(dir.path());
    let data = spec.instance.data_dir();
    std::fs::create_dir_all(&data).unwrap();
    let store = MemoryStore::new(Arc::new(TokioClock::new()));
    let paused = pgha_core::ClusterConfig {
        paused: true,
        ..Default::default()
    };
    crate::ops::ensure_config(&store, &paused).await.unwrap();
    store
        .acquire_leader("n0", pgha_core::Ttl::from_secs(60))
        .await
        .unwrap();
    let host = one_member_host(Arc::new(store), spec);
    let refused = host.reinit_member("n1").await.unwrap_err();
    assert!(refused.to_string().contains("paused"), "{refused}");
    assert!(data.is_dir(), "the data moved");
}
