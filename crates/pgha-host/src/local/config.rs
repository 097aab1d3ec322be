//! The cluster configuration file (`pgha.toml`): its shape, defaults, loading and validation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod postgres;

pub use postgres::PostgresSection;

/// File name of the cluster configuration inside a local cluster directory.
pub const CONFIG_FILE: &str = "pgha.toml";

/// Default first port: the read-write entry point; members start at base + 11.
pub const DEFAULT_BASE_PORT: u16 = 15432;
/// Members are numbered from 1; member k listens on base + MEMBER_PORT_OFFSET + k.
pub const MEMBER_PORT_OFFSET: u16 = 10;
pub const MAX_MEMBERS: u16 = 89;

/// A configuration problem, naming the file, the key and the reason.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: {reason}")]
    Parse { file: PathBuf, reason: String },
    #[error("{file}: `{key}`: {reason}")]
    Invalid {
        file: PathBuf,
        key: String,
        reason: String,
    },
    #[error("could not read {file}: {source}")]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// More than one key is wrong: each is named.
    #[error("{file}: {} problems:{}", .problems.len(), lines(.problems))]
    Several {
        file: PathBuf,
        /// (key, reason), in the order of the checks.
        problems: Vec<(String, String)>,
    },
}

fn lines(problems: &[(String, String)]) -> String {
    problems
        .iter()
        .map(|(key, reason)| format!("\n  `{key}`: {reason}"))
        .collect()
}

/// The problems of one file, collected so that one run names every one of them.
pub struct Problems<'a> {
    file: &'a Path,
    found: Vec<(String, String)>,
}

impl<'a> Problems<'a> {
    pub fn new(file: &'a Path) -> Self {
        Problems {
            file,
            found: Vec::new(),
        }
    }

    /// `key` is wrong, for `reason`.
    pub fn add(&mut self, key: impl Into<String>, reason: impl std::fmt::Display) {
        self.found.push((key.into(), reason.to_string()));
    }

    /// `key` is wrong if `checked` says so.
    pub fn check<E: std::fmt::Display>(&mut self, key: impl Into<String>, checked: Result<(), E>) {
        if let Err(reason) = checked {
            self.add(key, reason);
        }
    }

    /// None found, one (as [`ConfigError::Invalid`]), or several.
    pub fn finish(mut self) -> Result<(), ConfigError> {
        let file = self.file.to_path_buf();
        match self.found.len() {
            0 => Ok(()),
            1 => {
                let (key, reason) = self.found.remove(0);
                Err(ConfigError::Invalid { file, key, reason })
            }
            _ => Err(ConfigError::Several {
                file,
                problems: self.found,
            }),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub cluster: ClusterSection,
    #[serde(default)]
    pub postgresql: PostgresSection,
    /// Scripts run on every member's role changes (`on_start`, `on_stop`, `on_role_change`,
    /// `timeout_s`); each gets `ACTION ROLE CLUSTER MEMBER`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub callbacks: pgha_agent::callbacks::Callbacks,
    /// Tags of single members, e.g. `[tags.n3]` with `nofailover = true`,
    /// `noloadbalance = true`, `nosync = true`, `clonefrom = true` or `priority = 2`.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "known_tags"
    )]
    pub tags: BTreeMap<String, pgha_core::Tags>,
}

