//! Test fixtures: one real PostgreSQL primary + streaming standby shared by the tests of a binary,
//! and a proxy started per test (in front of those, or of the in-process fake backends of
//! [`fake`] for the tests that need no PostgreSQL).
#![allow(dead_code)]

pub mod ca_cluster;
pub mod clients;
pub mod fake;
pub mod prober_run;
pub mod raw_client;
pub mod test_proxy;

pub use test_proxy::{targets_of, TestProxy};

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::Duration;

use pgha_proxy::{Backend, Standby, Targets};
use pgha_testkit::{free_port, wait_until};

pub const PG_BIN: &str = pgha_testkit::servers::DEBIAN_15;

fn cached(what: &str, rel: &str) -> PathBuf {
    let path = pgha_testkit::servers::deps_cache().join(rel);
    assert!(
        path.exists(),
        "{what} not found at {}: run scripts/install-deps.sh test",
        path.display()
    );
    path
}

/// `bin/` of the PostgreSQL 18 server build that install-deps.sh fetched.
pub fn pg18_bin() -> PathBuf {
    pgha_testkit::servers::bin_dir(18)
}

/// The Python interpreter with psycopg 3 (and its bundled libpq) that install-deps.sh set up.
pub fn test_python() -> PathBuf {
    cached("psycopg's Python", "venv/bin/python3")
}

/// Shared cluster: started once per test binary, stopped when the process exits (the postmasters
/// get SIGINT through PR_SET_PDEATHSIG when the thread that spawned them — alive as long as the
/// process — goes away), data under a directory removed by the next run.
pub struct Cluster {
    pub dir: PathBuf,
    /// The server build's `bin/`.
    pub bin: PathBuf,
    pub primary_port: u16,
    pub standby_port: u16,
    /// The postmasters (never waited on: they end when this process exits).
    pub children: Vec<Child>,
}

impl Cluster {
    pub fn primary(&self) -> Backend {
        Backend::new("primary", format!("127.0.0.1:{}", self.primary_port))
    }
    pub fn standby(&self) -> Backend {
        Backend::new("standby", format!("127.0.0.1:{}", self.standby_port))
    }
    pub fn standby_target(&self, lag: Option<u64>) -> Standby {
        Standby {
            backend: self.standby(),
            lag_bytes: lag,
            streaming: true,
        }
    }
    pub fn targets(&self) -> Targets {
        targets_of(self.primary(), [self.standby()])
    }
}

fn pg_user() -> Option<(u32, u32)> {
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let name = std::ffi::CString::new("postgres").unwrap();
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(!pw.is_null(), "running as root needs an OS user `postgres`");
    Some(unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
}

pub fn command(bin: &str) -> Command {
    command_in(Path::new(PG_BIN), bin)
}

/// `program`, run as the PostgreSQL OS user when running as root.
fn as_pg_user(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new(program);
    if let Some((uid, gid)) = pg_user() {
        c.uid(uid).gid(gid);
    }
    c
}

/// `bin` from the build in `dir`, as the PostgreSQL OS user when running as root.
pub fn command_in(dir: &Path, bin: &str) -> Command {
    let mut c = as_pg_user(dir.join(bin));
    c.env_remove("PGPORT")
        .env_remove("PGHOST")
        .stdin(Stdio::null());
    c
}

pub fn run(mut c: Command) {
    let out = c.output().expect("spawn");
    assert!(
        out.status.success(),
        "{c:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

type SpawnReq = (Command, mpsc::Sender<Child>);

/// Spawns from one thread that lives as long as the process, so PDEATHSIG fires only at exit.
fn spawn_long_lived(mut c: Command) -> Child {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnReq>>> = OnceLock::new();
    let tx = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnReq>();
        std::thread::spawn(move || {
            for (mut cmd, reply) in rx {
                unsafe {
                    cmd.pre_exec(|| {
                        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT);
                        Ok(())
                    });
                }
                let _ = reply.send(cmd.spawn().expect("spawn postgres"));
            }
            // Keep the spawning thread (the postmasters' parent) alive until the process exits.
            loop {
                std::thread::park();
            }
        });
        Mutex::new(tx)
    });
    let (rtx, rrx) = mpsc::channel();
    c.stdout(Stdio::null()).stderr(Stdio::null());
    tx.lock().unwrap().send((c, rtx)).unwrap();
    rrx.recv().unwrap()
}

