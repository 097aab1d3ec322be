//! One host of a distributed cluster as its config file describes it: its member, secrets,
//! TLS and etcd access (what `pgha agent`, `pgha proxy` and the CLI's `--config` need).

pub mod config;
mod history;
pub mod initial;
pub mod notify;
pub mod run;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use pgha_agent::NodeSpec;
use pgha_core::{MemberName, Tags};
use pgha_pg::conf::render_hba;
use pgha_pg::tls::{ClientTls, MemberTls, TlsFiles};
use pgha_pg::{Instance, PgBinaries, RunAs};
use pgha_store::{EtcdAccess, EtcdStore, EtcdUser, Store, StoreError};

use crate::secrets::Secrets;
pub use config::NodeConfig;

/// Everything an agent, the proxy or the CLI needs from a host's config file.
pub struct Node {
    /// The config file it was loaded from.
    pub file: PathBuf,
    pub config: NodeConfig,
    pub secrets: Secrets,
    /// The client side of TLS with the cluster CA of `[tls] ca_file`.
    pub tls: Option<ClientTls>,
}

impl Node {
    pub fn load(file: &Path) -> anyhow::Result<Self> {
        if file.exists() {
            pgha_pg::trust::check(file)?;
        }
        let config = NodeConfig::load(file)?;
        let secrets = Secrets::load(&config.secrets.file)?;
        check_etcd_user(file, &config, &secrets)?;
        let tls = match &config.tls {
            None => None,
            Some(t) => {
                pgha_pg::trust::check(&t.ca_file)?;
                let pem = std::fs::read_to_string(&t.ca_file).with_context(|| {
                    format!(
                        "read tls.ca_file {} ({})",
                        t.ca_file.display(),
                        file.display()
                    )
                })?;
                Some(ClientTls::from_ca_pem(
                    &pem,
                    &t.ca_file.display().to_string(),
                )?)
            }
        };
        Ok(Node {
            file: file.to_path_buf(),
            config,
            secrets,
            tls,
        })
    }

    pub fn credentials(&self) -> pgha_pg::probe::Credentials {
        pgha_pg::probe::Credentials {
            user: self.config.postgresql.superuser.clone(),
            password: self.secrets.superuser_password.clone(),
            dbname: "postgres".into(),
            tls: self.tls.clone(),
        }
    }

    /// Whether the agents' APIs speak HTTPS (`[tls] api = true`).
    pub fn api_https(&self) -> bool {
        self.config.tls.as_ref().is_some_and(|t| t.api)
    }

    /// The client TLS for the agents' APIs, when they speak HTTPS.
    pub fn api_client_tls(&self) -> Option<std::sync::Arc<rustls::ClientConfig>> {
        self.tls
            .as_ref()
            .filter(|_| self.api_https())
            .map(ClientTls::rustls)
    }

    /// The server TLS of this agent's API (its member certificate), when it speaks HTTPS.
    pub(crate) fn api_server_tls(
        &self,
    ) -> anyhow::Result<Option<std::sync::Arc<rustls::ServerConfig>>> {
        let Some(section) = self.config.tls.as_ref().filter(|t| t.api) else {
            return Ok(None);
        };
        let cert = std::fs::read_to_string(&section.cert_file)
            .with_context(|| format!("read tls.cert_file {}", section.cert_file.display()))?;
        let key = std::fs::read_to_string(&section.key_file)
            .with_context(|| format!("read tls.key_file {}", section.key_file.display()))?;
        let what = section.cert_file.display().to_string();
        Ok(Some(pgha_pg::tls::server_config(&cert, &key, &what)?))
    }