/// `[tags.NAME]` sections, each refused when it holds a key that is no tag (a misspelt
/// `nofailver` would otherwise leave the member a failover candidate without a word),
/// naming the key, the section and the tags there are.
fn known_tags<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, pgha_core::Tags>, D::Error> {
    use serde::de::Error;
    // The tags there are: those a default `Tags` is written with.
    let known = toml::Table::try_from(pgha_core::Tags::default()).map_err(D::Error::custom)?;
    let sections = BTreeMap::<String, toml::Table>::deserialize(deserializer)?;
    sections
        .into_iter()
        .map(|(member, table)| {
            if let Some(key) = table.keys().find(|k| !known.contains_key(*k)) {
                let names: Vec<&str> = known.keys().map(String::as_str).collect();
                return Err(D::Error::custom(format!(
                    "[tags.{member}]: unknown key `{key}`; the tags are {}",
                    names.join(", ")
                )));
            }
            let tags = pgha_core::Tags::deserialize(toml::Value::Table(table))
                .map_err(|e| D::Error::custom(format!("[tags.{member}]: {e}")))?;
            Ok((member, tags))
        })
        .collect()
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// Cluster name, shown in status and used in logs.
    pub name: String,
    /// Number of members (one primary, the rest standbys).
    pub members: u16,
    /// The read-write entry point's port; the read-only one is base + 1, the control API
    /// base + 2, and member k listens on base + 10 + k.
    pub base_port: u16,
    /// Address every listener binds to (the entry points and the members).
    #[serde(default = "default_host")]
    pub host: String,
    /// Address the control API binds to; loopback unless set (mutations need the token of
    /// the secrets file wherever it listens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_host: Option<String>,
    /// TLS at the entry points: `terminate` (new clusters: the proxy presents its own
    /// certificate, `tls/proxy.crt`, so clients verify one name for the cluster, and it
    /// authenticates SCRAM roles itself), `require` (terminate, and refuse clients that do not
    /// start TLS) or `passthrough` (a client's TLS reaches the member it is routed to; what a
    /// pgha.toml without the key means, as clusters made before termination existed ran).
    #[serde(default)]
    pub proxy_tls: ProxyTlsMode,
}

/// Where the entry points' TLS ends (`cluster.proxy_tls`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyTlsMode {
    #[default]
    Passthrough,
    Terminate,
    Require,
}

/// A `--proxy-tls` value that is not one of the modes.
#[derive(Debug, thiserror::Error)]
#[error("--proxy-tls {0:?}: use passthrough, terminate or require")]
pub struct UnknownProxyTls(String);

impl std::str::FromStr for ProxyTlsMode {
    type Err = UnknownProxyTls;
    fn from_str(text: &str) -> Result<Self, UnknownProxyTls> {
        match text {
            "passthrough" => Ok(ProxyTlsMode::Passthrough),
            "terminate" => Ok(ProxyTlsMode::Terminate),
            "require" => Ok(ProxyTlsMode::Require),
            other => Err(UnknownProxyTls(other.to_string())),
        }
    }
}

impl ClusterSection {
    /// Where the control API listens.
    pub fn api_host(&self) -> &str {
        self.api_host.as_deref().unwrap_or("127.0.0.1")
    }
}

fn default_host() -> String {
    "127.0.0.1".into()
}

impl Config {
    pub fn new(name: &str, members: u16, base_port: u16) -> Self {
        Config {
            cluster: ClusterSection {
                name: name.into(),
                members,
                base_port,
                host: default_host(),
                api_host: None,
                proxy_tls: ProxyTlsMode::Terminate,
            },
            postgresql: PostgresSection::default(),
            callbacks: Default::default(),
            tags: BTreeMap::new(),
        }
    }

