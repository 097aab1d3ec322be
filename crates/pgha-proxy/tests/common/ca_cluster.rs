//! A cluster whose members serve TLS with certificates from a pgha cluster CA (pgha-pg's
//! `Authority`): primary `n1` and standbys `n2`, `n3`, ..., each certificate naming its member
//! and 127.0.0.1, plus the proxy's own certificate for the name clients use, from the same CA.
//! The role `app` (password [`APP_PASSWORD`]) must authenticate with SCRAM (and `rotating`, if
//! a test creates it, and `ghost`, `ghost_1`, ... which do not exist), [`MD5_ROLE`]
//! with md5 (its password stored as an md5 hash); `postgres` is trusted.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pgha_pg::tls::{Authority, Issued};
use pgha_proxy::{Backend, ProberConfig, ProxyTls, Targets};
use pgha_testkit::free_port;

use super::{
    append, base_backup, cluster_dir, command_in, initdb, pg_user, primary_conf, replication_name,
    run, start_postgres, targets_of, TestProxy,
};

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
        targets_of(
            self.backend(0),
            (1..self.members.len()).map(|i| self.backend(i)),
        )
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

    /// A proxy in front of this cluster that terminates TLS with [`Self::proxy_tls`] (refusing
    /// plaintext clients when `require`), authenticates SCRAM roles itself as
    /// [`Self::superuser`], and holds sessions up to 3 s.
    pub async fn terminating_proxy(&self, require: bool) -> TestProxy {
        let mut tls = self.proxy_tls.clone();
        tls.require = require;
        TestProxy::start_authenticating(self.targets(), self.superuser(), |cfg| {
            cfg.tls = Some(tls);
            cfg.hold_timeout = Duration::from_secs(3);
        })
        .await
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
    let dir = cluster_dir(name);
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
    initdb(bin, &primary);
    append(
        &primary.join("postgresql.conf"),
        &primary_conf(pp, &dir, &ssl_conf(&dir, &ca, "n1")),
    );
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
    let mut children = vec![start_postgres(bin, &primary, pp)];
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
        base_backup(bin, pp, &data);
        let conf = format!(
            "port = {port}\n{}{}",
            replication_name(&name),
            ssl_conf(&dir, &ca, &name)
        );
        append(&data.join("postgresql.conf"), &conf);
        children.push(start_postgres(bin, &data, port));
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