    /// This member's TLS: its certificate and key, and the CA for libpq, copied into the
    /// member directory (owned by the PostgreSQL OS user, the key 0600) where PostgreSQL and
    /// its walreceiver read them.
    pub(crate) fn member_tls(
        &self,
        member_dir: &Path,
        run_as: &RunAs,
    ) -> anyhow::Result<Option<MemberTls>> {
        let (Some(section), Some(client)) = (&self.config.tls, &self.tls) else {
            return Ok(None);
        };
        pgha_pg::trust::check(&section.cert_file)?;
        pgha_pg::trust::check_secrets(&section.key_file)?;
        let read = |path: &Path, key: &str| {
            std::fs::read_to_string(path)
                .with_context(|| format!("read tls.{key} {}", path.display()))
        };
        let issued = pgha_pg::tls::Issued {
            cert_pem: read(&section.cert_file, "cert_file")?,
            key_pem: read(&section.key_file, "key_file")?,
        };
        let files = TlsFiles::in_member_dir(member_dir.join("ca.crt"), member_dir);
        pgha_pg::beneath::write(
            &files.ca_cert,
            read(&section.ca_file, "ca_file")?.as_bytes(),
            0o644,
            run_as,
        )?;
        files.install(&issued, run_as)?;
        Ok(Some(MemberTls {
            files,
            client: client.clone(),
        }))
    }

    /// Connects to etcd, retrying with a clear message until it answers or `patience` ends.
    pub async fn connect_store(
        &self,
        patience: Option<Duration>,
    ) -> anyhow::Result<Arc<dyn Store>> {
        Ok(Arc::new(self.connect_etcd(patience).await?))
    }

    /// [`Node::connect_store`] for a service that runs on (`pgha agent`, `pgha proxy`): also
    /// says when etcd's version has a bug that costs failovers (etcd-io/etcd#15247).
    pub async fn connect_store_for_service(
        &self,
        patience: Option<Duration>,
    ) -> anyhow::Result<Arc<dyn Store>> {
        let store = self.connect_etcd(patience).await?;
        warn_of_etcd_version(&store).await;
        Ok(Arc::new(store))
    }

    async fn connect_etcd(&self, patience: Option<Duration>) -> anyhow::Result<EtcdStore> {
        let c = &self.config;
        let access = self.etcd_access()?;
        EtcdStore::connect_patiently(
            &c.etcd.endpoints,
            &c.cluster.name,
            c.etcd_timeout(),
            &access,
            patience,
        )
        .await
        .map_err(|e| self.explain_store_error(e))
        .with_context(|| format!("etcd at {}", c.etcd.endpoints.join(", ")))
    }

    /// A refusal of the etcd user, with the keys and files it comes from and what etcd needs.
    fn explain_store_error(&self, e: StoreError) -> anyhow::Error {
        let c = &self.config;
        let user = c.etcd.user.as_deref().unwrap_or("");
        let (file, secrets) = (self.file.display(), c.secrets.file.display());
        let prefix = format!("/pgha/{}/", c.cluster.name);
        match &e {
            StoreError::Credentials(_) => anyhow::Error::new(e).context(format!(
                "etcd user {user:?} (etcd.user in {file}, its password etcd_password in \
                 {secrets}) was refused: check both, and that etcd has authentication enabled"
            )),
            StoreError::PermissionDenied(_) if c.etcd.user.is_some() => anyhow::Error::new(e)
                .context(format!(
                    "etcd user {user:?} (etcd.user in {file}) may not read or write \
                     {prefix}: grant its role readwrite on that prefix (`etcdctl role \
                     grant-permission ROLE readwrite --prefix=true {prefix}`)"
                )),
            StoreError::Invalid(_) if c.etcd.user.is_none() => {
                anyhow::Error::new(e).context(format!(
                    "if etcd has authentication enabled, name its user in etcd.user in {file} \
                     and put its password in etcd_password in {secrets}"
                ))
            }
            _ => e.into(),
        }
    }

