//! One etcd member as a test starts it: its command line, its binary, its health.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::http::http;

/// The Debian package that holds etcd, named whenever it is missing.
const PACKAGE: &str = "install the Debian package etcd-server, or set PGHA_ETCD_BIN";

/// How one etcd member runs: its name, its client and peer addresses (`host:port`) and the
/// cluster it belongs to.
#[derive(Clone, Debug)]
pub struct EtcdNode {
    pub name: String,
    pub client: String,
    pub peer: String,
    /// `--initial-cluster`: `name=http://peer` of every member.
    pub initial_cluster: String,
    /// `--initial-cluster-token`: unique per cluster, so that stray members never join.
    pub token: String,
    /// Serve clients over TLS, requiring a client certificate from the same CA.
    pub tls: Option<EtcdTls>,
    /// More flags, e.g. `--auth-token-ttl=2`.
    pub extra_args: Vec<String>,
}

/// TLS of an etcd member: its certificate and key, the CA its clients' certificates must
/// come from, and a plain-HTTP metrics address for health checks.
#[derive(Clone, Debug)]
pub struct EtcdTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub ca_file: PathBuf,
    /// `host:port` of `--listen-metrics-urls` (plain HTTP, `/health` only).
    pub metrics: String,
}

impl EtcdNode {
    /// A member that is a whole cluster by itself.
    pub fn single(name: &str, client: String, peer: String) -> EtcdNode {
        EtcdNode {
            initial_cluster: format!("{name}=http://{peer}"),
            token: format!("{name}-{}", std::process::id()),
            tls: None,
            extra_args: Vec::new(),
            name: name.to_string(),
            client,
            peer,
        }
    }

    /// The client URL, e.g. `http://127.0.0.1:2379`.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.client)
    }

    /// The arguments that start this member on `data_dir`: short heartbeats and elections (a
    /// member cut off from its quorum loses its leader within 0.5 s; leases can still be as
    /// short as 1 s), and no fsync when the binary allows it.
    pub fn args(&self, data_dir: &Path) -> Vec<String> {
        let (client, peer) = (self.endpoint(), format!("http://{}", self.peer));
        let mut args = vec![
            format!("--name={}", self.name),
            format!("--data-dir={}", data_dir.display()),
            format!("--listen-client-urls={client}"),
            format!("--advertise-client-urls={client}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster={}", self.initial_cluster),
            format!("--initial-cluster-token={}", self.token),
            "--initial-cluster-state=new".into(),
            "--heartbeat-interval=50".into(),
            "--election-timeout=500".into(),
        ];
        if supports_no_fsync() {
            args.push("--unsafe-no-fsync".into());
        }
        if let Some(tls) = &self.tls {
            args.extend([
                format!("--cert-file={}", tls.cert_file.display()),
                format!("--key-file={}", tls.key_file.display()),
                format!("--trusted-ca-file={}", tls.ca_file.display()),
                "--client-cert-auth".into(),
                format!("--listen-metrics-urls=http://{}", tls.metrics),
            ]);
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }

    /// Whether this member's `/health` says it has a leader and serves requests.
    pub fn healthy(&self) -> bool {
        match &self.tls {
            Some(tls) => etcd_healthy(&tls.metrics),
            None => etcd_healthy(&self.client),
        }
    }
}

/// Whether the etcd at `client` (`host:port`) answers `/health` with `"health":"true"`.
pub fn etcd_healthy(client: &str) -> bool {
    matches!(
        http("GET", client, "/health", None, None),
        Some((200, body)) if body.contains("\"health\":\"true\"")
    )
}

/// `PGHA_ETCD_BIN`, else `etcd` on `PATH` or in /usr/bin or /usr/local/bin; panics, naming the
/// package to install, when there is none: the tests that need etcd never skip.
pub fn etcd_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("PGHA_ETCD_BIN") {
        return PathBuf::from(bin);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")])
        .map(|dir| dir.join("etcd"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("the `etcd` binary was not found on PATH: {PACKAGE}"))
}

/// Spawning etcd failed: the message, naming the package.
pub(crate) fn spawn_error(binary: &Path, e: &std::io::Error) -> String {
    format!("spawn {}: {e} ({PACKAGE})", binary.display())
}

/// Whether this etcd knows `--unsafe-no-fsync` (asked once).
fn supports_no_fsync() -> bool {
    static KNOWN: OnceLock<bool> = OnceLock::new();
    *KNOWN.get_or_init(|| {
        Command::new(etcd_binary())
            .arg("--help")
            .output()
            .map(|out| {
                let text = [out.stdout, out.stderr].concat();
                String::from_utf8_lossy(&text).contains("--unsafe-no-fsync")
            })
            .unwrap_or(false)
    })
}

/// Deletes `key` at `endpoint` (`http://host:port`) as `etcdctl del` would, whatever holds
/// it; whether a key was there. Callable from a test's runtime too (it runs its own on a
/// thread of its own).
pub fn etcd_delete(endpoint: &str, key: &str) -> bool {
    crate::own_runtime::on_own_thread(|| async {
        let mut client = etcd_client::Client::connect([endpoint], None)
            .await
            .unwrap_or_else(|e| panic!("etcd at {endpoint}: {e}"));
        let deleted = client
            .delete(key, None)
            .await
            .unwrap_or_else(|e| panic!("delete {key} at {endpoint}: {e}"));
        deleted.deleted() > 0
    })
}
