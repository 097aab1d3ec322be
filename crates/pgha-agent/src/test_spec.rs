//! A member's spec for the agent's (and the host's) unit tests: n1, no data directory yet,
//! PostgreSQL's programs found on this machine; and its PostgreSQL started as a primary.

use pgha_core::{MemberName, Tags};
use pgha_pg::{Instance, PgBinaries, RunAs};

use crate::spec::NodeSpec;

pub fn spec(dir: &std::path::Path) -> NodeSpec {
    let bins = PgBinaries::discover(None).expect("PostgreSQL's programs (the tests need them)");
    let run_as = RunAs::detect("postgres").expect("the postgres OS user");
    NodeSpec {
        name: MemberName::new("n1"),
        instance: Instance::new("n1", &dir.join("n1"), bins, run_as),
        host: "127.0.0.1".into(),
        port: 1,
        api: None,
        api_token: None,
        superuser: "postgres".into(),
        superuser_password: "x".into(),
        replication_user: "replicator".into(),
        replication_password: "y".into(),
        passfile: dir.join("pgpass"),
        cluster_size: 1,
        parameters: Default::default(),
        hba: String::new(),
        tags: Tags::default(),
        tls: None,
        api_https: false,
        callbacks: Default::default(),
        cluster: "c".into(),
    }
}

/// The PostgreSQL of `inst`, initialised and started as a primary by PostgreSQL's own
/// `pg_ctl`, on a Unix socket in its member directory (its `member_dir` must be readable by
/// the PostgreSQL OS user); stopped at once (SIGQUIT) when dropped, however the test ends.
pub struct RunningPrimary(Instance);

impl RunningPrimary {
    pub async fn start(inst: &Instance) -> Self {
        inst.create_member_dir().unwrap();
        let data = inst.data_dir();
        inst.initdb(&data, "postgres", "secret").await.unwrap();
        let socket = inst.member_dir.display().to_string();
        let settings =
            format!("port = 5432\nlisten_addresses = ''\nunix_socket_directories = '{socket}'\n");
        std::fs::write(data.join("postgresql.auto.conf"), settings).unwrap();
        let log = inst.member_dir.join("pg.log").display().to_string();
        let started = inst
            .run_as
            .command(inst.bins.program("pg_ctl"), &inst.member_dir)
            .arg("-D")
            .arg(&data)
            .args(["-w", "-l", &log, "start"])
            .status()
            .await
            .unwrap();
        assert!(started.success(), "pg_ctl start failed: see {log}");
        RunningPrimary(inst.clone())
    }
}

impl Drop for RunningPrimary {
    fn drop(&mut self) {
        if let Some(pid) = self.0.postmaster_pid() {
            // SAFETY: kill(2) on a pid, with a signal number; no memory is involved.
            unsafe { libc::kill(pid, libc::SIGQUIT) };
        }
    }
}
