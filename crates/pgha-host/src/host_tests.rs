//! Starting and stopping a host's agents: a start waits for a stop of the same member.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use pgha_agent::agent::Shutdown;
use pgha_pg::{Instance, PgBinaries, StopMode};
use pgha_store::{MemoryStore, TokioClock};

use super::{Host, HostSetup};

/// PostgreSQL's programs in `dir`, but a `pg_ctl` that takes `delay` before each stop.
fn programs_with_a_slow_stop(real: &PgBinaries, dir: &Path, delay: Duration) -> PgBinaries {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for program in pgha_pg::binaries::REQUIRED {
        if program != "pg_ctl" {
            std::os::unix::fs::symlink(real.program(program), dir.join(program)).unwrap();
        }
    }
    let pg_ctl = real.program("pg_ctl").display().to_string();
    let script = format!(
        "#!/bin/sh\ncase \" $* \" in *' stop '*) sleep {} ;; esac\nexec '{pg_ctl}' \"$@\"\n",
        delay.as_secs_f32()
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
    let host = Host::new(HostSetup {
        cluster: "c".into(),
        store: Arc::new(MemoryStore::new(Arc::new(TokioClock::new()))),
        members: vec![spec],
        token: None,
        credentials: pgha_pg::probe::Credentials {
            user: "postgres".into(),
            password: "secret".into(),
            dbname: "postgres".into(),
            tls: None,
        },
        entry_points: Default::default(),
    });
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
