//! A cluster whose members serve TLS with certificates from a pgha cluster CA (pgha-pg's
//! `Authority`): primary `n1` and standbys `n2`, `n3`, ..., each certificate naming its member
//! and 127.0.0.1, plus the proxy's own certificate for the name clients use, from the same CA.
//! The role `app` (password [`APP_PASSWORD`]) must authenticate with SCRAM (and `rotating`, if
//! a test creates it, and `ghost`, `ghost_1`, ... which do not exist), [`MD5_ROLE`]
//! with md5 (its password stored as an md5 hash); `postgres` is trusted.

use std::path::{Path, PathBuf};

use pgha_pg::tls::{Authority, Issued};
use pgha_proxy::{Backend, ProberConfig, ProxyTls, Standby, Targets};
use pgha_testkit::free_port;

use super::{append, command_in, pg_user, remove_stale_dirs, run, spawn_long_lived, wait_ready};

/// The name clients verify the proxy by (reached at 127.0.0.1 through `hostaddr`).
pub const PROXY_HOST: &str = "db.cluster.test";
/// The SCRAM role's password.
pub const APP_PASSWORD: &str = "app-secret";
/// The role whose password is an md5 hash (`md5` in pg_hba.conf), and its password.
pub const MD5_ROLE: &str = "legacy";
pub const MD5_PASSWORD: &str = "legacy-secret";

pub struct CaCluster {
    pub dir: PathBuf,
    pub bin: PathBuf,
    /// The cluster CA's certificate.
    pub ca_cert: PathBuf,
    /// The proxy's certificate and key (for [`PROXY_HOST`]) and the CA.
    pub proxy_tls: ProxyTls,
    /// Members in order (`n1` is the primary) and their ports.
    pub members: Vec<(String, u16)>,
    /// The postmasters (never waited on: they end when this process exits).
    pub children: Vec<std::process::Child>,
}

impl CaCluster {
    pub fn backend(&self, i: usize) -> Backend {
        let (name, port) = &self.members[i];
        Backend::new(name.as_str(), format!("127.0.0.1:{port}"))
    }

    /// `n1` read-write, every standby read-only.
    pub fn targets(&self) -> Targets {
        Targets {
            rw: Some(self.backend(0)),
            ro: (1..self.members.len())
                .map(|i| Standby {
                    backend: self.backend(i),
                    lag_bytes: Some(0),
                    streaming: true,
                })
                .collect(),
            generation: 1,
        }
    }

    pub fn port(&self, i: usize) -> u16 {
        self.members[i].1
    }

    /// The proxy's superuser for reading verifiers: `postgres` over TLS verified by the
    /// cluster CA, as pgha's prober connects.
    pub fn superuser(&self) -> ProberConfig {
        let pem = std::fs::read_to_string(&self.ca_cert).unwrap();
        let mut su = ProberConfig::new("postgres");
        su.tls = Some(pgha_pg::tls::ClientTls::from_ca_pem(&pem, "ca.crt").unwrap());
        su
    }

    /// The libpq options that reach the proxy at `addr` and verify its certificate.
    pub fn verify_full(&self, addr: std::net::SocketAddr) -> String {
        format!(
            "host={PROXY_HOST} hostaddr={} port={} sslmode=verify-full sslrootcert={} \
             dbname=postgres connect_timeout=20",
            addr.ip(),
            addr.port(),
            self.ca_cert.display()
        )
    }
}

fn write(path: &Path, text: &str, mode: u32, for_postgres: bool) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    if let Some((uid, gid)) = pg_user().filter(|_| for_postgres) {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
    }
}

fn install(dir: &Path, name: &str, issued: &Issued, for_postgres: bool) -> (PathBuf, PathBuf) {
    let (crt, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    write(&crt, &issued.cert_pem, 0o644, for_postgres);
    write(&key, &issued.key_pem, 0o600, for_postgres);
    (crt, key)
}

fn ssl_conf(dir: &Path, ca: &Authority, name: &str) -> String {
    let issued = ca.issue(name, &["127.0.0.1".into()]).unwrap();
    let (crt, key) = install(dir, name, &issued, true);
    format!(
        "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n",
        crt.display(),
        key.display()
    )
}

/// Starts `n1` and `standbys` streaming standbys from the server build in `bin`.
pub fn start_ca_cluster(name: &str, bin: &Path, standbys: usize) -> CaCluster {
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
    let ca = Authority::generate().unwrap();
    let ca_cert = dir.join("ca.crt");
    write(&ca_cert, &ca.issued().cert_pem, 0o644, false);
    let proxy = ca
        .issue("pgha-proxy", &[PROXY_HOST.into(), "127.0.0.1".into()])
        .unwrap();
    let (cert_file, key_file) = install(&dir, "proxy", &proxy, false);
    let proxy_tls = ProxyTls {
        cert_file,
        key_file,
        ca_file: ca_cert.clone(),
        require: false,
    };

    let pp = free_port();
    let primary = dir.join("n1");
    let mut c = command_in(bin, "initdb");
    c.args([
        "-A",
        "trust",
        "-U",
        "postgres",
        "-N",
        "-E",
        "UTF8",
        "--locale=C",
        "-D",
    ])
    .arg(&primary);
    run(c);
    let conf = format!(
        "port = {pp}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
         fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nshared_buffers = 16MB\n\
         max_connections = 100\nwal_level = replica\nmax_wal_senders = 6\nhot_standby = on\n\
         logging_collector = off\n{}",
        dir.display(),
        ssl_conf(&dir, &ca, "n1")
    );
    append(&primary.join("postgresql.conf"), &conf);
    let hba = primary.join("pg_hba.conf");
    let trusted = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(
        &hba,
        format!(
            "host all app,rotating,/^ghost 127.0.0.1/32 scram-sha-256\n\
             host all {MD5_ROLE} 127.0.0.1/32 md5\n{trusted}"
        ),
    )
    .unwrap();
    let mut c = command_in(bin, "postgres");
    c.arg("-D").arg(&primary);
    let mut children = vec![spawn_long_lived(c)];
    wait_ready(pp);
    let mut c = command_in(bin, "psql");
    let create = format!("create role app login password '{APP_PASSWORD}'");
    let md5 = format!(
        "set password_encryption = md5; \
         create role {MD5_ROLE} login password '{MD5_PASSWORD}'"
    );
    c.args(["-X", "-h", "127.0.0.1", "-p", &pp.to_string()])
        .args([
            "-U", "postgres", "-d", "postgres", "-c", &create, "-c", &md5,
        ]);
    run(c);
    let mut members = vec![("n1".to_string(), pp)];
    for i in 0..standbys {
        let (name, port) = (format!("n{}", i + 2), free_port());
        let data = dir.join(&name);
        let mut c = command_in(bin, "pg_basebackup");
        c.args(["-h", "127.0.0.1", "-p", &pp.to_string(), "-U", "postgres"])
            .args(["-R", "-X", "stream", "-D"])
            .arg(&data);
        run(c);
        let conf = format!("port = {port}\n{}", ssl_conf(&dir, &ca, &name));
        append(&data.join("postgresql.conf"), &conf);
        let mut c = command_in(bin, "postgres");
        c.arg("-D").arg(&data);
        children.push(spawn_long_lived(c));
        wait_ready(port);
        members.push((name, port));
    }
    CaCluster {
        dir,
        bin: bin.to_path_buf(),
        ca_cert,
        proxy_tls,
        members,
        children,
    }
}
