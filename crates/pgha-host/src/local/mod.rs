//! A local cluster directory (`pgha up`): its config, secrets, PostgreSQL programs and members.

pub mod config;
pub mod lock;
pub mod shutdown_pause;
pub mod up;
pub mod url;

use std::path::{Path, PathBuf};

use std::time::Duration;

use pgha_agent::NodeSpec;
use pgha_core::MemberName;
use pgha_pg::ca_dir::{CaDir, MemberToIssue};
use pgha_pg::conf::render_hba;
use pgha_pg::probe::Credentials;
use pgha_pg::tls::ClientTls;
use pgha_pg::{Instance, PgBinaries, RunAs};

use crate::error::CliError;
use crate::secrets::{Secrets, SECRETS_FILE};
use config::{Config, ProxyTlsMode, CONFIG_FILE};

/// Directory of the cluster CA (`ca.crt`, `ca.key`).
pub const TLS_DIR: &str = "tls";

/// File of the embedded store's persisted state (config, history, initialize).
pub const STORE_FILE: &str = "store.json";

/// The libpq password file (owned by the PostgreSQL OS user, 0600) that standbys and
/// pg_basebackup read the replication password from.
pub const PASSFILE: &str = "pgpass";

/// One member of a local cluster.
#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub instance: Instance,
}

/// Everything known about a local cluster directory.
#[derive(Debug, Clone)]
pub struct LocalCluster {
    pub dir: PathBuf,
    pub config: Config,
    pub secrets: Secrets,
    pub bins: PgBinaries,
    pub run_as: RunAs,
    pub members: Vec<Member>,
    /// TLS with the cluster CA in `DIR/tls` (`None` until `pgha up` made it).
    pub tls: Option<ClientTls>,
}

