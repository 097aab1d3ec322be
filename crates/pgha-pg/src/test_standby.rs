//! For tests: a member of its own, in a temporary directory, whose PostgreSQL runs as a
//! standby without an upstream, reachable on a Unix socket only.

use std::path::PathBuf;

use crate::instance::Instance;

/// Member `name` in a new temporary directory (kept as long as the directory is), nothing
/// created yet, with this machine's PostgreSQL programs and OS user.
pub(crate) fn test_instance(name: &str) -> (tempfile::TempDir, Instance) {
    let dir = tempfile::tempdir().unwrap();
    let bins = crate::PgBinaries::discover(None).expect("PostgreSQL's programs");
    let run_as = crate::RunAs::detect("postgres").expect("the postgres OS user");
    let inst = Instance::new(name, &dir.path().join(name), bins, run_as);
    (dir, inst)
}

/// A member directory, initialised, with `standby.signal`.
pub(crate) struct TestStandby {
    pub inst: Instance,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestStandby {
    /// Initialises member `name` as a standby (not started).
    pub async fn new(name: &str) -> Self {
        let (dir, inst) = test_instance(name);
        inst.create_member_dir().unwrap();
        let data = inst.data_dir();
        inst.initdb(&data, "postgres", "secret").await.unwrap();
        let socket = inst.member_dir.display().to_string();
        let settings =
            format!("port = 5432\nlisten_addresses = ''\nunix_socket_directories = '{socket}'\n");
        let write = |file: &str, text: &[u8]| {
            crate::beneath::write(&data.join(file), text, 0o600, &inst.run_as).unwrap();
        };
        write("postgresql.auto.conf", settings.as_bytes());
        write("standby.signal", b"");
        let log = inst.member_dir.join("pg.log");
        TestStandby {
            inst,
            log,
            _dir: dir,
        }
    }

    /// Runs `pg_ctl -D DATA ARGS` as the PostgreSQL OS user; panics, with its log, on failure.
    pub async fn pg_ctl(&self, args: &[&str]) {
        assert!(
            self.try_pg_ctl(args).await,
            "pg_ctl {args:?} failed:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// Runs `pg_ctl -D DATA ARGS` as the PostgreSQL OS user; whether it succeeded.
    pub async fn try_pg_ctl(&self, args: &[&str]) -> bool {
        let mut cmd = self
            .inst
            .run_as
            .command(self.inst.bins.program("pg_ctl"), &self.inst.member_dir);
        cmd.arg("-D").arg(self.inst.data_dir()).args(args);
        cmd.status().await.unwrap().success()
    }

    /// Starts PostgreSQL and waits until it accepts connections.
    pub async fn start(&self) {
        let log = self.log.display().to_string();
        self.pg_ctl(&["-w", "-l", &log, "start"]).await;
    }
}

/// A client, as the superuser, of the test member whose socket is in `inst`'s directory.
pub(crate) async fn client(inst: &Instance) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::Config::new()
        .host_path(&inst.member_dir)
        .port(5432)
        .user("postgres")
        .password("secret")
        .dbname("postgres")
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}