    /// Reads and validates `file`.
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        let config: Config = read_toml(file)?;
        config.validate(file)?;
        Ok(config)
    }

    /// Writes the file with a header explaining it, atomically and durably (the directory
    /// synced after the rename).
    pub fn save(&self, file: &Path) -> std::io::Result<()> {
        let body = toml::to_string_pretty(self).expect("the config always serialises");
        let text = format!(
            "# pgha cluster configuration. Edit it while the cluster is stopped, then run `pgha up` again.\n\
             # Ports: read-write entry = base_port, read-only = base_port + 1, control API = base_port + 2,\n\
             # member k = base_port + 10 + k. Put your PostgreSQL settings under [postgresql.parameters].\n\n{body}"
        );
        let mut f = atomic_write_file::AtomicWriteFile::open(file)?;
        std::io::Write::write_all(&mut f, text.as_bytes())?;
        f.commit()
    }

    /// Checks every value, naming the key and the reason of each problem.
    pub fn validate(&self, file: &Path) -> Result<(), ConfigError> {
        let mut bad = Problems::new(file);
        if let Err(e) = self.callbacks.check() {
            bad.add(e.key, e);
        }
        let names = self.member_names();
        for unknown in self.tags.keys().filter(|n| !names.contains(n)) {
            bad.add(
                format!("tags.{unknown}"),
                format!("no such member; members are {}", names.join(", ")),
            );
        }
        let c = &self.cluster;
        if c.name.is_empty()
            || !c
                .name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
        {
            bad.add(
                "cluster.name",
                format!("{:?} must be non-empty letters, digits, '-' or '_'", c.name),
            );
        }
        if c.members == 0 || c.members > MAX_MEMBERS {
            bad.add(
                "cluster.members",
                format!("{} is out of range: use 1 to {MAX_MEMBERS}", c.members),
            );
        } else if c.base_port < 1024
            || u32::from(c.base_port) + u32::from(MEMBER_PORT_OFFSET + c.members) > 65535
        {
            bad.add(
                "cluster.base_port",
                format!(
                    "{} is out of range: ports base_port to base_port + {} must lie in 1024-65535",
                    c.base_port,
                    MEMBER_PORT_OFFSET + c.members
                ),
            );
        }
        if c.host.parse::<std::net::IpAddr>().is_err() {
            bad.add("cluster.host", format!("{:?} is not an IP address", c.host));
        }
        self.postgresql.check(&mut bad);
        bad.finish()
    }

    /// The user's parameters as PostgreSQL setting strings.
    pub fn parameters(&self) -> BTreeMap<String, String> {
        self.postgresql.parameters()
    }

    pub fn member_names(&self) -> Vec<String> {
        (1..=self.cluster.members)
            .map(|k| format!("n{k}"))
            .collect()
    }

    pub fn member_port(&self, index: u16) -> u16 {
        self.cluster.base_port + MEMBER_PORT_OFFSET + index
    }
}

/// The two kinds of configuration file pgha reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigKind {
    /// A distributed host's node config (`pgha agent --config FILE`).
    Node,
    /// A local cluster's `pgha.toml` (`pgha up --dir DIR`).
    Local,
}

/// A file that is neither kind of configuration by its content.
#[derive(Debug, thiserror::Error)]
pub enum KindError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(
        "{file}: neither a node config (it has no [member] or [etcd] section) nor a pgha.toml \
         (no [cluster] section with `members`); say which with --kind node or --kind local"
    )]
    Unknown { file: PathBuf },
}

/// Which configuration `file` is, by its content: `[member]` or `[etcd]` make a node config,
/// `[cluster]` with `members` a `pgha.toml`.
pub fn config_kind(file: &Path) -> Result<ConfigKind, KindError> {
    let table: toml::Table = read_toml(file)?;
    config_kind_of(&table).ok_or_else(|| KindError::Unknown { file: file.into() })
}

/// [`config_kind`] of parsed TOML.
pub fn config_kind_of(table: &toml::Table) -> Option<ConfigKind> {
    if table.contains_key("member") || table.contains_key("etcd") {
        return Some(ConfigKind::Node);
    }
    let local = table
        .get("cluster")
        .and_then(toml::Value::as_table)
        .is_some_and(|c| c.contains_key("members"));
    local.then_some(ConfigKind::Local)
}

/// Reads the TOML file `file` into `T`, naming the file and the reason of any problem.
pub fn read_toml<T: serde::de::DeserializeOwned>(file: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
        file: file.into(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        file: file.into(),
        reason: e.to_string().trim_end().to_string(),
    })
}

/// Why a `--param` flag is refused.
#[derive(Debug, thiserror::Error)]
pub enum ParamFlagError {
    #[error("--param {0:?}: expected KEY=VALUE, e.g. --param shared_buffers=256MB")]
    NotAnAssignment(String),
    #[error("--param {flag:?}: {refused}")]
    Refused {
        flag: String,
        refused: pgha_pg::conf::ParameterRefused,
    },
}

/// Parses a `--param key=value` flag into a parameter entry.
pub fn parse_param_flag(flag: &str) -> Result<(String, toml::Value), ParamFlagError> {
    let (key, value) = flag
        .split_once('=')
        .ok_or_else(|| ParamFlagError::NotAnAssignment(flag.to_string()))?;
    let key = key.trim().to_string();
    let refused = |refused| ParamFlagError::Refused {
        flag: flag.to_string(),
        refused,
    };
    pgha_pg::conf::check_user_setting(&key, value.trim()).map_err(refused)?;
    Ok((key, toml::Value::String(value.trim().to_string())))
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