impl LocalCluster {
    /// Opens an existing cluster directory (written by `pgha up`).
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        let dir = absolute(dir)?;
        let config_file = dir.join(CONFIG_FILE);
        if !config_file.is_file() {
            return Err(CliError::NotACluster {
                dir,
                file: CONFIG_FILE,
            }
            .into());
        }
        pgha_pg::trust::check(&dir)?;
        pgha_pg::trust::check_ancestors(&dir)?;
        pgha_pg::trust::check(&config_file)?;
        let config = Config::load(&config_file)?;
        let secrets = Secrets::load(&dir.join(SECRETS_FILE))?;
        Self::assemble(dir, config, secrets)
    }

    /// Builds the in-memory picture from a config and secrets (nothing is written).
    pub fn assemble(dir: PathBuf, config: Config, secrets: Secrets) -> anyhow::Result<Self> {
        let bins = PgBinaries::discover(config.postgresql.bin_dir.as_deref())?;
        pgha_pg::trust::check_binaries(&bins)?;
        let run_as = RunAs::detect(&config.postgresql.os_user)?;
        let members = config
            .member_names()
            .into_iter()
            .enumerate()
            .map(|(i, name)| Member {
                host: config.cluster.host.clone(),
                port: config.member_port(i as u16 + 1),
                instance: Instance::new(&name, &dir.join(&name), bins.clone(), run_as.clone()),
                name,
            })
            .collect();
        let tls = CaDir::new(dir.join(TLS_DIR)).client()?;
        Ok(LocalCluster {
            dir,
            config,
            secrets,
            bins,
            run_as,
            members,
            tls,
        })
    }

    /// Makes the cluster CA in `DIR/tls` if it is missing and gives every member the
    /// certificate it lacks (for its name and its host): TLS is on for every cluster.
    pub fn ensure_tls(&mut self) -> anyhow::Result<()> {
        let members: Vec<MemberToIssue> = self
            .members
            .iter()
            .map(|m| MemberToIssue {
                name: &m.name,
                hosts: vec![m.host.clone()],
                member_dir: &m.instance.member_dir,
            })
            .collect();
        for m in &self.members {
            m.instance.create_member_dir()?;
        }
        let client = CaDir::new(self.dir.join(TLS_DIR)).ensure(&members, &self.run_as)?;
        self.tls = Some(client);
        Ok(())
    }

    pub fn passfile(&self) -> PathBuf {
        self.dir.join(PASSFILE)
    }

    pub fn member(&self, name: &str) -> Result<&Member, CliError> {
        self.members
            .iter()
            .find(|m| m.name == name)
            .ok_or_else(|| CliError::UnknownMember {
                name: name.to_string(),
                known: self
                    .members
                    .iter()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// The superuser's credentials, for pgha's own connections.
    pub fn credentials(&self) -> Credentials {
        Credentials {
            user: self.config.postgresql.superuser.clone(),
            password: self.secrets.superuser_password.clone(),
            dbname: "postgres".into(),
            tls: self.tls.clone(),
        }
    }

    /// Writes the libpq password file PostgreSQL programs read.
    pub fn write_passfile(&self) -> anyhow::Result<()> {
        let pg = &self.config.postgresql;
        pgha_pg::secrets::write_passfile(
            &self.passfile(),
            &[
                (&pg.replication_user, &self.secrets.replication_password),
                (&pg.superuser, &self.secrets.superuser_password),
            ],
            &self.run_as,
        )?;
        Ok(())
    }

    /// pg_hba.conf for every member: replication only from the members' hosts.
    pub fn hba(&self) -> String {
        let hosts: Vec<String> = self.members.iter().map(|m| m.host.clone()).collect();
        render_hba(
            &self.config.postgresql.replication_user,
            &hosts,
            &self.config.postgresql.pg_hba,
            self.tls.is_some(),
        )
    }

    /// A libpq URI for the superuser to `host:port`. With [`Password::FromPassfile`] the
    /// password stays out of the URI (and of the process list of whatever runs it): libpq
    /// reads it from the cluster's 0600 password file.
    pub fn uri(&self, host: &str, port: u16, password: Password) -> String {
        let user = &self.config.postgresql.superuser;
        match password {
            Password::FromPassfile => {
                let mut uri = format!(
                    "postgresql://{user}@{host}:{port}/postgres?passfile={}",
                    percent_encode(&self.passfile().to_string_lossy())
                );
                if self.tls.is_some() {
                    let ca = self.dir.join(TLS_DIR).join(pgha_pg::ca_dir::CA_CERT);
                    uri.push_str(&format!(
                        "&sslmode=verify-full&sslrootcert={}",
                        percent_encode(&ca.to_string_lossy())
                    ));
                }
                uri
            }
            Password::Inline => format!(
                "postgresql://{user}:{}@{host}:{port}/postgres",
                self.secrets.superuser_password
            ),
        }
    }

    /// The proxy's own TLS when it terminates clients' TLS (`cluster.proxy_tls`): its
    /// certificate from the cluster CA for the cluster's host, made when missing.
    pub fn proxy_tls(&self) -> anyhow::Result<Option<pgha_proxy::ProxyTls>> {
        let require = match self.config.cluster.proxy_tls {
            ProxyTlsMode::Passthrough => return Ok(None),
            ProxyTlsMode::Terminate => false,
            ProxyTlsMode::Require => true,
        };
        let ca = CaDir::new(self.dir.join(TLS_DIR));
        let (cert_file, key_file) =
            ca.ensure_proxy(std::slice::from_ref(&self.config.cluster.host))?;
        Ok(Some(pgha_proxy::ProxyTls {
            cert_file,
            key_file,
            ca_file: ca.ca_cert(),
            require,
        }))
    }

    /// The libpq URI of the read-write entry point. A terminating proxy authenticates SCRAM
    /// roles itself, so the URI is the same in every mode: `verify-full` checks the proxy's
    /// certificate, or the member's when TLS passes through.
    pub fn entry_uri(&self, password: Password) -> String {
        let c = &self.config.cluster;
        self.uri(&c.host, c.base_port, password)
    }

    /// The read-write and read-only entry points (the proxy) as `host:port`.
    pub fn entry_points(&self) -> (String, String) {
        let c = &self.config.cluster;
        (
            format!("{}:{}", c.host, c.base_port),
            format!("{}:{}", c.host, c.base_port + 1),
        )
    }

    /// Every member, ready for its agent.
    pub fn specs(&self) -> Vec<NodeSpec> {
        self.members
            .iter()
            .map(|member| NodeSpec {
                name: MemberName::new(member.name.as_str()),
                instance: member.instance.clone(),
                host: member.host.clone(),
                port: member.port,
                api: None,
                api_token: self.secrets.api_token.clone(),
                superuser: self.config.postgresql.superuser.clone(),
                superuser_password: self.secrets.superuser_password.clone(),
                replication_user: self.config.postgresql.replication_user.clone(),
                replication_password: self.secrets.replication_password.clone(),
                passfile: self.passfile(),
                cluster_size: self.members.len(),
                parameters: self.config.parameters(),
                hba: self.hba(),
                tags: self
                    .config
                    .tags
                    .get(&member.name)
                    .cloned()
                    .unwrap_or_default(),
                api_https: false,
                callbacks: self.config.callbacks.clone(),
                cluster: self.config.cluster.name.clone(),
                tls: self.tls.as_ref().map(|client| {
                    CaDir::new(self.dir.join(TLS_DIR)).member(&member.instance.member_dir, client)
                }),
            })
            .collect()
    }

    /// What each member's data directory holds, for the core's [`pgha_core::restart`]
    /// decisions.
    pub fn disks(&self) -> Vec<pgha_core::restart::DataOnDisk> {
        self.members
            .iter()
            .map(|m| (m, m.instance.standby_signal()))
            .map(|(m, signal)| pgha_core::restart::DataOnDisk {
                member: MemberName::new(m.name.as_str()),
                initialised: m.instance.is_initialized(),
                standby_signal: signal == Some(true),
                signal_unknown: signal.is_none(),
                rewind_incomplete: m.instance.rewind_maybe_incomplete(),
                // unreadable: as known (no new cluster in its place; its agent will not start)
                knows_cluster: !matches!(m.instance.remembered_cluster(), Ok(None)),
            })
            .collect()
    }

    /// Opens a superuser connection to a member.
    pub async fn connect(
        &self,
        member: &Member,
        timeout: Duration,
    ) -> pgha_pg::Result<tokio_postgres::Client> {
        pgha_pg::probe::connect(
            &member.name,
            &member.host,
            member.port,
            &self.credentials(),
            timeout,
        )
        .await
    }
}

/// Where a client URI gets the password from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Password {
    /// libpq's `passfile` parameter: the cluster's password file.
    FromPassfile,
    /// In the URI itself, for drivers that read no password file.
    Inline,
}

/// `text` with every byte outside RFC 3986's unreserved characters and `/` percent-encoded,
/// for a URI's query value.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// `path` made absolute against the current directory (without resolving symlinks).
pub fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    Ok(if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    })
}

#[cfg(test)]
mod tests {
    use super::percent_encode;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(percent_encode("/tmp/demo/pgpass"), "/tmp/demo/pgpass");
        assert_eq!(
            percent_encode("/tmp/my demo&x=1/pgpass"),
            "/tmp/my%20demo%26x%3D1/pgpass"
        );
    }
}
