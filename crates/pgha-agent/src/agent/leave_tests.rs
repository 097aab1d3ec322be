//! Leaving with PostgreSQL still running: the leader key stays until its lease ends.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::Arc;

use pgha_pg::{Instance, PgBinaries, StopMode};
use pgha_store::{MemoryStore, Store, TokioClock};

use crate::agent::{Agent, Shutdown};
use crate::test_spec::spec;

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
    inst.create_member_dir().unwrap();
    let data = inst.data_dir();
    inst.initdb(&data, "postgres", "secret").await.unwrap();
    let socket = inst.member_dir.display().to_string();
    let settings =
        format!("port = 5432\nlisten_addresses = ''\nunix_socket_directories = '{socket}'\n");
    std::fs::write(data.join("postgresql.auto.conf"), settings).unwrap();
    let log = inst.member_dir.join("pg.log").display().to_string();
    let pg_ctl = |args: &[&str]| {
        let mut cmd = inst
            .run_as
            .command(inst.bins.program("pg_ctl"), &inst.member_dir);
        cmd.arg("-D").arg(&data).args(args);
        cmd
    };
    assert!(pg_ctl(&["-w", "-l", &log, "start"])
        .status()
        .await
        .unwrap()
        .success());
    let failing = programs_whose_pg_ctl_fails(&inst.bins, &dir.path().join("bin"));
    node.instance = Instance::new("n1", &inst.member_dir, failing, inst.run_as.clone());

    let store = Arc::new(MemoryStore::new(Arc::new(TokioClock::new())));
    let term = store
        .acquire_leader("n1", pgha_core::Ttl::from_secs(10))
        .await
        .unwrap();
    let (mut agent, _report) = Agent::new(node, store.clone(), Default::default());
    agent.leave(Shutdown::Leave(StopMode::Fast)).await;
    let still_running = inst.is_running();
    let leader = store.snapshot().await.unwrap().leader;
    let _ = pg_ctl(&["-m", "immediate", "stop"]).status().await;
    assert!(still_running, "the test's PostgreSQL stopped after all");
    assert_eq!(
        leader.map(|l| (l.holder, l.revision)),
        Some(("n1".to_string(), term)),
        "the leader key was released while PostgreSQL ran"
    );
}