    /// TLS to etcd and the etcd user as `[etcd]` says (ca_file, cert_file, key_file, user).
    fn etcd_access(&self) -> anyhow::Result<EtcdAccess> {
        let e = &self.config.etcd;
        let read = |path: &Path, key: &str| {
            std::fs::read_to_string(path)
                .with_context(|| format!("read etcd.{key} {}", path.display()))
        };
        let ca_pem = match &e.ca_file {
            Some(ca) => {
                pgha_pg::trust::check(ca)?;
                Some(read(ca, "ca_file")?)
            }
            None => None,
        };
        let client_identity = match (&e.cert_file, &e.key_file) {
            (Some(cert), Some(key)) => {
                pgha_pg::trust::check(cert)?;
                pgha_pg::trust::check_secrets(key)?;
                Some((read(cert, "cert_file")?, read(key, "key_file")?))
            }
            _ => None,
        };
        if e.user.is_some() && e.ca_file.is_none() {
            tracing::warn!(
                "etcd.user is set but etcd.ca_file is not: the etcd password travels in clear \
                 text; give etcd TLS (https:// endpoints and etcd.ca_file)"
            );
        }
        let user = e.user.as_ref().map(|name| EtcdUser {
            name: name.clone(),
            password: self.secrets.etcd_password.clone().unwrap_or_default(),
        });
        Ok(EtcdAccess {
            ca_pem,
            client_identity,
            user,
        })
    }

    /// This host's member, ready for an agent.
    pub(crate) fn spec(&self) -> anyhow::Result<NodeSpec> {
        let c = &self.config;
        let pg = &c.postgresql;
        let bins = PgBinaries::discover(pg.bin_dir.as_deref())?;
        pgha_pg::trust::check_binaries(&bins)?;
        let run_as = RunAs::detect(&pg.os_user)?;
        run_as.check_reachable(&c.member.dir)?;
        let instance = Instance::new(&c.member.name, &c.member.dir, bins, run_as);
        Ok(NodeSpec {
            name: MemberName::new(c.member.name.as_str()),
            passfile: c.member.dir.join("pgpass"),
            instance,
            host: c.member.host.clone(),
            port: c.member.port,
            api: Some(c.member.api.clone()),
            api_token: self.secrets.api_token.clone(),
            superuser: pg.superuser.clone(),
            superuser_password: self.secrets.superuser_password.clone(),
            replication_user: pg.replication_user.clone(),
            replication_password: self.secrets.replication_password.clone(),
            cluster_size: 8,
            parameters: pg.parameters(),
            hba: render_hba(
                &pg.replication_user,
                &c.replication_hosts(),
                &pg.pg_hba,
                self.tls.is_some(),
            ),
            tls: None,
            api_https: false,
            callbacks: c.callbacks.clone(),
            cluster: c.cluster.name.clone(),
            tags: Tags {
                nofailover: c.member.nofailover,
                nosync: c.member.nosync,
                priority: c.member.priority,
                noloadbalance: c.member.noloadbalance,
                clonefrom: c.member.clonefrom,
            },
        })
    }
}

/// `[etcd] user` and the secrets file's `etcd_password` go together.
fn check_etcd_user(file: &Path, config: &NodeConfig, secrets: &Secrets) -> anyhow::Result<()> {
    let secrets_file = config.secrets.file.display();
    match (&config.etcd.user, &secrets.etcd_password) {
        (Some(user), None) => anyhow::bail!(
            "{}: etcd.user = {user:?}, but the secrets file {secrets_file} has no \
             etcd_password: add the password of that etcd user there",
            file.display()
        ),
        (None, Some(_)) => anyhow::bail!(
            "{}: the secrets file {secrets_file} has an etcd_password, but etcd.user is not \
             set: name the etcd user it belongs to under [etcd], or remove etcd_password",
            file.display()
        ),
        _ => Ok(()),
    }
}

/// Says when etcd's version lets a resumed, stalled etcd leader revoke leases kept alive
/// elsewhere (etcd-io/etcd#15247): the leader key then vanishes before its lease ends. Best
/// effort: a version etcd does not tell is not said.
async fn warn_of_etcd_version(store: &EtcdStore) {
    use pgha_store::etcd::server_version::revokes_leases_after_a_stall;
    if let Ok(version) = store.server_version().await {
        if revokes_leases_after_a_stall(&version) {
            tracing::warn!(
                "etcd {version} lets a leader that stalled (a paused VM, a disk stuck in fsync) \
                 revoke, once it resumes, leases that other members kept alive \
                 (etcd-io/etcd#15247): the leader key then vanishes before its lease ends, and \
                 a failover follows that nothing else called for; upgrade etcd to 3.4.28, \
                 3.5.11 or later"
            );
        }
    }
}
