//! What one member is: its PostgreSQL instance, addresses, credentials and settings.

use std::collections::BTreeMap;
use std::path::PathBuf;

use pgha_core::{MemberName, MemberRecord, Tags};
use pgha_pg::conf::{MemberConf, Upstream};
use pgha_pg::probe::Credentials;
use pgha_pg::tls::MemberTls;
use pgha_pg::Instance;

/// Key of a member's PostgreSQL address ("host:port") in its published record.
pub const POSTGRES_ADDRESS: &str = "postgres";
/// Key of a member's REST API address in its published record.
pub const API_ADDRESS: &str = "api";

/// Static description of the member an agent runs.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub name: MemberName,
    pub instance: Instance,
    pub host: String,
    pub port: u16,
    pub api: Option<String>,
    /// The cluster's API token: sent with this member's failsafe asks to the others.
    pub api_token: Option<String>,
    pub superuser: String,
    pub superuser_password: String,
    pub replication_user: String,
    pub replication_password: String,
    /// libpq password file holding both passwords (owned by the PostgreSQL OS user, 0600).
    pub passfile: PathBuf,
    pub cluster_size: usize,
    pub parameters: BTreeMap<String, String>,
    pub hba: String,
    pub tags: Tags,
    /// TLS for PostgreSQL (`None`: none).
    pub tls: Option<MemberTls>,
    /// The members' APIs speak HTTPS (verified against the cluster CA of `tls`).
    pub api_https: bool,
    /// Scripts run on role changes, and the cluster name they are given.
    pub callbacks: crate::callbacks::Callbacks,
    pub cluster: String,
}

impl NodeSpec {
    pub fn credentials(&self) -> Credentials {
        Credentials {
            user: self.superuser.clone(),
            password: self.superuser_password.clone(),
            dbname: "postgres".into(),
            tls: self.tls.as_ref().map(|t| t.client.clone()),
        }
    }

    /// A superuser connection to a peer (with TLS, it must prove it is `peer.name`).
    pub async fn connect(
        &self,
        peer: &Upstream,
        timeout: std::time::Duration,
    ) -> pgha_pg::Result<tokio_postgres::Client> {
        let creds = self.credentials();
        pgha_pg::probe::connect(&peer.name, &peer.host, peer.port, &creds, timeout).await
    }

    /// A superuser connection to this member's own PostgreSQL.
    pub async fn connect_local(
        &self,
        timeout: std::time::Duration,
    ) -> pgha_pg::Result<tokio_postgres::Client> {
        let creds = self.credentials();
        pgha_pg::probe::connect(self.name.as_str(), &self.host, self.port, &creds, timeout).await
    }

    /// How this member's callbacks run: as the PostgreSQL OS user, from its member
    /// directory, bounded by `[callbacks] timeout_s`.
    pub fn callback_runner(&self) -> crate::callbacks::Runner {
        crate::callbacks::Runner {
            cluster: self.cluster.clone(),
            member: self.name.to_string(),
            run_as: self.instance.run_as.clone(),
            cwd: self.instance.member_dir.clone(),
            timeout: self.callbacks.timeout(),
        }
    }

    /// Addresses published in the member record.
    pub fn addresses(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        out.insert(
            POSTGRES_ADDRESS.to_string(),
            format!("{}:{}", self.host, self.port),
        );
        if let Some(api) = &self.api {
            out.insert(API_ADDRESS.to_string(), api.clone());
        }
        out
    }

    /// The configuration to render: a primary (`standby = false`), or a standby streaming from
    /// `upstream` (or waiting for one when `None`), with the dynamic settings in effect.
    pub fn conf(&self, standby: bool, upstream: Option<Upstream>, dynamic: &Dynamic) -> MemberConf {
        MemberConf {
            name: self.name.to_string(),
            listen_host: self.host.clone(),
            port: self.port,
            major: self.instance.bins.major,
            standby,
            upstream,
            replication_user: self.replication_user.clone(),
            passfile: self.passfile.clone(),
            cluster_size: self.cluster_size,
            synchronous_standby_names: dynamic.sync_names.clone(),
            synchronous_commit: dynamic.synchronous_commit.clone(),
            parameters: self.parameters_with(&dynamic.parameters),
            replication_timeout: dynamic.replication_timeout,
            tls: self.tls.as_ref().map(|t| t.files.clone()),
            // Read from the data directory's pg_control as the file is written.
            primary_settings: Default::default(),
        }
    }
}

impl NodeSpec {
    /// This member's own parameters with the cluster's over them. A cluster parameter pgha
    /// would refuse (the store written around `pgha config set`) is left out and logged.
    fn parameters_with(&self, cluster: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut all = self.parameters.clone();
        for (name, value) in cluster {
            match pgha_pg::conf::check_user_setting(name, value) {
                Ok(()) => {
                    all.insert(name.clone(), value.clone());
                }
                Err(refused) => {
                    tracing::warn!("{}: postgresql.{name} ignored: {refused}", self.name)
                }
            }
        }
        all
    }
}

/// Settings that change while PostgreSQL runs, rendered into every configuration write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dynamic {
    /// `synchronous_standby_names` as the core last asked (empty: asynchronous).
    pub sync_names: String,
    /// `synchronous_commit` from the cluster config.
    pub synchronous_commit: String,
    /// The cluster config's PostgreSQL parameters (`postgresql.*`): over this member's own.
    pub parameters: BTreeMap<String, String>,
    /// `wal_sender_timeout` and `wal_receiver_timeout` (`None`: PostgreSQL's, until the
    /// cluster config has been read).
    pub replication_timeout: Option<std::time::Duration>,
}

/// Where a member keeps its failsafe promise: `<member_dir>.failsafe`, beside its lease file
/// and outside the directories the PostgreSQL OS user owns.
pub fn promise_file(member_dir: &std::path::Path) -> PathBuf {
    pgha_pg::lease_file::beside_member_dir(member_dir, ".failsafe")
}

/// Member `name`'s PostgreSQL address from its published record.
pub fn postgres_address(name: &MemberName, record: &MemberRecord) -> Option<Upstream> {
    let text = record.addresses.get(POSTGRES_ADDRESS)?;
    let (host, port) = text.rsplit_once(':')?;
    Some(Upstream {
        name: name.to_string(),
        host: host.trim_matches(['[', ']']).to_string(),
        port: port.parse().ok()?,
    })
}
