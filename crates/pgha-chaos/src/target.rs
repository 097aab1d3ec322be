//! What a campaign acts on: the cluster's API, its client entry points, its members and the
//! superuser's credentials (`discover` finds it from `--dir` or `--config`).

use std::path::PathBuf;
use std::time::Duration;

use pgha_host::client::Client;
use pgha_pg::probe::Credentials;

/// Keys of a member's published record: its PostgreSQL and its API addresses.
pub use pgha_agent::spec::{API_ADDRESS, POSTGRES_ADDRESS};

/// How the cluster runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// `pgha up`: every member on this machine, their data directories readable here.
    Local,
    /// `pgha agent` per host over etcd: only the members on this host can be killed.
    Distributed,
}

/// A PostgreSQL address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// One member.
#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    pub endpoint: Endpoint,
    /// Its data directory when it is on this machine (its `postmaster.pid` names the
    /// postmaster a kill fault signals).
    pub data_dir: Option<PathBuf>,
    /// The API of the host that runs it, when that is not `Target::client`'s first choice
    /// (distributed mode: each agent stops and starts only its own member).
    pub api: Option<Client>,
}

/// Where the writers connect.
#[derive(Debug, Clone)]
pub enum WriteRoute {
    /// The read-write entry point (pgha's proxy).
    Entry(Endpoint),
    /// Every member in one libpq-style multi-host target with
    /// `target_session_attrs=read-write`: the client finds the primary itself.
    MultiHost(Vec<Member>),
}

impl std::fmt::Display for WriteRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteRoute::Entry(e) => write!(f, "entry {e}"),
            WriteRoute::MultiHost(members) => {
                let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
                write!(f, "multi-host {}", names.join(","))
            }
        }
    }
}

/// The cluster a campaign runs against.
#[derive(Debug, Clone)]
pub struct Target {
    pub mode: Mode,
    /// The hosts' API (status, switchover, failover, stop/start).
    pub client: Client,
    /// The superuser, for the campaign's own table and its writers.
    pub credentials: Credentials,
    /// Each writer's route, in turn (writer k takes `writes[k % len]`).
    pub writes: Vec<WriteRoute>,
    /// The read-only entry point, when there is one.
    pub reads: Option<Endpoint>,
    pub members: Vec<Member>,
    /// The addresses of the other hosts (members and etcd) that `isolate-host` cuts this
    /// host off from; empty where it cannot (a local cluster).
    pub peers: Vec<String>,
    /// The `--fault-command`s (e.g. a restart of etcd), each a fault of its own name.
    pub fault_commands: Vec<crate::faults::FaultCommand>,
}

impl Target {
    pub fn member(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.name == name)
    }

    /// The API that stops and starts `member`.
    pub fn api_of(&self, member: &str) -> &Client {
        self.member(member)
            .and_then(|m| m.api.as_ref())
            .unwrap_or(&self.client)
    }

    /// A connection to `route`, within `timeout`.
    pub async fn connect(&self, route: &WriteRoute, timeout: Duration) -> Connected {
        let mut config = self.base_config(timeout);
        let tls = self.credentials.tls.is_some();
        match route {
            WriteRoute::Entry(e) => {
                config.host(&e.host).port(e.port);
            }
            WriteRoute::MultiHost(members) => {
                for m in members {
                    match (tls, m.endpoint.host.parse::<std::net::IpAddr>()) {
                        // The certificate names the member: verify that name, dial the address.
                        (true, Ok(ip)) => config.host(&m.name).hostaddr(ip),
                        _ => config.host(&m.endpoint.host),
                    };
                    config.port(m.endpoint.port);
                }
                config.target_session_attrs(tokio_postgres::config::TargetSessionAttrs::ReadWrite);
            }
        }
        self.open(config, timeout).await
    }

    /// A connection to one member itself.
    pub async fn connect_member(&self, member: &Member, timeout: Duration) -> Connected {
        let mut config = self.base_config(timeout);
        pgha_pg::tls::target(
            &mut config,
            &member.name,
            &member.endpoint.host,
            member.endpoint.port,
            self.credentials.tls.is_some(),
        );
        self.open(config, timeout).await
    }

    /// A connection to `endpoint` (an entry point).
    pub async fn connect_endpoint(&self, endpoint: &Endpoint, timeout: Duration) -> Connected {
        self.connect(&WriteRoute::Entry(endpoint.clone()), timeout)
            .await
    }

    fn base_config(&self, timeout: Duration) -> tokio_postgres::Config {
        let c = &self.credentials;
        let mut config = tokio_postgres::Config::new();
        config
            .user(&c.user)
            .password(&c.password)
            .dbname(&c.dbname)
            .application_name("pgha-chaos")
            .connect_timeout(timeout);
        if c.tls.is_some() {
            config.ssl_mode(tokio_postgres::config::SslMode::Require);
        }
        config
    }

    async fn open(&self, config: tokio_postgres::Config, timeout: Duration) -> Connected {
        match tokio::time::timeout(
            timeout,
            pgha_pg::probe::open(config, self.credentials.tls.as_ref()),
        )
        .await
        {
            Ok(result) => result.map_err(ConnectError::Pg),
            // tokio-postgres' own connect_timeout bounds each host; this bounds the whole.
            Err(_) => Err(ConnectError::TimedOut),
        }
    }
}

/// A connection to the cluster, or why it could not be opened.
pub type Connected = Result<tokio_postgres::Client, ConnectError>;

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Pg(tokio_postgres::Error),
    #[error("connection attempt timed out")]
    TimedOut,
}

impl ConnectError {
    /// Its class, as the report counts it.
    pub fn class(&self) -> crate::classify::ErrorClass {
        match self {
            ConnectError::Pg(e) => crate::classify::classify(e),
            ConnectError::TimedOut => crate::classify::ErrorClass::TimedOut,
        }
    }
}
