//! The configuration file of one host in distributed mode (`pgha agent --config FILE`,
//! `pgha proxy --config FILE`, and every CLI command given `--config FILE`).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::local::config::{read_toml, ConfigError, PostgresSection, Problems};

/// One host's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub cluster: ClusterName,
    pub etcd: EtcdSection,
    pub member: MemberSection,
    pub secrets: SecretsSection,
    #[serde(default)]
    pub postgresql: PostgresSection,
    /// Hosts or networks standbys replicate from (pg_hba.conf), e.g. ["10.0.0.0/24"];
    /// default: this member's host only.
    #[serde(default)]
    pub replication_from: Vec<String>,
    #[serde(default)]
    pub proxy: ProxySection,
    #[serde(default)]
    pub watchdog: WatchdogSection,
    /// Scripts run on this member's role changes (`on_start`, `on_stop`, `on_role_change`,
    /// `timeout_s`); each gets `ACTION ROLE CLUSTER MEMBER`.
    #[serde(default)]
    pub callbacks: pgha_agent::callbacks::Callbacks,
    /// TLS for PostgreSQL: this member's certificate and the cluster CA (`pgha tls` makes
    /// them). Required unless `insecure_no_tls = true`.
    pub tls: Option<TlsSection>,
    /// Run without `[tls]`: replication and pgha's connections in clear text, and a fake
    /// member written into etcd is sent the superuser password. Only for a network where
    /// every host is trusted; it has to be said in so many words.
    #[serde(default)]
    pub insecure_no_tls: bool,
    /// Initial dynamic settings, written to etcd only when the cluster has none yet
    /// (e.g. `ttl_ms = 3000`); change them later with `pgha config set`.
    #[serde(default)]
    pub dynamic: toml::Table,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterName {
    /// Cluster name: the etcd prefix is /pgha/<name>/.
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdSection {
    /// e.g. ["http://10.0.0.1:2379", "http://10.0.0.2:2379"]
    pub endpoints: Vec<String>,
    /// Bound on every etcd call.
    #[serde(default = "default_etcd_timeout_ms")]
    pub timeout_ms: u64,
    /// TLS to etcd (`https://` endpoints): the CA that signed etcd's certificate.
    pub ca_file: Option<PathBuf>,
    /// The certificate and key this host presents to etcd (`--client-cert-auth`), e.g. the
    /// member's own from `pgha tls member`.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// The etcd user to authenticate as when etcd has authentication enabled (`etcdctl auth
    /// enable`); its password is `etcd_password` in the secrets file. Its role needs read and
    /// write on the prefix `/pgha/<cluster>/`.
    pub user: Option<String>,
    /// How long etcd keeps the revisions pgha writes, in ms: the agent compacts older ones
    /// every few minutes, so that etcd's history (every revision of every key, kept until
    /// compacted) does not reach its space quota, past which etcd refuses every write. 0
    /// leaves compaction to etcd (`--auto-compaction-retention`).
    #[serde(default = "default_history_retention_ms")]
    pub history_retention_ms: u64,
}

fn default_etcd_timeout_ms() -> u64 {
    2000
}

/// An hour of etcd history.
fn default_history_retention_ms() -> u64 {
    3_600_000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberSection {
    /// Unique member name (letters, digits, '_'); also its replication slot name.
    pub name: String,
    /// Member directory: `data/` (PGDATA), `postgresql.log`, `pgpass` live there.
    pub dir: PathBuf,
    /// Address PostgreSQL listens on and the other members reach it at.
    pub host: String,
    pub port: u16,
    /// REST API address, e.g. "10.0.0.1:8008".
    pub api: String,
    #[serde(default)]
    pub nofailover: bool,
    #[serde(default)]
    pub nosync: bool,
    /// Higher wins among equally advanced candidates; 1 unless set, as in a local cluster.
    #[serde(default = "default_priority")]
    pub priority: u32,
    /// Never route read-only sessions to this member.
    #[serde(default)]
    pub noloadbalance: bool,
    /// New members (and re-clones) clone from this standby rather than from the primary.
    #[serde(default)]
    pub clonefrom: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsSection {
    /// A 0600 TOML file with superuser_password, replication_password and (optionally)
    /// api_token; the same file on every host.
    pub file: PathBuf,
}

/// The Linux watchdog device, kept alive by the leader's supervisor (see docs/design.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchdogSection {
    /// off (default), automatic (use it when it opens), or required (never lead without it).
    #[serde(default)]
    pub mode: pgha_pg::watchdog::WatchdogMode,
    #[serde(default = "default_watchdog_device")]
    pub device: PathBuf,
}

impl Default for WatchdogSection {
    fn default() -> Self {
        WatchdogSection {
            mode: pgha_pg::watchdog::WatchdogMode::Off,
            device: default_watchdog_device(),
        }
    }
}

fn default_watchdog_device() -> PathBuf {
    PathBuf::from("/dev/watchdog")
}

/// TLS files of this host (made by `pgha tls ca` and `pgha tls member`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// The cluster CA's certificate: members and pgha trust only what it signed.
    pub ca_file: PathBuf,
    /// This member's certificate (naming the member and member.host).
    pub cert_file: PathBuf,
    /// Its private key (0600).
    pub key_file: PathBuf,
    /// Serve the REST API over HTTPS with this certificate (every host must say the same:
    /// the CLI and the other agents then speak HTTPS to it, verifying against ca_file).
    #[serde(default)]
    pub api: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxySection {
    /// Read-write listener of `pgha proxy`, e.g. "127.0.0.1:6432".
    pub rw_listen: Option<String>,
    /// Read-only listener of `pgha proxy`, e.g. "127.0.0.1:6433".
    pub ro_listen: Option<String>,
    /// Where `pgha proxy` serves its counters for Prometheus (`GET /metrics`), e.g.
    /// "127.0.0.1:9187"; none by default.
    pub metrics_listen: Option<String>,
    /// The proxy terminates clients' TLS with its own certificate (`pgha tls proxy`), and
    /// reaches the members over TLS verified with `[tls] ca_file`. Without it, a client's
    /// TLS passes through to the member it is routed to.
    pub tls: Option<ProxyTlsSection>,
}

/// `[proxy.tls]`: the certificate the proxy presents to clients.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyTlsSection {
    pub cert_file: PathBuf,
    /// Its private key (0600).
    pub key_file: PathBuf,
    /// Refuse clients that do not start TLS.
    #[serde(default)]
    pub require: bool,
}

fn default_priority() -> u32 {
    pgha_core::Tags::default().priority
}

impl NodeConfig {
    /// Reads and validates `file`, naming the key and the reason of any problem.
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        let config: NodeConfig = read_toml(file)?;
        config.validate(file)?;
        Ok(config)
    }

    fn validate(&self, file: &Path) -> Result<(), ConfigError> {
        let mut bad = Problems::new(file);
        let word = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        };
        if !word(&self.cluster.name) {
            let name = &self.cluster.name;
            bad.add(
                "cluster.name",
                format!("{name:?} must be letters, digits, '-' or '_'"),
            );
        }
        let e = &self.etcd;
        if e.endpoints.is_empty() {
            bad.add("etcd.endpoints", "list at least one etcd endpoint");
        }
        if e.timeout_ms == 0 {
            bad.add("etcd.timeout_ms", "must be above 0");
        }
        if (1..1000).contains(&e.history_retention_ms) {
            bad.add(
                "etcd.history_retention_ms",
                "must be 1000 or more (0: leave compaction to etcd)",
            );
        }
        if e.cert_file.is_some() != e.key_file.is_some() {
            bad.add(
                "etcd.cert_file",
                "give etcd.cert_file and etcd.key_file together",
            );
        }
        if e.user.as_ref().is_some_and(|u| u.trim().is_empty()) {
            bad.add(
                "etcd.user",
                "is empty: name the etcd user pgha authenticates as, or remove the key",
            );
        }
        if e.cert_file.is_some() && e.ca_file.is_none() {
            bad.add(
                "etcd.ca_file",
                "a client certificate needs TLS: set etcd.ca_file (and https:// endpoints)",
            );
        }
        let m = &self.member;
        let slot_name = m
            .name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !slot_name || m.name.is_empty() {
            bad.add(
                "member.name",
                format!(
                    "{:?} must be lowercase letters, digits or '_' (it names a replication slot)",
                    m.name
                ),
            );
        }
        if !m.dir.is_absolute() {
            let dir = m.dir.display();
            bad.add("member.dir", format!("{dir} must be an absolute path"));
        }
        if m.host.parse::<std::net::IpAddr>().is_err() {
            bad.add("member.host", format!("{:?} is not an IP address", m.host));
        }
        if m.port == 0 {
            bad.add("member.port", "must be a port number");
        }
        if m.api.parse::<std::net::SocketAddr>().is_err() {
            bad.add("member.api", format!("{:?} is not host:port", m.api));
        }
        for (i, addr) in self.replication_from.iter().enumerate() {
            let key = format!("replication_from[{i}]");
            bad.check(key, pgha_pg::conf::check_hba_address(addr));
        }
        for (key, addr) in [
            ("proxy.rw_listen", &self.proxy.rw_listen),
            ("proxy.ro_listen", &self.proxy.ro_listen),
            ("proxy.metrics_listen", &self.proxy.metrics_listen),
        ] {
            if let Some(a) = addr
                .as_ref()
                .filter(|a| a.parse::<std::net::SocketAddr>().is_err())
            {
                bad.add(key, format!("{a:?} is not host:port"));
            }
        }
        match (&self.tls, self.insecure_no_tls) {
            (None, false) => bad.add(
                "tls",
                "no [tls] section: PostgreSQL connections would be in clear text and a \
                 fake member in etcd would be sent the superuser password. Make certificates \
                 with `pgha tls ca --dir D` and `pgha tls member --dir D --name NAME --host \
                 ADDRESS`, and name them in [tls] (ca_file, cert_file, key_file); or, on a \
                 network where every host is trusted, set insecure_no_tls = true",
            ),
            (Some(_), true) => bad.add(
                "insecure_no_tls",
                "is true while a [tls] section is given: remove one of them",
            ),
            _ => {}
        }
        if self.proxy.tls.is_some() && self.tls.is_none() {
            bad.add(
                "proxy.tls",
                "a terminating proxy reaches the members over TLS: add [tls] with the \
                 cluster CA (ca_file)",
            );
        }
        if let Err(e) = self.callbacks.check() {
            bad.add(e.key, e);
        }
        self.postgresql.check(&mut bad);
        bad.check("dynamic", self.initial_dynamic().map(|_| ()));
        bad.finish()
    }

    /// The dynamic settings for a new cluster: defaults overridden by `[dynamic]`.
    pub fn initial_dynamic(
        &self,
    ) -> Result<pgha_core::ClusterConfig, crate::dynamic::SettingError> {
        let texts: Vec<(String, String)> = self
            .dynamic
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), text)
            })
            .collect();
        crate::dynamic::set_keys(
            &pgha_core::ClusterConfig::default(),
            texts.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )
    }

    /// Hosts allowed to replicate in pg_hba.conf.
    pub fn replication_hosts(&self) -> Vec<String> {
        if self.replication_from.is_empty() {
            vec![self.member.host.clone()]
        } else {
            self.replication_from.clone()
        }
    }

    pub fn etcd_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.etcd.timeout_ms)
    }

    /// How long etcd keeps pgha's revisions (`None`: compaction left to etcd).
    pub fn etcd_history_retention(&self) -> Option<std::time::Duration> {
        let ms = self.etcd.history_retention_ms;
        (ms > 0).then(|| std::time::Duration::from_millis(ms))
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