fn wait_ready(port: u16) {
    wait_until(
        &format!("postgres on {port} to accept connections"),
        Duration::from_secs(30),
        || {
            Command::new(Path::new(PG_BIN).join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
                .status()
                .is_ok_and(|s| s.success())
                .then_some(())
        },
    );
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir("/tmp") else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if let Some(pid) = name.strip_prefix("pgha-proxy-test-") {
            if !Path::new("/proc").join(pid).exists() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

/// What kind of cluster [`start_cluster_with`] starts.
pub struct ClusterOptions {
    /// Subdirectory of this process's test directory (distinct per cluster of one binary).
    pub name: &'static str,
    /// `bin/` of the server build.
    pub bin: PathBuf,
    /// Serve TLS (`ssl = on`, a self-signed certificate made for the run).
    pub ssl: bool,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            name: "pg15",
            bin: PathBuf::from(PG_BIN),
            ssl: false,
        }
    }
}

pub fn start_cluster() -> Cluster {
    start_cluster_with(&ClusterOptions::default())
}

/// A primary and its streaming standby, from `opts.bin`, on free ports.
pub fn start_cluster_with(opts: &ClusterOptions) -> Cluster {
    let dir = cluster_dir(opts.name);
    let bin = opts.bin.as_path();
    let (pp, sp) = (free_port(), free_port());
    let primary = dir.join("primary");
    initdb(bin, &primary);
    let ssl = if opts.ssl {
        tls_settings(&dir)
    } else {
        "ssl = off\n".into()
    };
    append(
        &primary.join("postgresql.conf"),
        &primary_conf(pp, &dir, &ssl),
    );
    let mut children = vec![start_postgres(bin, &primary, pp)];
    let standby = dir.join("standby");
    base_backup(bin, pp, &standby);
    append(
        &standby.join("postgresql.conf"),
        &format!("port = {sp}\n{}", replication_name("standby")),
    );
    children.push(start_postgres(bin, &standby, sp));
    Cluster {
        dir,
        bin: bin.to_path_buf(),
        primary_port: pp,
        standby_port: sp,
        children,
    }
}

/// A fresh directory `name` for one cluster in this process's test directory
/// (/tmp/pgha-proxy-test-PID; those of finished processes are removed first), both owned by the
/// PostgreSQL OS user when running as root.
fn cluster_dir(name: &str) -> PathBuf {
    remove_stale_dirs();
    let chown = |p: &Path| {
        if let Some((uid, gid)) = pg_user() {
            std::os::unix::fs::chown(p, Some(uid), Some(gid)).unwrap();
        }
    };
    let top = PathBuf::from(format!("/tmp/pgha-proxy-test-{}", std::process::id()));
    std::fs::create_dir_all(&top).unwrap();
    chown(&top);
    let dir = top.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    chown(&dir);
    dir
}

/// A new data directory `data` from the build in `bin` (superuser `postgres`, trust, UTF8, C).
fn initdb(bin: &Path, data: &Path) {
    let mut c = command_in(bin, "initdb");
    c.args(["-A", "trust", "-U", "postgres", "-N"])
        .args(["-E", "UTF8", "--locale=C", "-D"])
        .arg(data);
    run(c);
}

/// The settings of a primary on `port` with its socket in `dir`, made for speed and to feed
/// streaming standbys, then `ssl` (the TLS settings).
fn primary_conf(port: u16, dir: &Path, ssl: &str) -> String {
    format!(
        "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
         fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nshared_buffers = 16MB\n\
         max_connections = 100\nwal_level = replica\nmax_wal_senders = 6\nhot_standby = on\n\
         logging_collector = off\n{ssl}",
        dir.display()
    )
}

/// Starts the server on `data` (until this process exits) and waits until it accepts
/// connections on `port`.
fn start_postgres(bin: &Path, data: &Path, port: u16) -> Child {
    let mut c = command_in(bin, "postgres");
    c.arg("-D").arg(data);
    let child = spawn_long_lived(c);
    wait_ready(port);
    child
}

/// The setting that makes a standby stream under `name` (its walreceiver's application_name),
/// as pgha's members do: the prober routes reads only to standbys the primary names so.
pub fn replication_name(name: &str) -> String {
    format!("cluster_name = '{name}'\n")
}

/// `data`, a base backup of the primary on `primary_port`, set up to stream from it.
fn base_backup(bin: &Path, primary_port: u16, data: &Path) {
    let mut c = command_in(bin, "pg_basebackup");
    c.args([
        "-h",
        "127.0.0.1",
        "-p",
        &primary_port.to_string(),
        "-U",
        "postgres",
    ])
    .args(["-R", "-X", "stream", "-D"])
    .arg(data);
    run(c);
}

/// A self-signed certificate and key in `dir` (made by the PostgreSQL OS user, key 0600), and
/// the settings that make the server use them.
fn tls_settings(dir: &Path) -> String {
    let (crt, key) = (dir.join("server.crt"), dir.join("server.key"));
    let mut c = as_pg_user("openssl");
    c.args([
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
    ])
    .args(["-subj", "/CN=localhost", "-keyout"])
    .arg(&key)
    .arg("-out")
    .arg(&crt)
    .stdin(Stdio::null());
    run(c);
    let mut c = as_pg_user("chmod");
    c.arg("600").arg(&key);
    run(c);
    format!(
        "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n",
        crt.display(),
        key.display()
    )
}

/// A standby of `c`'s standby (cascading replication, as a member still streaming from a
/// demoted primary), streaming under `name`; it runs until this process exits.
pub fn cascaded_standby(c: &Cluster, name: &str) -> Backend {
    let port = free_port();
    let data = c.dir.join(name);
    // A backup of the primary (one taken on a standby refuses full_page_writes = off),
    // streaming from the standby: the last primary_conninfo of the file written last wins.
    base_backup(&c.bin, c.primary_port, &data);
    append(
        &data.join("postgresql.conf"),
        &format!("port = {port}\n{}", replication_name(name)),
    );
    append(
        &data.join("postgresql.auto.conf"),
        &format!(
            "primary_conninfo = 'host=127.0.0.1 port={} user=postgres'\n",
            c.standby_port
        ),
    );
    std::mem::forget(start_postgres(&c.bin, &data, port));
    Backend::new(name, format!("127.0.0.1:{port}"))
}

/// The shared cluster (started by the first test that asks).
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(start_cluster)
}

pub fn conninfo(addr: std::net::SocketAddr) -> String {
    format!(
        "host={} port={} user=postgres dbname=postgres connect_timeout=20",
        addr.ip(),
        addr.port()
    )
}

pub async fn connect(
    addr: std::net::SocketAddr,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(&conninfo(addr), tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

pub async fn in_recovery(c: &tokio_postgres::Client) -> bool {
    c.query_one("select pg_is_in_recovery()", &[])
        .await
        .unwrap()
        .get(0)
}
